package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/js-toolkit/js/pkg/queue"
)

// Outcome is how a job ended: Done, Failed, Cancelled or Lost, with the
// worker's result or error (as jsd's scheduler keeps them).
type Outcome struct {
	State    queue.State
	Result   json.RawMessage // the result as JSON (a done job's res)
	Encoding string          // how Result encodes the handler's bytes ("" or "base64")
	Error    string
	Exit     *int
}

type outcomeJSON struct {
	State    string          `json:"state"`
	Result   json.RawMessage `json:"res,omitempty"`
	Encoding string          `json:"enc,omitempty"`
	Error    string          `json:"err,omitempty"`
	Exit     *int            `json:"exit,omitempty"`
}

// MarshalJSON writes the state by name.
func (o Outcome) MarshalJSON() ([]byte, error) {
	return json.Marshal(outcomeJSON{State: o.State.String(), Result: o.Result, Encoding: o.Encoding, Error: o.Error, Exit: o.Exit})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (o *Outcome) UnmarshalJSON(b []byte) error {
	var w outcomeJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	st, ok := queue.ParseState(w.State)
	if !ok || !st.Ended() {
		return fmt.Errorf("cluster: outcome state %q", w.State)
	}
	*o = Outcome{State: st, Result: w.Result, Encoding: w.Encoding, Error: w.Error, Exit: w.Exit}
	return nil
}

// Result is an ended job as its origin (or WaitResult) receives it.
type Result struct {
	ID        string  `json:"id"`
	Type      string  `json:"type"`
	Origin    string  `json:"origin"`
	Meta      string  `json:"meta,omitempty"`
	Detached  bool    `json:"detached,omitempty"`
	Priority  int     `json:"prio,omitempty"`
	Attempts  int     `json:"attempts"`
	Nonce     string  `json:"nonce"` // the submission: one outcome per nonce, ever
	Host      string  `json:"host,omitempty"`
	Submitted int64   `json:"submitted"`
	Started   int64   `json:"started,omitempty"`
	Ended     int64   `json:"ended"`
	Outcome   Outcome `json:"outcome"`
}

func resultOf(r *record) Result {
	res := Result{ID: r.ID, Type: r.Type, Origin: r.Origin, Meta: r.Meta, Detached: r.Detached, Priority: r.Priority,
		Attempts: r.Attempts, Nonce: r.Nonce, Host: r.Host, Submitted: r.Submitted, Started: r.Started, Ended: r.Ended}
	if r.Out != nil {
		res.Outcome = *r.Out
	}
	return res
}

// end is the one place a job ends: the outcome is written into its record
// if the record is still at rev (else ErrStale: someone else ended it or a
// newer attempt owns it), then carried through by settle.
func (c *Cluster) end(ctx context.Context, key string, r *record, rev uint64, o Outcome) error {
	if !o.State.Ended() {
		return fmt.Errorf("cluster: %s is not an outcome", o.State)
	}
	r.State, r.Ended, r.Out = stEnded, time.Now().UnixNano(), &o
	nrev, err := c.cas(ctx, key, r, rev, c.cfg.ResultTTL)
	if err != nil {
		return err
	}
	sctx, cancel := withTimeout(ctx, 30*time.Second) // decided: carried through even if ctx ends
	defer cancel()
	c.settle(sctx, key, r, nrev)
	return nil
}

// settle carries an ended record through: a detached job's record stays as
// its result (ResultTTL) until WaitResult fetches it; any other job's
// outcome goes to its origin and its id is freed. Idempotent, so a record
// left ended by a jsd that died in between is settled by whoever meets it
// next (at the cost of its origin possibly getting that outcome twice:
// Result.Nonce tells).
func (c *Cluster) settle(ctx context.Context, key string, r *record, rev uint64) {
	if r.Detached {
		return
	}
	c.route(ctx, r)
	c.free(ctx, key, rev)
}

// route hands an outcome to its origin jsd by request/reply; when nobody
// answers "ok" in RouteTimeout (the origin is gone, or does not know the
// job) it goes to the results bucket under origin.id.
func (c *Cluster) route(ctx context.Context, r *record) {
	data, err := json.Marshal(resultOf(r))
	if err != nil {
		c.logf("cluster: outcome of %s: %v", r.ID, err)
		return
	}
	rctx, cancel := withTimeout(ctx, c.cfg.RouteTimeout)
	m, err := c.nc.RequestWithContext(rctx, resultSubjectPre+token(r.Origin), data)
	cancel()
	if err == nil && string(m.Data) == "ok" {
		return
	}
	pctx, cancel := withTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.results.Put(pctx, token(r.Origin)+"."+token(r.ID), data); err != nil {
		c.logf("cluster: keep the outcome of %s for %s: %v", r.ID, r.Origin, err)
	}
}

func (c *Cluster) onResult(m *nats.Msg) {
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		c.logf("cluster: bad outcome message: %v", err)
		_ = m.Respond([]byte("bad"))
		return
	}
	if c.cfg.OnResult(r) {
		_ = m.Respond([]byte("ok"))
	} else {
		_ = m.Respond([]byte("no"))
	}
}

