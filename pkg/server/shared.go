package server

// shared.go: the typed queues in NATS JetStream (jsd --nats, --nats-embed),
// the second queue backend next to the in-memory one. jsd keeps what is
// local (its submitters' connections, its workers, its slots) and hands the
// queue itself to pkg/cluster:
//
//   - a submission is accepted once the cluster has it (its id is unique
//     cluster-wide); a job with a submitter stays in jobState.live, queued,
//     until its outcome comes back (cluster.Config.OnResult); a detached one
//     lives only in the cluster, and 'jsctl wait' asks the cluster;
//   - each local worker with room has a fetcher goroutine that takes jobs of
//     its types from the cluster (at most its free capacity) and hands them
//     over; its answer is written back with Complete, its disconnect is a
//     Nak (the cluster applies the job's retries), long jobs send InProgress;
//   - cancels go through the cluster from any jsd; the one running the job
//     is signalled (OnCancel) and tells its worker.
//
// The fields of shared marked "mu" are guarded by Server.mu; network calls
// are made from goroutines, never under the lock.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nuid"

	"github.com/js-toolkit/js/pkg/cluster"
	"github.com/js-toolkit/js/pkg/queue"
	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/wire"
)

// SharedConfig selects the JetStream backend: jsd connects to URLs (after
// starting the embedded node, if Embed is set, whose URL is added).
type SharedConfig struct {
	URLs  []string
	Token string
	Name  string              // this jsd in the cluster; "" = the host name
	Embed *cluster.NodeConfig // run a NATS node inside jsd first
	// Tuning, zero: pkg/cluster's defaults.
	AckWait   time.Duration
	ResultTTL time.Duration
	// ConnectTimeout bounds the wait for the cluster (JetStream's leader,
	// the streams) at start. Default 2 min.
	ConnectTimeout time.Duration
}

type shared struct {
	s    *Server
	c    *cluster.Cluster
	node *cluster.Node
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	beat time.Duration // InProgress period
	boot string        // this run of jsd, in the ids it assigns

	fetched  map[string]*fetchedJob        // mu: jobs local workers run, by id
	fetchers map[*worker]*fetcher          // mu
	nonces   map[string]string             // mu: our submissions with a submitter, id -> nonce
	dropped  map[string]droppedJob         // mu: submissions given up (submitter gone): their outcome is dropped
	waits    map[peer][]context.CancelFunc // mu: cluster waits of a peer
	from     map[*job]peer                 // mu: who submitted a job not yet handed to the cluster
	turn     map[peer]chan struct{}        // mu: closed when a peer's last submission has published
	stats    []cluster.QueueStat           // mu: the cluster's queues, refreshed in the background
	peers    []cluster.Peer                // mu
	statsErr string                        // mu
}

type fetchedJob struct {
	j *job
	d *cluster.Delivery
}

type droppedJob struct {
	nonce string
	at    time.Time
}

type fetcher struct {
	wake chan struct{}
	stop context.CancelFunc
	// mu: the Fetch in flight, and the types it asked for (a worker whose
	// types change, gloom's re-join, restarts it)
	types    []string
	retarget context.CancelFunc
}

