package server

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/js-toolkit/js/pkg/jobserver"
	"github.com/js-toolkit/js/pkg/metrics"
	"github.com/js-toolkit/js/pkg/wire"
)

// slotState is the pool's bookkeeping, guarded by Server.mu. The tokens
// themselves live in the FIFO; jsd takes them out for a lease and writes
// them back when the lease ends.
type slotState struct {
	fifo      string
	total     int
	waiters   []*waiter // FIFO order: the head is served first
	leases    map[uint64]*lease
	leaseSeq  uint64
	reclaimed int
	granted   uint64
	debt      int // tokens to take out of the pool as they come back (after a shrink)
	buf       []byte
}

type waiter struct {
	c        *conn
	req      json.RawMessage
	k, have  int
	deadline time.Time // zero: wait forever
	pid      int
	command  string
	since    time.Time
}

type lease struct {
	id      uint64
	c       *conn
	k       int
	pid     int    // the client's pid, then its command's
	pgid    int    // the command's process group, once started
	start   uint64 // the group leader's start time, to recognise it
	command string
	since   time.Time
}

func (sl *slotState) init(fifo string, n int) {
	sl.fifo = fifo
	sl.total = n
	sl.leases = map[uint64]*lease{}
	sl.buf = make([]byte, 64)
}

func (sl *slotState) leasedCount() int { return len(sl.leases) }

// gathered is how many tokens jsd holds for waiters still short of theirs.
func (sl *slotState) gathered() int {
	n := 0
	for _, w := range sl.waiters {
		n += w.have
	}
	return n
}

// need is how many tokens jsd wants from the FIFO now: a shrink's debt,
// then what the head waiter still lacks.
func (sl *slotState) need() int {
	n := sl.debt
	if len(sl.waiters) > 0 {
		w := sl.waiters[0]
		n += w.k - w.have
	}
	return n
}

// resize changes the pool's size at runtime: growing adds tokens at once;
// shrinking takes tokens back as they return, never revoking a lease.
func (sl *slotState) resize(st *loopState, n int) string {
	if n < 1 || n > jobserver.MaxSlots {
		return fmt.Sprintf("slots %d is out of range 1..%d", n, jobserver.MaxSlots)
	}
	if n > sl.total {
		if err := st.s.pipe.EnsureCapacity(n); err != nil {
			return err.Error()
		}
		grow := n - sl.total
		pay := min(grow, sl.debt) // cancel a shrink not yet done
		sl.debt -= pay
		sl.putBack(st, grow-pay)
	} else {
		sl.debt += sl.total - n
	}
	st.s.log.Printf("resized the pool from %d to %d slots", sl.total, n)
	sl.total = n
	st.dirty = true
	return ""
}

func (sl *slotState) acquire(st *loopState, c *conn, m *wire.Msg) {
	k := m.Slots
	if k == 0 {
		k = 1
	}
	if k < 0 || k > sl.total || k > jobserver.MaxSlots {
		c.sendError(m.Req, wire.CodeBadRequest, fmt.Sprintf("slots %d is out of range 1..%d (the pool's size)", k, sl.total))
		return
	}
	if st.stopping {
		c.sendError(m.Req, wire.CodeStopping, "jsd is stopping and grants no new slots")
		return
	}
	w := &waiter{c: c, req: m.Req, k: k, pid: m.PID, command: m.Command, since: time.Now()}
	if m.TimeoutMS != nil {
		if *m.TimeoutMS < 0 {
			c.sendError(m.Req, wire.CodeBadRequest, "timeout_ms must be >= 0")
			return
		}
		w.deadline = time.Now().Add(time.Duration(*m.TimeoutMS) * time.Millisecond)
	}
	sl.waiters = append(sl.waiters, w)
	c.waiters++
	st.serve()
	if m.TimeoutMS == nil || !sl.waiting(w) {
		return // granted at once (the common case): no deadline to keep
	}
	if *m.TimeoutMS == 0 {
		// Do not wait: grant from what is free right now, or refuse.
		sl.dropWaiter(st, len(sl.waiters)-1)
		c.sendError(m.Req, wire.CodeBlocked, "no free slot")
		return
	}
	// Wake the loop only when its timer would fire too late for this
	// waiter: a goroutine wake-up per acquire was a third of W6's
	// context switches.
	if st.armed.IsZero() || w.deadline.Before(st.armed) {
		st.rearm = true
	}
}

// waiting reports whether w, the newest waiter, still waits.
func (sl *slotState) waiting(w *waiter) bool {
	return len(sl.waiters) > 0 && sl.waiters[len(sl.waiters)-1] == w
}

