package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/js-toolkit/js/pkg/queue"
)

// Delivery is one attempt of a job, handed to this jsd for a local worker.
// It ends with Complete (an outcome), Nak (the worker went away) or, if jsd
// dies, AckWait. Long jobs send InProgress well within AckWait.
type Delivery struct {
	Job Job
	// Attempt is 1 for the first run of the job, 2 for the first retry...
	Attempt int
	// Fence identifies this attempt: the ids bucket's revision written
	// when it was claimed. Outcomes, Naks and heartbeats of an attempt
	// that is no longer the job's current one are refused (ErrStale).
	Fence uint64
	// Seq is the job's message in its type's stream.
	Seq uint64

	c   *Cluster
	q   *typeQueue
	key string
	rec record
	msg jetstream.Msg

	mu   sync.Mutex
	done bool
}

// Fetch takes up to max jobs of the given types for this jsd's workers,
// waiting until there is at least one (or ctx ends). The highest priority
// level first across all the types, FIFO within a level and type (a job
// given back by Nak goes before the later ones); at one level the types
// take turns starting points between calls.
//
// Every returned Delivery is claimed: its attempt is written to the ids
// bucket (the fence). Messages of cancelled or ended jobs met on the way are
// removed, and a job redelivered after its retries are spent (its jsd died)
// is ended as lost instead of being returned.
func (c *Cluster) Fetch(ctx context.Context, types []string, max int) ([]*Delivery, error) {
	if max <= 0 {
		max = 1
	}
	if len(types) == 0 {
		return nil, errors.New("cluster: Fetch without types")
	}
	qs := make([]*typeQueue, 0, len(types))
	for _, t := range types {
		q, err := c.queue(ctx, t)
		if err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	w := &waker{ch: make(chan struct{}, 1)}
	for _, q := range qs {
		if err := c.listen(q); err != nil {
			return nil, err
		}
		q.wmu.Lock()
		q.waiters[w] = struct{}{}
		q.wmu.Unlock()
	}
	defer func() {
		for _, q := range qs {
			q.wmu.Lock()
			delete(q.waiters, w)
			q.wmu.Unlock()
		}
		select {
		case <-w.ch: // a wake-up this call did not act on: pass it on
			for _, q := range qs {
				_ = c.nc.Publish(wakeSubjectPre+q.tok, []byte{'0', 0})
			}
		default:
		}
	}()
	for {
		out, err := c.scan(ctx, qs, max)
		if len(out) > 0 && ctx.Err() != nil {
			// Claimed while the caller gave up: back, uncounted.
			rctx, cancel := withTimeout(ctx, 10*time.Second)
			for _, d := range out {
				if err := d.Release(rctx); err != nil {
					c.logf("cluster: release %s: %v", d.Job.ID, err)
				}
			}
			cancel()
			return nil, ctx.Err()
		}
		if len(out) > 0 {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			c.logf("cluster: fetch %v: %v", types, err)
		}
		t := time.NewTimer(c.cfg.PollInterval)
		select {
		case <-w.ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// waker is a waiting Fetch's signal.
type waker struct{ ch chan struct{} }

// maxWakeHops: how often a wake-up is passed on by jsds with no Fetch
// waiting before it is dropped (the waiting Fetches' PollInterval is the
// backstop).
const maxWakeHops = 3

// listen subscribes this jsd, once per type, to the type's wake-ups, in a
// queue group: each wake-up reaches one jsd, which signals one of its
// waiting Fetches (one whose last signal was taken, if any), or passes it
// on when none waits. The subscription lives as long as the Cluster, so its
// interest is known cluster-wide before any wake-up needs it.
func (c *Cluster) listen(q *typeQueue) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	if q.wsub != nil {
		return nil
	}
	q.waiters = map[*waker]struct{}{}
	sub, err := c.nc.QueueSubscribe(wakeSubjectPre+q.tok, wakeQueueGroup, func(m *nats.Msg) {
		q.wmu.Lock()
		var full *waker
		for w := range q.waiters {
			select {
			case w.ch <- struct{}{}:
				q.wmu.Unlock()
				return
			default:
				full = w
			}
		}
		q.wmu.Unlock()
		if full != nil {
			return // a Fetch here is about to look anyway
		}
		if len(m.Data) == 2 && m.Data[1] < maxWakeHops {
			_ = c.nc.Publish(m.Subject, []byte{m.Data[0], m.Data[1] + 1})
		}
	})
	if err != nil {
		return err
	}
	q.wsub = sub
	return c.nc.Flush()
}

// scan takes what is queued now, highest level first.
func (c *Cluster) scan(ctx context.Context, qs []*typeQueue, max int) ([]*Delivery, error) {
	// Which levels hold messages (queued or running): one stream info per
	// type spares the empty levels a fetch each.
	counts := make([]map[string]uint64, len(qs))
	var firstErr error
	for i, q := range qs {
		info, err := q.st.Info(ctx, jetstream.WithSubjectFilter("jobs."+q.tok+".*"))
		if err != nil {
			firstErr = err
			continue
		}
		counts[i] = info.State.Subjects
	}
	start := int(atomic.AddUint32(&c.rr, 1))
	var out []*Delivery
	for l := Levels - 1; l >= 0 && len(out) < max; l-- {
		for k := 0; k < len(qs) && len(out) < max; k++ {
			i := (start + k) % len(qs)
			q := qs[i]
			if counts[i] == nil || counts[i][levelSubject(q.tok, l)] == 0 {
				continue
			}
			for len(out) < max {
				want := max - len(out)
				got, n, err := c.fetchLevel(ctx, q, l, want)
				out = append(out, got...)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if n < want || err != nil {
					break
				}
			}
		}
	}
	return out, firstErr
}

// fetchLevel takes up to want messages of one level and claims them; n is
// how many messages came (claimed or not).
func (c *Cluster) fetchLevel(ctx context.Context, q *typeQueue, level, want int) ([]*Delivery, int, error) {
	batch, err := q.cons[level].FetchNoWait(want)
	if err != nil {
		return nil, 0, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && len(msgs) == 0 {
		return nil, 0, err
	}
	got := make([]*Delivery, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A fetched message must be claimed or given back even if the
			// caller gives up: claims do not take its ctx.
			cctx, cancel := withTimeout(ctx, 10*time.Second)
			defer cancel()
			got[i] = c.claim(cctx, q, m)
		}()
	}
	wg.Wait()
	out := got[:0]
	for _, d := range got {
		if d != nil {
			out = append(out, d)
		}
	}
	return out, len(msgs), nil
}

// claim makes a fetched message this jsd's attempt of its job, or disposes
// of it: nil when it is not to be run.
func (c *Cluster) claim(ctx context.Context, q *typeQueue, m jetstream.Msg) *Delivery {
	meta, err := m.Metadata()
	if err != nil {
		c.logf("cluster: a message without metadata on %s: %v", q.stream, err)
		_ = m.Term()
		return nil
	}
	head, arg, err := decodeMsg(m.Data())
	if err != nil {
		c.logf("cluster: %v (stream %s seq %d): removed", err, q.stream, meta.Sequence.Stream)
		_ = m.Term()
		return nil
	}
	key := token(head.ID)
	for {
		r, rev, err := c.get(ctx, key)
		if err != nil {
			c.logf("cluster: claim %s: %v", head.ID, err)
			_ = m.NakWithDelay(time.Second)
			return nil
		}
		if r == nil || r.Nonce != head.Nonce || r.Seq != 0 && r.Seq != meta.Sequence.Stream {
			// Its job ended (or never was: a failed submit's late message,
			// an earlier job under the same id, a second copy of a publish
			// re-sent after the duplicate window): the message goes.
			_ = m.DoubleAck(ctx)
			return nil
		}
		if r.State == stEnded {
			// Ended, but its end was not carried through (its jsd died
			// in between): carry it through now.
			if err := c.settle(ctx, key, r, rev); err != nil {
				_ = m.NakWithDelay(time.Second)
				return nil
			}
			_ = m.DoubleAck(ctx)
			return nil
		}
		if r.Attempts >= c.maxRuns(r) {
			// Handed out again after its last attempt's jsd stopped
			// answering: lost.
			err := c.end(ctx, key, r, rev, Outcome{State: queue.Lost,
				Error: fmt.Sprintf("its jsd stopped answering for it (ack wait %s) after %d attempt(s)", c.cfg.AckWait, r.Attempts)})
			if errors.Is(err, ErrStale) {
				continue
			}
			if err != nil {
				c.logf("cluster: end %s as lost: %v", head.ID, err)
				_ = m.NakWithDelay(time.Second)
				return nil
			}
			_ = m.DoubleAck(ctx)
			return nil
		}
		r.State, r.Attempts, r.Host, r.Seq, r.Started = stRunning, r.Attempts+1, c.cfg.Name, meta.Sequence.Stream, time.Now().UnixNano()
		nrev, err := c.cas(ctx, key, r, rev, c.cfg.IDTTL)
		if errors.Is(err, ErrStale) {
			continue // cancelled or claimed meanwhile: look again
		}
		if err != nil {
			c.logf("cluster: claim %s: %v", head.ID, err)
			_ = m.NakWithDelay(time.Second)
			return nil
		}
		j := r.job()
		j.Arg = arg
		return &Delivery{Job: j, Attempt: r.Attempts, Fence: nrev, Seq: meta.Sequence.Stream,
			c: c, q: q, key: key, rec: *r, msg: m}
	}
}

// take marks d used up once: a second outcome of one delivery is a bug of
// the caller, refused as stale.
func (d *Delivery) take() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return false
	}
	d.done = true
	return true
}

// Complete ends the job with the worker's outcome, if d is still its current
// attempt (else ErrStale, and nothing changes: a zombie's late answer never
// completes a newer attempt). The outcome is fenced into the ids bucket
// first (the one decision), then routed to the job's origin (request/reply,
// else the results bucket), then the message is acked (DoubleAck) and the
// id freed. A detached job keeps its outcome under its id for WaitResult.
func (c *Cluster) Complete(ctx context.Context, d *Delivery, o Outcome) error {
	if d.c != c {
		return errors.New("cluster: a delivery of another Cluster")
	}
	if !o.State.Ended() {
		return fmt.Errorf("cluster: %s is not an outcome", o.State)
	}
	if !d.take() {
		return ErrStale
	}
	r := d.rec
	err := c.end(ctx, d.key, &r, d.Fence, o)
	if errors.Is(err, ErrStale) {
		d.disposeStale(ctx)
	}
	if err != nil {
		return err
	}
	d.ack(ctx)
	return nil
}

// ack removes the message after its job ended (safe: no newer attempt can
// be claimed once the record says ended).
func (d *Delivery) ack(ctx context.Context) {
	actx, cancel := withTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.msg.DoubleAck(actx); err != nil {
		// Deleted already (a cancel), or the ack was lost: delete it
		// ourselves; failing that, its redelivery finds the record ended.
		d.c.deleteMsg(actx, d.q.stream, d.Seq)
	}
}

// disposeStale removes the message of a refused attempt when that cannot
// hurt: the job ended or is gone. If a newer attempt runs, the message is
// left alone: an ack here would ack that attempt's delivery (JetStream
// matches acks by stream sequence).
func (d *Delivery) disposeStale(ctx context.Context) {
	r, _, err := d.c.get(ctx, d.key)
	if err != nil {
		return
	}
	if r != nil && r.Nonce == d.rec.Nonce && r.State == stEnded && !r.Detached {
		// Ended by a cancel (or another jsd) and not carried through yet
		// (a settled record is freed): its settler removes the message,
		// or, if it could not settle, the message's next delivery does.
		return
	}
	if r == nil || r.Nonce != d.rec.Nonce || r.State == stEnded {
		d.ack(ctx)
	}
}

// Nak gives the job back at once because its worker went away (jsd sees its
// worker's disconnect long before AckWait): it is handed out again, before
// the jobs queued after it. When its retries are spent it ends as lost
// instead (requeued false), reported to its origin like any outcome.
// ErrStale: d is no longer the job's current attempt (nothing is done).
func (d *Delivery) Nak(ctx context.Context) (requeued bool, err error) {
	c := d.c
	if !d.take() {
		return false, ErrStale
	}
	r := d.rec
	if d.Attempt >= c.maxRuns(&r) {
		err := c.end(ctx, d.key, &r, d.Fence, Outcome{State: queue.Lost,
			Error: fmt.Sprintf("its worker disconnected while running it (after %d attempt(s))", d.Attempt)})
		if errors.Is(err, ErrStale) {
			d.disposeStale(ctx)
		}
		if err != nil {
			return false, err
		}
		d.ack(ctx)
		return false, nil
	}
	// Fence first: once the record says queued, a zombie's Nak of this
	// attempt is refused; then the message is redelivered at once.
	r.State, r.Host = stQueued, ""
	if _, err := c.cas(ctx, d.key, &r, d.Fence, c.cfg.IDTTL); err != nil {
		if errors.Is(err, ErrStale) {
			d.disposeStale(ctx)
		}
		return false, err
	}
	if err := d.msg.Nak(); err != nil {
		return false, err
	}
	c.wake(d.q, Level(r.Priority))
	return true, nil
}

// Release gives the job back without counting this attempt: the worker
// never got it (jsd fetched for a worker that went away before the job was
// sent). It is handed out again at once, ahead of later jobs. ErrStale: d
// is no longer the job's current attempt.
func (d *Delivery) Release(ctx context.Context) error {
	c := d.c
	if !d.take() {
		return ErrStale
	}
	r := d.rec
	r.State, r.Host, r.Attempts = stQueued, "", max(r.Attempts-1, 0)
	if _, err := c.cas(ctx, d.key, &r, d.Fence, c.cfg.IDTTL); err != nil {
		if errors.Is(err, ErrStale) {
			d.disposeStale(ctx)
		}
		return err
	}
	if err := d.msg.Nak(); err != nil {
		return err
	}
	c.wake(d.q, Level(r.Priority))
	return nil
}

// InProgress tells JetStream the job still runs (resets AckWait): jsd sends
// it for long jobs, well within AckWait. It first checks that d is still
// the job's current attempt: ErrStale means it was cancelled or handed out
// again, and the worker should be stopped.
func (d *Delivery) InProgress(ctx context.Context) error {
	r, rev, err := d.c.get(ctx, d.key)
	if err != nil {
		return err
	}
	if r == nil || rev != d.Fence {
		return ErrStale
	}
	return d.msg.InProgress()
}
