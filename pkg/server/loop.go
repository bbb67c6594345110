package server

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/js-toolkit/js/pkg/jobserver"
	"github.com/js-toolkit/js/pkg/metrics"
	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/wire"
)

type eventKind int

const (
	evOpen eventKind = iota
	evClose
	evMsg
	evReadable
	evHolders
	evAbort
	evCall
	evEOF // a connection's input ended
)

type event struct {
	fn      func(st *loopState) // evCall: run on the state
	kind    eventKind
	c       *conn
	m       *wire.Msg
	ok      bool
	holders int
}

// verboseEvery is how often --verbose prints the metrics (deputy's -v).
const verboseEvery = 5 * time.Second

// reclaimEvery is how often a short pool is checked for leaked tokens.
const reclaimEvery = 200 * time.Millisecond

// loopState is the scheduler's state: every field is guarded by
// Server.mu. Handlers run in the goroutine where their event happens
// (a connection's reader, the token watcher, the loop's timers), one at a
// time, under that lock; they never block.
type loopState struct {
	s *Server

	open      map[*conn]struct{}
	eofConns  map[*conn]struct{} // half-closed, kept open for their jobs' outcomes
	clients   int                // connections that count against idleness (not workers)
	slots     slotState
	jobs      jobState
	conns     uint64 // connections accepted, ever
	protoErrs uint64 // malformed messages answered with an error
	hist      metrics.Set
	bornAfter uint64 // only processes born after this can hold our FIFO

	watchReq    chan struct{} // asks the token watcher to wait for a token
	watching    bool
	ended       bool // the loop has returned: no handler runs any more
	aborted     bool // stop at once (second signal)
	rearm       bool // the loop must re-arm its deadline timer
	lastVerbose time.Time
	checking    bool // a holders scan is in flight
	lastActive  time.Time
	stopping    bool
	draining    bool // stopping once the queued and running jobs have ended
	dirty       bool

	armed time.Time // when the loop's deadline timer fires for a waiter; zero: it does not
}

func (st *loopState) init(s *Server) {
	st.s = s
	st.open = map[*conn]struct{}{}
	st.eofConns = map[*conn]struct{}{}
	st.hist = metrics.Set{}
	st.jobs.hist = st.hist
	st.jobs.call = s.call
	st.watchReq = make(chan struct{}, 1)
	st.lastActive = time.Now()
	st.slots.init(s.cfg.Paths.FIFO, s.cfg.Slots)
	st.jobs.init(s.cfg.DeputyRetries, s.cfg.ResultTTL, s.cfg.MaxResults)
}

// exec handles one event in the calling goroutine under the state lock,
// then does what every change needs: serve waiting tokens, note activity,
// wake the status writer, and wake the loop when it must re-arm its timer
// or stop. Nothing runs after the loop has ended.
func (s *Server) exec(ev event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.st
	if st.ended {
		return
	}
	if ev.kind == evAbort {
		st.aborted = true
		s.kickLoop()
		return
	}
	st.handle(ev)
	st.after()
	s.flushDirty()
}

// execMsgs handles a batch of one connection's messages under one lock and
// flushes the replies once.
func (s *Server) execMsgs(c *conn, msgs []*wire.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.st
	if st.ended {
		return
	}
	for _, m := range msgs {
		st.handle(event{kind: evMsg, c: c, m: m})
	}
	st.after()
	s.flushDirty()
}

// flushDirty writes the replies queued by the handling that just ran.
func (s *Server) flushDirty() {
	for i, c := range s.dirty {
		c.flush()
		s.dirty[i] = nil
	}
	s.dirty = s.dirty[:0]
}

// after runs after every change, under the lock.
func (st *loopState) after() {
	for c := range st.eofConns {
		if !st.jobs.waitsFor(c) { // its last job has ended: close it now
			delete(st.eofConns, c)
			st.handle(event{kind: evClose, c: c})
			c.closeAfterFlush()
		}
	}
	st.serve()
	if !st.idle() {
		st.lastActive = time.Now()
	}
	if st.finished() || st.rearm {
		st.rearm = false
		st.s.kickLoop()
	}
	if st.dirty {
		st.dirty = false
		st.s.kickStatus()
	}
}