// startShared starts the embedded node (if any) and connects to the
// cluster. It is called before any listener opens.
func (s *Server) startShared() error {
	sc := s.cfg.Shared
	if sc == nil {
		return nil
	}
	if s.cfg.Journal != "" {
		return errors.New("--journal and the shared queues (--nats, --nats-embed) do not go together: JetStream keeps the jobs")
	}
	sh := &shared{s: s, fetched: map[string]*fetchedJob{}, fetchers: map[*worker]*fetcher{},
		nonces: map[string]string{}, dropped: map[string]droppedJob{}, waits: map[peer][]context.CancelFunc{},
		from: map[*job]peer{}, turn: map[peer]chan struct{}{}}
	urls := append([]string(nil), sc.URLs...)
	if sc.Embed != nil {
		nc := *sc.Embed
		nc.Logf = func(format string, args ...any) {
			if s.cfg.Verbose || !strings.HasPrefix(format, "nats: ") { // notices only with -v
				s.log.Printf(format, args...)
			}
		}
		node, err := cluster.StartNode(nc)
		if err != nil {
			return fmt.Errorf("embedded NATS node: %w", err)
		}
		sh.node = node
		urls = append([]string{node.ClientURL()}, urls...)
		if addr := node.ClusterAddr(); addr != "" {
			s.log.Printf("embedded NATS node %s serves %s, routes on %s", nc.Name, node.ClientURL(), addr)
		} else {
			s.log.Printf("embedded NATS node %s serves %s", nc.Name, node.ClientURL())
		}
	}
	cfg := cluster.Config{URLs: urls, Token: sc.Token, Name: sc.Name, AckWait: sc.AckWait, ResultTTL: sc.ResultTTL,
		OnResult: sh.onResult, OnCancel: sh.onCancel, Logf: s.log.Printf}
	timeout := sc.ConnectTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := cluster.Connect(ctx, cfg)
	if err != nil {
		if sh.node != nil {
			sh.node.Shutdown()
		}
		return fmt.Errorf("NATS %v: %w (is nats-server 2.11+ running there with JetStream, 'nats-server -js'? or run a node in jsd with --nats-embed)", urls, err)
	}
	sh.c = c
	sh.beat = max(c.AckWait()/3, 100*time.Millisecond)
	sh.boot = nuid.Next()[:6] // the random prefix of this process's NUIDs
	sh.ctx, sh.stop = context.WithCancel(context.Background())
	s.log.Printf("job queues shared through NATS JetStream as %q (nats-server %s, %d replica(s))", c.Name(), c.ServerVersion(), c.Replicas())
	s.sh = sh
	s.st.jobs.sh = sh
	return nil
}

// run starts the background work: heartbeats, stats and announcements.
func (sh *shared) run() {
	sh.wg.Add(2)
	go func() { defer sh.wg.Done(); sh.heartbeats() }()
	go func() { defer sh.wg.Done(); sh.refresh() }()
}

// close gives back what this jsd holds (its workers' jobs go back to the
// queue; its submitters' jobs are cancelled: their submitters are being
// disconnected) and leaves the cluster.
func (sh *shared) close() {
	var mine []string
	var ds []*cluster.Delivery
	sh.s.mu.Lock() // the loop has ended: no call runs any more
	st := &sh.s.st
	func() {
		for _, f := range sh.fetchers {
			f.stop()
		}
		for id := range sh.nonces {
			if j := st.jobs.live[id]; j != nil && j.owner != nil {
				mine = append(mine, id)
			}
		}
		for _, fj := range sh.fetched {
			ds = append(ds, fj.d)
		}
		for _, cs := range sh.waits {
			for _, c := range cs {
				c()
			}
		}
	}()
	sh.s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, d := range ds {
		if _, err := d.Nak(ctx); err != nil && !errors.Is(err, cluster.ErrStale) {
			sh.s.log.Printf("give back job %s: %v", d.Job.ID, err)
		}
	}
	for _, id := range mine {
		if err := sh.c.Cancel(ctx, id, "TERM"); err != nil && !errors.Is(err, cluster.ErrEnded) && !errors.Is(err, cluster.ErrNotFound) {
			sh.s.log.Printf("cancel job %s: %v", id, err)
		}
	}
	sh.stop()
	sh.wg.Wait()
	sh.c.Close()
	if sh.node != nil {
		sh.node.Shutdown()
	}
}

// go_ runs f in a goroutine that close waits for.
func (sh *shared) go_(f func()) {
	sh.wg.Add(1)
	go func() { defer sh.wg.Done(); f() }()
}

// autoID names a job submitted without an id: unique cluster-wide, and
// across restarts of this jsd (a detached result of an earlier run may
// still hold its id): name-boot-jN.
func (sh *shared) autoID(seq uint64) string {
	return sh.c.Name() + "-" + sh.boot + "-j" + strconv.FormatUint(seq, 10)
}

// meta carries what the cluster need not know: the protocol and whether
// the id was a JSON number.
func jobMeta(j *job) string {
	m := strconv.Itoa(int(j.proto))
	if j.NumID {
		m += "n"
	}
	return m
}

func parseMeta(m string) (proto, bool) {
	num := len(m) > 0 && m[len(m)-1] == 'n'
	if num {
		m = m[:len(m)-1]
	}
	p, _ := strconv.Atoi(m)
	return proto(p), num
}

