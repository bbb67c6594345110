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
	"github.com/nats-io/nuid"

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
	return c.settle(sctx, key, r, nrev)
}

// settle carries an ended record through: a detached job's record stays as
// its result (ResultTTL) until WaitResult fetches it; any other job's
// outcome goes to its origin and its id is freed. Idempotent, so a record
// left ended by a jsd that died in between is settled by whoever meets it
// next (at the cost of its origin possibly getting that outcome twice:
// Result.Nonce tells).
//
// When the outcome could neither be handed over nor kept (NATS failing
// over), the record stays ended and settle says so: the caller leaves the
// job's message to be delivered again, and whoever meets it settles it.
func (c *Cluster) settle(ctx context.Context, key string, r *record, rev uint64) error {
	if r.Detached {
		return nil
	}
	if err := c.route(ctx, r); err != nil {
		return err
	}
	c.free(ctx, key, rev)
	return nil
}

// route hands an outcome to its origin jsd by request/reply; when nobody
// answers "ok" in RouteTimeout (the origin is gone, or does not know the
// job) it goes to the results bucket under origin.id.
func (c *Cluster) route(ctx context.Context, r *record) error {
	data, err := json.Marshal(resultOf(r))
	if err != nil {
		c.logf("cluster: outcome of %s: %v", r.ID, err)
		return nil
	}
	rctx, cancel := withTimeout(ctx, c.cfg.RouteTimeout)
	m, err := c.nc.RequestWithContext(rctx, resultSubjectPre+token(r.Origin), data)
	cancel()
	if err == nil && string(m.Data) == "ok" {
		return nil
	}
	pctx, cancel := withTimeout(ctx, 20*time.Second)
	defer cancel()
	wait := 20 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(pctx, attemptTimeout)
		_, err := c.results.Put(actx, token(r.Origin)+"."+token(r.ID), data)
		acancel()
		if err == nil {
			return nil
		}
		if !notReady(err) || pctx.Err() != nil {
			err = fmt.Errorf("cluster: keep the outcome of %s for %s: %w", r.ID, r.Origin, err)
			c.logf("%v", err)
			return err
		}
		_ = pause(pctx, &wait)
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
	taken, err := c.take(ctx, resultsBucket, key, m.Seq)
	if err != nil || !taken {
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

// watchingHook calls the watching hook (tests), if any.
func (c *Cluster) watchingHook(id string) {
	if c.watching != nil {
		c.watching(id)
	}
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
	ended := func(r *record, rev uint64) (Result, error) {
		if r.Detached {
			// Fetched: the id is free again. Only the waiter whose
			// purge of this revision went through gets the result.
			taken, err := c.take(ctx, idsBucket, key, rev)
			if err != nil {
				return Result{}, err
			}
			if !taken {
				return Result{}, ErrNotFound // another waiter took it
			}
		}
		return resultOf(r), nil
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
					// The watch may be served by a replica behind the
					// leader: a record created a moment ago may not be
					// there yet. Ask the leader before giving up.
					cur, err := c.kvGet(ctx, idsBucket, key)
					if err == nil && cur != nil {
						var r record
						if err := json.Unmarshal(cur.Data, &r); err != nil {
							return Result{}, err
						}
						if r.State == stEnded {
							return ended(&r, cur.Seq)
						}
						c.watchingHook(id)
						continue // the watch will show what comes next
					}
					return kept()
				}
				c.watchingHook(id)
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
			return ended(&r, e.Revision())
		}
	}
}

// KeptInterval is how often a jsd looks for outcomes kept for it in the
// results bucket (besides after each reconnect to NATS).
const KeptInterval = 2 * time.Second

// keptLoop offers OnResult the outcomes kept for this jsd because it did not
// answer when they were routed: it was reconnecting to NATS (a node died),
// or slow. Its submitters are still waiting for them. It looks after every
// reconnect and every KeptInterval; an outcome OnResult takes is removed,
// one it declines (a job it does not hold) stays for WaitResult and is not
// offered again.
func (c *Cluster) keptLoop(ctx context.Context) {
	defer close(c.keptDone)
	if c.cfg.OnResult == nil {
		return
	}
	declined := map[string]uint64{} // key -> revision
	t := time.NewTicker(KeptInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.reconnected:
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c.offerKept(octx, declined)
		cancel()
	}
}

func (c *Cluster) offerKept(ctx context.Context, declined map[string]uint64) {
	keys, err := c.resultKeys(ctx, c.nameTok+".*")
	if err != nil {
		if ctx.Err() == nil {
			c.logf("cluster: outcomes kept for %s: %v", c.cfg.Name, err)
		}
		return
	}
	listed := map[string]bool{}
	for _, k := range keys {
		listed[k] = true
		m, err := c.kvGet(ctx, resultsBucket, k)
		if err != nil || m == nil || declined[k] == m.Seq {
			continue
		}
		var r Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			continue
		}
		if !c.cfg.OnResult(r) {
			declined[k] = m.Seq
			continue
		}
		if _, err := c.take(ctx, resultsBucket, k, m.Seq); err != nil {
			c.logf("cluster: remove the kept outcome of %s: %v", r.ID, err)
		}
	}
	for k := range declined {
		if !listed[k] {
			delete(declined, k)
		}
	}
}

// takerHeader tags the purge by which one caller takes a kept outcome.
const takerHeader = "Js-Taker"

// take purges key in bucket if its last revision is rev, for one caller,
// and reports whether it was this call that purged it. The purge is a
// compare-and-set at the stream's leader, which may not have applied rev yet
// when a watch (which any replica may serve) showed it: it is then tried
// again. A purge whose answer was lost (a NATS node failing) is recognised
// by its tag.
func (c *Cluster) take(ctx context.Context, bucket, key string, rev uint64) (bool, error) {
	tag := nuid.Next()
	subj := "$KV." + bucket + "." + key
	wait := 5 * time.Millisecond
	giveUp := time.Now().Add(30 * time.Second)
	for {
		m := nats.NewMsg(subj)
		m.Header.Set("KV-Operation", "PURGE")
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		m.Header.Set(takerHeader, tag)
		pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
		if bucket == idsBucket { // the one bucket with per-message TTLs: the marker goes after a minute
			opts = append(opts, jetstream.WithMsgTTL(time.Minute))
		}
		_, err := c.js.PublishMsg(pctx, m, opts...)
		cancel()
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if !isWrongLastSeq(err) && !notReady(err) {
			return false, err
		}
		cur, gerr := c.leaderGet(ctx, "KV_"+bucket, 0, subj)
		if gerr == nil {
			if cur == nil {
				return false, nil // expired, marker and all
			}
			if cur.Seq > rev {
				h, _ := nats.DecodeHeadersMsg(cur.Hdrs)
				return len(cur.Hdrs) > 0 && h.Get(takerHeader) == tag, nil
			}
			// cur.Seq <= rev: the leader has not applied rev yet, or the
			// purge did not get through: again.
		}
		if time.Now().After(giveUp) {
			if gerr == nil {
				gerr = err
			}
			return false, fmt.Errorf("cluster: take %s of %s: %w", key, bucket, gerr)
		}
		if err := pause(ctx, &wait); err != nil {
			return false, err
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
			if err := c.settle(ctx, key, r, rev); err != nil {
				retryLater(err)
				return
			}
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