func (s *Server) kickLoop() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loop keeps time for the state: waiter deadlines, the reclaim and expiry
// tick, idleness, and the stop. It returns when jsd should stop.
func (s *Server) loop(ctx context.Context) error {
	st := &s.st
	tick := time.NewTicker(reclaimEvery)
	defer tick.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	locked := func(fn func() bool) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		stop := fn()
		s.flushDirty() // replies the timers made (blocked, stopping)
		if stop || st.aborted {
			st.ended = true // from now on no handler runs
			return true
		}
		return false
	}
	for {
		var next time.Time
		s.mu.Lock()
		next, armed := st.slots.nextDeadline()
		st.armed = next // zero when not armed
		s.mu.Unlock()
		if armed {
			deadline.Reset(time.Until(next))
		} else {
			deadline.Reset(time.Hour)
		}
		var stop bool
		select {
		case <-ctx.Done():
			// Let leases go; a second signal (Abort) is the caller's
			// business: Run returns when they are gone.
			ctx = context.Background()
			stop = locked(func() bool {
				st.beginStop(false)
				st.after()
				return st.finished()
			})
		case <-s.kick:
			stop = locked(st.finished)
		case <-deadline.C:
			stop = locked(func() bool {
				st.slots.expire(st, time.Now())
				st.after()
				return st.finished()
			})
		case now := <-tick.C:
			stop = locked(func() bool {
				st.maybeReclaim()
				st.jobs.sweep(now)
				st.after()
				if s.cfg.Verbose && now.Sub(st.lastVerbose) >= verboseEvery {
					st.lastVerbose = now
					s.log.Printf("metrics %s", mustJSON(st.metrics().Counters))
				}
				if to := s.cfg.IdleTimeout; to > 0 && st.idle() && now.Sub(st.lastActive) >= to {
					s.log.Printf("idle for %v: stopping", to)
					return true
				}
				return st.finished()
			})
		}
		if stop {
			return nil
		}
	}
}

// idle: no lease held or awaited, no job queued or running, and no client
// connected (workers do not count).
func (st *loopState) idle() bool {
	return st.clients == 0 && st.slots.leasedCount() == 0 && len(st.slots.waiters) == 0 && !st.jobs.busy()
}

// finished: stopping, no lease held, and (draining) no job left.
func (st *loopState) finished() bool {
	return st.stopping && st.slots.leasedCount() == 0 && (!st.draining || !st.jobs.busy())
}

// beginStop stops granting slots and taking jobs. With drain, jsd stops
// once the queued and running jobs have ended; without, once the leases
// are released (jobs still there are then reported lost).
func (st *loopState) beginStop(drain bool) {
	if !st.stopping {
		st.s.writeStatus(status.Stopping, "") // at once: a state change
	}
	st.stopping = true
	st.draining = st.draining || drain
	for len(st.slots.waiters) > 0 {
		w := st.slots.waiters[0]
		st.slots.dropWaiter(st, 0)
		w.c.sendError(w.req, wire.CodeStopping, "jsd is stopping and grants no new slots")
	}
	st.dirty = true
}

// closeAll closes every connection once its queued replies are written.
func (st *loopState) closeAll() {
	for c := range st.open {
		c.closeAfterFlush()
	}
}

func (st *loopState) handle(ev event) {
	st.dirty = true
	switch ev.kind {
	case evOpen:
		st.open[ev.c] = struct{}{}
		st.clients++
		st.conns++
	case evClose:
		c := ev.c
		if c.closed {
			return
		}
		c.closed = true
		delete(st.open, c)
		if !c.worker {
			st.clients--
		}
		st.slots.dropConn(st, c)
		st.jobs.dropPeer(c)
	case evEOF:
		c := ev.c
		if c.closed {
			return
		}
		if c.kind == connUnix && !c.worker && len(c.leases) == 0 && c.waiters == 0 && st.jobs.waitsFor(c) && !c.peerGone() {
			c.eof = true
			st.eofConns[c] = struct{}{}
			return
		}
		st.handle(event{kind: evClose, c: c})
	case evMsg:
		st.handleMsg(ev.c, ev.m)
	case evReadable:
		st.watching = false
	case evHolders:
		st.checking = false
		st.reclaim(ev.holders)
	case evCall:
		ev.fn(st)
	}
}

func (st *loopState) handleMsg(c *conn, m *wire.Msg) {
	if c.closed {
		return
	}
	if !c.authed && !st.authorize(c, m) {
		return
	}
	switch m.Cmd {
	case wire.CmdAuth:
		c.send(&wire.Msg{Cmd: wire.CmdOK, Req: m.Req}) // already in
	case "":
		st.protoErrs++
		c.sendError(m.Req, m.Code, m.Message) // a line the reader could not use
	case wire.CmdAcquire:
		st.slots.acquire(st, c, m)
	case wire.CmdRelease:
		st.slots.release(st, c, m)
	case wire.CmdStarted:
		st.slots.started(c, m)
	case wire.CmdStatus:
		doc := st.snapshot()
		doc.Status = status.Running
		if st.stopping {
			doc.Status = status.Stopping
		}
		c.send(&wire.Msg{Cmd: wire.CmdStatus, Req: m.Req, Status: mustJSON(doc)})
	case wire.CmdShutdown:
		st.s.log.Printf("shutdown requested by a client")
		c.send(&wire.Msg{Cmd: wire.CmdOK, Req: m.Req})
		st.beginStop(m.Drain)
	case wire.CmdResize:
		if msg := st.slots.resize(st, m.Slots); msg != "" {
			c.sendError(m.Req, wire.CodeBadRequest, msg)
			return
		}
		c.send(&wire.Msg{Cmd: wire.CmdOK, Req: m.Req, Slots: st.slots.total})
	case wire.CmdPing:
		c.send(&wire.Msg{Cmd: wire.CmdPong, Req: m.Req})
	default:
		if st.handleJobMsg(c, m) {
			return
		}
		st.protoErrs++
		c.sendError(m.Req, wire.CodeUnknownCmd, "unknown cmd "+strconvQuote(m.Cmd))
	}
}