// submit hands j to the cluster. ack goes out once the cluster has it;
// reject (code, message) if it refused it.
func (sh *shared) submit(js *jobState, j *job, ack func(), reject func(code, msg string)) {
	j.awaitAck = true
	nonce := nuid.Next()
	detached := j.owner == nil
	if !detached {
		sh.nonces[j.ID] = nonce
	}
	retries := int(j.Retries)
	switch j.proto {
	case protoGloom:
		retries = 3
	case protoDeputy:
		retries = js.deputyRetries
	}
	cj := cluster.Job{ID: j.ID, Type: j.Type, Priority: int(j.Priority), Arg: json.RawMessage(j.Arg), Retries: retries,
		Detached: detached, Meta: jobMeta(j), Nonce: nonce}
	// One submitter's jobs reach the cluster in the order it sent them.
	p := sh.from[j]
	delete(sh.from, j)
	prev := sh.turn[p]
	mine := make(chan struct{})
	if p != nil {
		sh.turn[p] = mine
	}
	sh.go_(func() {
		ctx, cancel := context.WithTimeout(sh.ctx, time.Minute)
		_, err := sh.c.SubmitAfter(ctx, cj, prev, mine)
		cancel()
		sh.s.call(func(st *loopState) {
			if sh.turn[p] == mine {
				delete(sh.turn, p) // the last one: nothing waits for it
			}
			js := &st.jobs
			j.awaitAck = false
			if err != nil {
				js.withdraw(j)
				delete(sh.nonces, j.ID)
				code, msg := wire.CodeUnavailable, "the shared queue did not take the job: "+err.Error()
				if errors.Is(err, cluster.ErrIDExists) {
					code, msg = wire.CodeIDExists, fmt.Sprintf("a job with id %s is queued, running or waits to be fetched in the cluster", j.ID)
				}
				if reject != nil {
					reject(code, msg)
				}
				return
			}
			if _, gone := sh.dropped[j.ID]; gone && !detached {
				// Its submitter left while the cluster took it: the cancel
				// sent then found nothing; send it again.
				sh.go_(func() { sh.cancelDropped(j.ID) })
			}
			if ack != nil {
				ack()
			}
			if detached && js.live[j.ID] == j {
				delete(js.live, j.ID) // the cluster holds it now
			}
			if f := j.afterAck; f != nil {
				j.afterAck = nil
				f()
			}
			js.acked(j) // its outcome may have come first (a fast worker)
		})
	})
}

// onResult takes an outcome routed to this jsd (from NATS's goroutine).
func (sh *shared) onResult(r cluster.Result) bool {
	handled := false
	ran := sh.s.tryCall(func(st *loopState) {
		js := &st.jobs
		if d, ok := sh.dropped[r.ID]; ok && d.nonce == r.Nonce {
			delete(sh.dropped, r.ID)
			handled = true // its submitter is gone
			return
		}
		j := js.live[r.ID]
		if j == nil {
			return // not ours (any more, e.g. before a restart): kept for 'jsctl wait'
		}
		if sh.nonces[r.ID] != r.Nonce {
			handled = true // an earlier submission's outcome, sent again: dropped
			return
		}
		handled = true
		delete(sh.nonces, r.ID)
		j.Attempts, j.Started = int32(r.Attempts), r.Started
		js.finish(j, outcomeOf(r.Outcome))
	})
	return ran && handled
}

func outcomeOf(o cluster.Outcome) *outcome {
	return &outcome{state: o.State, res: o.Result, enc: o.Encoding, err: o.Error, exit: o.Exit}
}

// jobOfResult is a job made from an outcome the cluster kept, to answer a
// wait.
func jobOfResult(r cluster.Result) *job {
	pr, num := parseMeta(r.Meta)
	j := &job{Job: queue.Job{ID: r.ID, NumID: num, Type: r.Type, Priority: int32(r.Priority), Attempts: int32(r.Attempts),
		Submitted: r.Submitted, Started: r.Started, Ended: r.Ended, State: r.Outcome.State}, proto: pr, out: outcomeOf(r.Outcome)}
	return j
}

// gaveUp: j's submitter is gone; the cluster cancels it and its outcome,
// when it comes, is dropped.
func (sh *shared) gaveUp(j *job) {
	nonce, ok := sh.nonces[j.ID]
	if !ok {
		return
	}
	delete(sh.nonces, j.ID)
	sh.dropped[j.ID] = droppedJob{nonce: nonce, at: time.Now()}
	id := j.ID
	sh.go_(func() { sh.cancelDropped(id) })
}