// fill takes tokens for the head waiters until the FIFO is empty. It reports
// whether anything changed.
func (sl *slotState) fill(st *loopState) bool {
	changed := false
	for sl.debt > 0 {
		n, err := st.s.pipe.TryTake(sl.buf[:min(sl.debt, len(sl.buf))])
		if err != nil || n == 0 {
			return changed
		}
		sl.debt -= n
		changed = true
	}
	for len(sl.waiters) > 0 {
		w := sl.waiters[0]
		want := w.k - w.have
		if want > len(sl.buf) {
			want = len(sl.buf)
		}
		n, err := st.s.pipe.TryTake(sl.buf[:want])
		if err != nil {
			st.s.log.Printf("read fifo: %v", err)
			return changed
		}
		if n == 0 {
			return changed
		}
		w.have += n
		changed = true
		if w.have < w.k {
			continue
		}
		sl.waiters = sl.waiters[1:]
		w.c.waiters--
		st.hist.Observe(metrics.SlotWait, "", time.Since(w.since))
		sl.grant(w)
	}
	return changed
}

func (sl *slotState) grant(w *waiter) {
	sl.leaseSeq++
	sl.granted++
	l := &lease{id: sl.leaseSeq, c: w.c, k: w.k, pid: w.pid, command: w.command, since: time.Now()}
	sl.leases[l.id] = l
	w.c.leases[l.id] = l
	w.c.send(&wire.Msg{Cmd: wire.CmdLease, Req: w.req, Lease: l.id, Slots: l.k, Fifo: sl.fifo, Total: sl.total})
}

// dropWaiter removes waiter i and gives back the tokens it had gathered.
func (sl *slotState) dropWaiter(st *loopState, i int) {
	w := sl.waiters[i]
	sl.waiters = append(sl.waiters[:i], sl.waiters[i+1:]...)
	w.c.waiters--
	sl.putBack(st, w.have)
}

func (sl *slotState) putBack(st *loopState, n int) {
	pay := min(n, sl.debt) // a shrink takes returning tokens first
	sl.debt -= pay
	n -= pay
	if n <= 0 {
		return
	}
	put, err := st.s.pipe.Put(n)
	if err != nil || put < n {
		st.s.log.Printf("write %d token(s) back to the fifo: wrote %d (%v)", n, put, err)
	}
}

func (sl *slotState) release(st *loopState, c *conn, m *wire.Msg) {
	l, ok := c.leases[m.Lease]
	if !ok {
		c.sendError(m.Req, wire.CodeNotFound, fmt.Sprintf("no lease %d on this connection", m.Lease))
		return
	}
	sl.endLease(st, l)
	c.send(&wire.Msg{Cmd: wire.CmdReleased, Req: m.Req, Lease: l.id})
}

func (sl *slotState) endLease(st *loopState, l *lease) {
	delete(sl.leases, l.id)
	delete(l.c.leases, l.id)
	sl.putBack(st, l.k)
}

func (sl *slotState) started(c *conn, m *wire.Msg) {
	l, ok := c.leases[m.Lease]
	if !ok {
		c.sendError(m.Req, wire.CodeNotFound, fmt.Sprintf("no lease %d on this connection", m.Lease))
		return
	}
	if m.PID > 0 {
		l.pid, l.pgid = m.PID, m.PID
		l.start, _ = jobserver.StartTime(m.PID)
	}
	if m.Command != "" {
		l.command = m.Command
	}
}

// dropConn ends everything a closed connection had: its waiters lose their
// place (their partial tokens go back), its leases end, and the commands
// still running on them are killed: no command runs on a slot nobody holds.
func (sl *slotState) dropConn(st *loopState, c *conn) {
	for i := len(sl.waiters) - 1; i >= 0; i-- {
		if sl.waiters[i].c == c {
			sl.dropWaiter(st, i)
		}
	}
	for _, l := range c.leases {
		if l.pgid > 0 {
			killGroup(l.pgid, l.start)
		}
		sl.endLease(st, l)
	}
}

func (sl *slotState) nextDeadline() (time.Time, bool) {
	var d time.Time
	for _, w := range sl.waiters {
		if !w.deadline.IsZero() && (d.IsZero() || w.deadline.Before(d)) {
			d = w.deadline
		}
	}
	return d, !d.IsZero()
}

func (sl *slotState) expire(st *loopState, now time.Time) {
	for i := len(sl.waiters) - 1; i >= 0; i-- {
		w := sl.waiters[i]
		if !w.deadline.IsZero() && !now.Before(w.deadline) {
			sl.dropWaiter(st, i)
			w.c.sendError(w.req, wire.CodeBlocked, "no free slot before the deadline")
			st.dirty = true
		}
	}
}