// serve hands tokens from the FIFO to waiters in order.
func (st *loopState) serve() {
	need := st.slots.need()
	if need == 0 {
		return
	}
	if st.slots.fill(st) {
		st.dirty = true
	}
	if st.slots.need() > 0 && !st.watching {
		st.watching = true
		st.watchReq <- struct{}{}
	}
}

// maybeReclaim starts a holders scan when the pool is short while nothing
// of ours is out.
func (st *loopState) maybeReclaim() {
	if st.checking || st.slots.leasedCount() > 0 || st.slots.debt > 0 {
		return
	}
	free, err := st.s.pipe.Free()
	if err != nil || free+st.slots.gathered() == st.slots.total {
		return
	}
	st.checking = true
	path, self, born := st.s.cfg.Paths.FIFO, os.Getpid(), st.bornAfter
	go func() {
		h, err := jobserver.Holders(path, self, born)
		n := len(h)
		if err != nil {
			n = -1
		}
		st.s.exec(event{kind: evHolders, holders: n})
	}()
}

// reclaim restores the pool to exactly N tokens when nobody but jsd holds
// the FIFO and no lease is out: the tokens in the FIFO plus those jsd holds
// for waiters must be N. (Waiters do not stop it: after a restart, tokens
// the dead jsd had leased are missing exactly while jsruns wait for them.)
func (st *loopState) reclaim(holders int) {
	if holders != 0 || st.slots.leasedCount() > 0 || st.slots.debt > 0 {
		return
	}
	free, err := st.s.pipe.Free()
	if err != nil {
		return
	}
	n := st.slots.total
	have := free + st.slots.gathered()
	switch {
	case have < n:
		put, _ := st.s.pipe.Put(n - have)
		st.slots.reclaimed += put
		st.s.log.Printf("reclaimed %d leaked token(s): the pool holds %d again", put, have+put)
	case have > n && free > 0:
		buf := make([]byte, min(have-n, free))
		got, _ := st.s.pipe.TryTake(buf)
		st.s.log.Printf("removed %d surplus token(s) someone wrote into the fifo", got)
	}
	st.dirty = true
}

func (st *loopState) snapshot() *status.Doc {
	doc := st.s.baseDoc()
	sl := &st.slots
	free, _ := st.s.pipe.Free()
	if free > sl.total {
		free = sl.total
	}
	doc.Slots = status.Slots{
		Total:     sl.total,
		Free:      free,
		InUse:     max(sl.total+sl.debt-free, 0), // after a shrink, leases may hold more than total
		Waiting:   len(sl.waiters),
		Leased:    sl.leasedCount(),
		Reclaimed: sl.reclaimed,
	}
	for _, l := range sl.leases {
		doc.Leases = append(doc.Leases, status.Lease{ID: l.id, PID: l.pid, Slots: l.k, Command: l.command, Since: l.since.UTC().Truncate(time.Millisecond)})
	}
	sort.Slice(doc.Leases, func(i, j int) bool { return doc.Leases[i].ID < doc.Leases[j].ID })
	now := time.Now()
	doc.Queues = st.jobs.queuesView(now)
	doc.Workers = st.jobs.workersView()
	doc.Jobs = st.jobs.recentView()
	if sh := st.jobs.sh; sh != nil {
		doc.Cluster = sh.view()
	}
	return &doc
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// killGroup kills the process group of a lease's command, after checking
// that pid still names the process that started it (pids are reused).
func killGroup(pid int, start uint64) {
	if pid <= 1 {
		return
	}
	if st, ok := jobserver.StartTime(pid); ok && start != 0 && st != start {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func (st *loopState) metrics() *metrics.Snapshot {
	c := st.jobs.c
	c.UpSince = st.s.started.UnixMilli()
	c.Connections = st.conns
	c.ConnectionsOpen = len(st.open)
	c.LeasesGranted = st.slots.granted
	c.TokensReclaimed = st.slots.reclaimed
	c.ProtocolErrors = st.protoErrs
	c.ConnectionsRefused = st.s.fdl.total.Load()
	c.Workers = len(st.jobs.workers)
	for _, n := range st.jobs.running {
		c.JobsRunning += n
	}
	c.JobsQueued = max(st.jobs.liveCount()-c.JobsRunning, 0) // shared queues: this jsd's submitters' jobs not running here
	c.SlotsTotal = st.slots.total
	if free, err := st.s.pipe.Free(); err == nil {
		c.SlotsInUse = max(st.slots.total-free, 0)
	}
	return &metrics.Snapshot{Counters: c, Histograms: st.hist.Clone()}
}

// Metrics is the metrics document of {"cmd":"metrics"}.
type Metrics = metrics.Snapshot