func (sh *shared) cancelDropped(id string) {
	ctx, cancel := context.WithTimeout(sh.ctx, 30*time.Second)
	defer cancel()
	if err := sh.c.Cancel(ctx, id, "TERM"); err != nil && !errors.Is(err, cluster.ErrEnded) && !errors.Is(err, cluster.ErrNotFound) {
		sh.s.log.Printf("cancel job %s of a disconnected submitter: %v", id, err)
	}
}

// cancel cancels id anywhere in the cluster: ack once done, else fail.
func (sh *shared) cancel(id, sig string, ack func(), fail func(code, msg string)) {
	sh.go_(func() {
		ctx, cancel := context.WithTimeout(sh.ctx, 30*time.Second)
		err := sh.c.Cancel(ctx, id, sig)
		cancel()
		sh.s.call(func(st *loopState) {
			if errors.Is(err, cluster.ErrNotFound) && st.jobs.ended(id) {
				err = cluster.ErrEnded // ended here, and freed in the cluster since
			}
			switch {
			case err == nil:
				if ack != nil {
					ack()
				}
			case fail == nil:
			case errors.Is(err, cluster.ErrEnded):
				fail(wire.CodeEnded, fmt.Sprintf("job %s has ended already", id))
			case errors.Is(err, cluster.ErrNotFound):
				fail(wire.CodeNotFound, fmt.Sprintf("no job %s is queued or running in the cluster", id))
			default:
				fail(wire.CodeUnavailable, fmt.Sprintf("cancel %s: %v", id, err))
			}
		})
	})
}

// wait asks the cluster for id's outcome on p's behalf.
func (sh *shared) wait(p peer, id string, req json.RawMessage, fail func(code, msg string)) {
	ctx, cancel := context.WithCancel(sh.ctx)
	sh.waits[p] = append(sh.waits[p], cancel)
	sh.go_(func() {
		defer cancel()
		r, err := sh.c.WaitResult(ctx, id)
		sh.s.call(func(*loopState) {
			if _, ok := sh.waits[p]; !ok || ctx.Err() != nil {
				return // p is gone
			}
			if err != nil {
				if fail == nil {
					return
				}
				if errors.Is(err, cluster.ErrNotFound) {
					fail(wire.CodeNotFound, fmt.Sprintf("no job %s in the cluster (never submitted, or its result went to its submitter, was fetched or expired)", id))
				} else {
					fail(wire.CodeUnavailable, fmt.Sprintf("wait %s: %v", id, err))
				}
				return
			}
			p.sendOutcome(jobOfResult(r), req)
		})
	})
}

// dropPeer forgets p's cluster waits.
func (sh *shared) dropPeer(p peer) {
	delete(sh.turn, p)
	for _, c := range sh.waits[p] {
		c()
	}
	delete(sh.waits, p)
}