// Results takes the outcomes kept for origin because it did not answer
// when they were routed (a jsd that restarts under the same name collects
// them, and keeps them as detached results). Each is returned once.
func (c *Cluster) Results(ctx context.Context, origin string) ([]Result, error) {
	keys, err := c.resultKeys(ctx, token(origin)+".*")
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, k := range keys {
		r, err := c.takeResult(ctx, k)
		if err != nil {
			return out, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// resultKeys lists the kept outcomes' keys matching filter. It asks the
// stream's leader (STREAM.INFO with a subject filter), not the KV key
// listing: that one reads through an ordered consumer that a lagging
// replica may serve, so a key put a moment ago could be missing. Keys whose
// last message is a purge marker are listed too; takeResult skips them.
func (c *Cluster) resultKeys(ctx context.Context, filter string) ([]string, error) {
	st, err := c.js.Stream(ctx, "KV_"+resultsBucket)
	if err != nil {
		return nil, err
	}
	pre := "$KV." + resultsBucket + "."
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(pre+filter))
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		keys = append(keys, strings.TrimPrefix(subj, pre))
	}
	slices.Sort(keys)
	return keys, ctx.Err()
}

// takeResult reads and removes one kept outcome; nil when another jsd took
// it first.
func (c *Cluster) takeResult(ctx context.Context, key string) (*Result, error) {
	m, err := c.kvGet(ctx, resultsBucket, key)
	if err != nil || m == nil {
		return nil, err
	}
	if err := c.results.Purge(ctx, key, jetstream.LastRevision(m.Seq)); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, nil
		}
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("cluster: kept outcome %s: %w", key, err)
	}
	return &r, nil
}

// hasResult reports whether an outcome of id waits in the results bucket.
func (c *Cluster) hasResult(ctx context.Context, id string) bool {
	keys, err := c.resultKeys(ctx, "*."+token(id))
	return err == nil && len(keys) > 0
}

// WaitResult waits for job id to end and returns its outcome. A detached
// job's outcome is fetched: its id is free again and it is not kept after
// (as `jsctl wait` in one jsd). A job with a submitter: its outcome is
// returned and still goes to its origin. An outcome kept because its origin
// did not answer is fetched from the results bucket. ErrNotFound: no such
// job or kept outcome (never submitted, fetched, expired, or its outcome
// went to its submitter).
func (c *Cluster) WaitResult(ctx context.Context, id string) (Result, error) {
	key := token(id)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := c.ids.Watch(wctx, key)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = w.Stop() }()
	kept := func() (Result, error) {
		keys, err := c.resultKeys(ctx, "*."+key)
		if err != nil {
			return Result{}, err
		}
		for _, k := range keys {
			r, err := c.takeResult(ctx, k)
			if err != nil {
				return Result{}, err
			}
			if r != nil {
				return *r, nil
			}
		}
		return Result{}, ErrNotFound
	}
	seen := false
	for {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return Result{}, ctx.Err()
				}
				return Result{}, errors.New("cluster: the watch of the job ended")
			}
			if e == nil { // the current value was sent (or there is none)
				if !seen {
					return kept()
				}
				continue
			}
			seen = true
			if e.Operation() != jetstream.KeyValuePut {
				// Ended and freed: its outcome went to its origin, or
				// waits in the results bucket.
				return kept()
			}
			var r record
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				return Result{}, err
			}
			if r.State != stEnded {
				continue
			}
			if r.Detached {
				c.free(ctx, key, e.Revision()) // fetched: the id is free again
			}
			return resultOf(&r), nil
		}
	}
}

// lostLoop reports the jobs whose consumer gave up on them (MAX_DELIVERIES:
// the message stays in its work-queue stream). The advisories wait in
// their stream for any jsd: each is handled by one, and handling one twice
// changes nothing (the record's compare-and-set decides).
func (c *Cluster) lostLoop(ctx context.Context, cons jetstream.Consumer) {
	defer close(c.lostDone)
	cc, err := cons.Consume(func(m jetstream.Msg) { c.onAdvisory(ctx, m) },
		jetstream.PullMaxMessages(16), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoHeartbeat) {
				c.logf("cluster: lost-job watcher: %v", err)
			}
		}))
	if err != nil {
		c.logf("cluster: lost-job watcher not started: %v", err)
		return
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
}

type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

func (c *Cluster) onAdvisory(lctx context.Context, m jetstream.Msg) {
	ctx, cancel := context.WithTimeout(lctx, 30*time.Second)
	defer cancel()
	var a maxDeliveries
	if err := json.Unmarshal(m.Data(), &a); err != nil || !strings.HasPrefix(a.Stream, jobStreamPre) {
		_ = m.Ack() // not ours
		return
	}
	retryLater := func(err error) {
		c.logf("cluster: lost job at %s seq %d: %v (retried)", a.Stream, a.StreamSeq, err)
		_ = m.NakWithDelay(time.Second)
	}
	st, err := c.stream(ctx, a.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_ = m.Ack()
		return
	}
	if err != nil {
		retryLater(err)
		return
	}
	raw, err := c.leaderGet(ctx, st.CachedInfo().Config.Name, a.StreamSeq, "")
	if err != nil {
		retryLater(err)
		return
	}
	if raw == nil {
		_ = m.Ack() // gone already: handled, or cancelled
		return
	}
	head, _, err := decodeMsg(raw.Data)
	if err != nil {
		c.deleteMsg(ctx, a.Stream, a.StreamSeq)
		_ = m.Ack()
		return
	}
	key := token(head.ID)
	for {
		r, rev, err := c.get(ctx, key)
		if err != nil {
			retryLater(err)
			return
		}
		switch {
		case r == nil || r.Nonce != head.Nonce:
			// Its job ended already; only the message was left.
		case r.State == stEnded:
			c.settle(ctx, key, r, rev)
		default:
			err := c.end(ctx, key, r, rev, Outcome{State: queue.Lost,
				Error: fmt.Sprintf("its jsd stopped answering for it (ack wait %s) after %d attempt(s), %d deliveries",
					c.cfg.AckWait, r.Attempts, a.Deliveries)})
			if errors.Is(err, ErrStale) {
				continue
			}
			if err != nil {
				retryLater(err)
				return
			}
		}
		c.deleteMsg(ctx, a.Stream, a.StreamSeq)
		_ = m.Ack()
		return
	}
}