// room tells w's fetcher that w may take more jobs, starting it if needed.
func (sh *shared) room(w *worker) {
	f := sh.fetchers[w]
	if f == nil {
		ctx, cancel := context.WithCancel(sh.ctx)
		f = &fetcher{wake: make(chan struct{}, 1), stop: cancel}
		sh.fetchers[w] = f
		sh.go_(func() { sh.fetchFor(ctx, w, f) })
	}
	if f.retarget != nil && !slices.Equal(f.types, w.types) {
		f.retarget()
		f.retarget = nil
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// workerGone stops w's fetcher and gives back the jobs it ran.
func (sh *shared) workerGone(js *jobState, w *worker) {
	if f := sh.fetchers[w]; f != nil {
		f.stop()
		delete(sh.fetchers, w)
	}
	for id, j := range w.running {
		if !j.fetched {
			continue
		}
		js.running[j.Type]--
		j.worker = nil
		fj := sh.fetched[id]
		delete(sh.fetched, id)
		if fj == nil {
			continue
		}
		d := fj.d
		sh.go_(func() {
			ctx, cancel := context.WithTimeout(sh.ctx, 30*time.Second)
			defer cancel()
			requeued, err := d.Nak(ctx)
			if err != nil {
				if !errors.Is(err, cluster.ErrStale) {
					sh.s.log.Printf("give back job %s: %v", d.Job.ID, err)
				}
				return
			}
			if requeued {
				sh.s.call(func(st *loopState) { st.jobs.c.JobsReassigned++ })
			}
		})
	}
}

// fetchFor takes jobs from the cluster for w while it has room.
func (sh *shared) fetchFor(ctx context.Context, w *worker, f *fetcher) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		var types []string
		room := 0
		fctx, fcancel := context.WithCancel(ctx)
		sh.s.call(func(st *loopState) {
			if st.jobs.workers[w.p] != w || w.draining || st.stopping {
				return
			}
			room = w.capacity - len(w.running)
			types = append(types, w.types...)
			f.types, f.retarget = types, fcancel
		})
		if room <= 0 || len(types) == 0 {
			fcancel()
			select {
			case <-f.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		ds, err := sh.c.Fetch(fctx, types, room)
		fcancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if fctx.Err() != nil {
				continue // its types changed
			}
			sh.s.log.Printf("fetch jobs of %v: %v", types, err)
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, 5*time.Second)
			case <-ctx.Done():
				return
			}
			continue
		}
		backoff = 100 * time.Millisecond
		var back []*cluster.Delivery
		sh.s.call(func(st *loopState) {
			js := &st.jobs
			for _, d := range ds {
				if js.workers[w.p] != w || w.draining || st.stopping || len(w.running) >= w.capacity || w.running[d.Job.ID] != nil {
					back = append(back, d)
					continue
				}
				pr, num := parseMeta(d.Job.Meta)
				j := &job{Job: queue.Job{ID: d.Job.ID, NumID: num, Type: d.Job.Type, Arg: d.Job.Arg,
					Priority: int32(d.Job.Priority), Retries: int32(d.Job.Retries), Attempts: int32(d.Attempt - 1),
					Submitted: d.Job.Submitted}, proto: pr, fetched: true}
				sh.fetched[j.ID] = &fetchedJob{j: j, d: d}
				js.assign(w, j)
			}
		})
		for _, d := range back {
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := d.Release(rctx); err != nil && !errors.Is(err, cluster.ErrStale) {
				sh.s.log.Printf("give back job %s: %v", d.Job.ID, err)
			}
			cancel()
		}
	}
}

// done writes a local worker's outcome of a fetched job to the cluster.
func (sh *shared) done(js *jobState, j *job, o *outcome) {
	fj := sh.fetched[j.ID]
	delete(sh.fetched, j.ID)
	j.State, j.Ended, j.out = o.state, time.Now().UnixNano(), o
	js.addRecent(j)
	if fj == nil || fj.j != j {
		return
	}
	d := fj.d
	if d.Job.Detached { // no submitter's jsd counts it: the one that ran it does
		js.count(o.state)
	}
	co := cluster.Outcome{State: o.state, Result: o.res, Encoding: o.enc, Error: o.err, Exit: o.exit}
	sh.go_(func() {
		ctx, cancel := context.WithTimeout(sh.ctx, 30*time.Second)
		defer cancel()
		if err := sh.c.Complete(ctx, d, co); err != nil {
			if errors.Is(err, cluster.ErrStale) {
				sh.s.log.Printf("job %s: its outcome came after it was cancelled or handed to another worker: dropped", d.Job.ID)
			} else {
				sh.s.log.Printf("job %s: write its outcome: %v", d.Job.ID, err)
			}
		}
	})
}

// onCancel: a job a local worker runs was cancelled (from NATS's goroutine).
func (sh *shared) onCancel(sig cluster.CancelSignal) {
	sh.s.call(func(st *loopState) {
		fj := sh.fetched[sig.ID]
		if fj == nil || fj.d.Fence != sig.Fence {
			return
		}
		sh.stopLocal(fj.j, sig.Signal)
	})
}

// stopLocal tells j's worker to stop it (the cluster has ended it).
func (sh *shared) stopLocal(j *job, sig string) {
	if sig == "" {
		sig = "TERM"
	}
	if w := j.worker; w != nil && w.canCancel && !j.gone {
		j.gone = true
		w.p.sendCancel(j, sig)
	}
}

// heartbeats keeps the running jobs' attempts alive (InProgress) and stops
// those the cluster ended meanwhile (a cancel whose signal was lost).
func (sh *shared) heartbeats() {
	t := time.NewTicker(sh.beat)
	defer t.Stop()
	for {
		select {
		case <-sh.ctx.Done():
			return
		case <-t.C:
		}
		var ds []*cluster.Delivery
		sh.s.call(func(*loopState) {
			for _, fj := range sh.fetched {
				ds = append(ds, fj.d)
			}
		})
		for _, d := range ds {
			ctx, cancel := context.WithTimeout(sh.ctx, sh.beat)
			err := d.InProgress(ctx)
			cancel()
			if errors.Is(err, cluster.ErrStale) {
				sh.s.call(func(*loopState) {
					if fj := sh.fetched[d.Job.ID]; fj != nil && fj.d == d {
						sh.stopLocal(fj.j, "TERM")
					}
				})
			}
		}
	}
}

// refresh keeps the cluster's queue counts and peers for the status, and
// announces this jsd, every 2 s.
func (sh *shared) refresh() {
	since := time.Now().UTC().Truncate(time.Millisecond)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		var me cluster.Peer
		sh.s.call(func(st *loopState) {
			me = cluster.Peer{Version: sh.s.cfg.Version, Slots: st.slots.total, Since: since,
				Workers: map[string]int{}, Capacity: map[string]int{}}
			if free, err := sh.s.pipe.Free(); err == nil {
				me.SlotsInUse = max(st.slots.total-free, 0)
			}
			for _, w := range st.jobs.workers {
				for _, typ := range w.types {
					me.Workers[typ]++
					me.Capacity[typ] += w.capacity
				}
			}
			cut := time.Now().Add(-time.Hour)
			for id, d := range sh.dropped {
				if d.at.Before(cut) {
					delete(sh.dropped, id) // its outcome never came: expired in the cluster
				}
			}
		})
		ctx, cancel := context.WithTimeout(sh.ctx, 5*time.Second)
		err := sh.c.Announce(ctx, me)
		stats, serr := sh.c.QueueStats(ctx)
		peers, perr := sh.c.Peers(ctx)
		cancel()
		if sh.ctx.Err() != nil {
			return
		}
		sh.s.call(func(st *loopState) {
			sh.statsErr = ""
			for _, e := range []error{err, serr, perr} {
				if e != nil {
					sh.statsErr = e.Error()
				}
			}
			if serr == nil {
				sh.stats = stats
			}
			if perr == nil {
				sh.peers = peers
			}
			st.dirty = true
		})
		select {
		case <-sh.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// view is the cluster part of the status document.
func (sh *shared) view() *status.Cluster {
	v := &status.Cluster{Name: sh.c.Name(), Server: sh.c.ServerVersion(), Replicas: sh.c.Replicas(),
		Peers: []status.Peer{}, Error: sh.statsErr}
	for _, p := range sh.peers {
		sp := status.Peer{Name: p.Name, Version: p.Version, Slots: p.Slots, SlotsInUse: p.SlotsInUse, Since: p.Since, Seen: p.Seen}
		for _, n := range p.Workers {
			sp.Workers += n
		}
		v.Peers = append(v.Peers, sp)
	}
	return v
}

// httpGet answers GET /jobs/{id} for a job this jsd does not hold: its
// state while it is queued or running (?wait=true: its outcome, once it
// ends), its outcome once it has ended (a detached result is fetched).
func (sh *shared) httpGet(w http.ResponseWriter, r *http.Request, id string, wantWait bool) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() { // the request ends with jsd
		select {
		case <-sh.ctx.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	js, err := sh.c.Status(ctx, id)
	if err == nil && js.State != "ended" && !wantWait {
		state := queue.Queued
		if js.State == "running" {
			state = queue.Running
		}
		v := status.Job{ID: id, Type: js.Job.Type, State: state.String(), Priority: js.Job.Priority, Attempts: js.Attempts,
			Submitted: time.Unix(0, js.Job.Submitted).UTC().Truncate(time.Millisecond)}
		if js.Started != 0 {
			v.RuntimeMS = time.Since(time.Unix(0, js.Started)).Milliseconds()
		}
		w.Header().Set("X-Job-Id", id)
		w.Header().Set("X-Job-State", v.State)
		jsonReply(w, http.StatusOK, v)
		return
	}
	var res cluster.Result
	if err == nil {
		res, err = sh.c.WaitResult(ctx, id)
	}
	switch {
	case errors.Is(err, cluster.ErrNotFound):
		textReply(w, http.StatusNotFound, fmt.Sprintf("no job %s in the cluster (never submitted, or its result went to its submitter, was fetched or expired)", id))
	case err != nil && r.Context().Err() != nil:
	case err != nil:
		textReply(w, http.StatusServiceUnavailable, fmt.Sprintf("job %s: %v", id, err))
	default:
		o := res.Outcome
		writeOutcome(w, httpOutcome{key: id, state: o.State, res: o.Result, enc: o.Encoding, err: o.Error, exit: o.Exit})
	}
}
