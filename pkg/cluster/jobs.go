package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/js-toolkit/js/pkg/queue"
)

// Levels is the number of priority levels: each type has one subject and one
// consumer per level, jobs.<type>.p0 .. jobs.<type>.p9, taken highest first.
const Levels = 10

// Level maps a job's priority onto its level: 0..9 are their own level,
// every negative priority shares p0 and every priority above 9 shares p9
// (FIFO among them: the order of priorities beyond the ends is lost).
func Level(priority int) int { return min(max(priority, 0), Levels-1) }

// Errors of the job operations.
var (
	// ErrIDExists: Submit of an id that is queued, running, or ended
	// detached with its result not fetched yet.
	ErrIDExists = errors.New("cluster: a job with that id is queued or running (or its detached result waits to be fetched)")
	// ErrStale: the delivery was superseded (a newer attempt of the job
	// was handed out, or the job was cancelled or ended): its outcome,
	// Nak or heartbeat is refused.
	ErrStale = errors.New("cluster: this attempt of the job was superseded (cancelled, ended, or handed out again)")
	// ErrNotFound: no job, or no kept result, under that id.
	ErrNotFound = errors.New("cluster: no such job")
	// ErrEnded: the job has ended already.
	ErrEnded = errors.New("cluster: the job has ended already")
)

// Job is a job as it is submitted.
type Job struct {
	ID       string // unique among live jobs cluster-wide; "" assigns one
	Type     string
	Priority int // higher first; see Level for what the cluster keeps
	Arg      json.RawMessage
	Retries  int  // runs after the first when a worker dies mid-job; <0: up to Config.MaxDeliver
	Detached bool // nobody waits: the outcome is kept for WaitResult
	Origin   string
	// Meta is carried untouched to the worker's jsd and back with the
	// outcome (jsd keeps there what the cluster need not know: the id's
	// JSON kind, the protocol the job came in on).
	Meta      string
	Submitted int64 // unix ns, set by Submit
	// Nonce names this submission (its outcome's Result.Nonce); "" assigns
	// one. It must be unique: it is also the message's Nats-Msg-Id.
	Nonce string
}

// record is a job's entry in the ids bucket: the cluster's truth about it.
// Every change is a compare-and-set on the key's revision; the revision a
// claim produced is the attempt's fence.
type record struct {
	ID        string   `json:"id"`
	Type      string   `json:"type"`
	Priority  int      `json:"prio,omitempty"`
	Retries   int      `json:"retries,omitempty"`
	Detached  bool     `json:"detached,omitempty"`
	Origin    string   `json:"origin,omitempty"`
	Meta      string   `json:"meta,omitempty"`
	Nonce     string   `json:"nonce"`         // this submission (also the message's Nats-Msg-Id)
	Seq       uint64   `json:"seq,omitempty"` // its message in the type's stream, once known
	State     string   `json:"state"`         // queued, running, ended
	Attempts  int      `json:"attempts,omitempty"`
	Host      string   `json:"host,omitempty"` // the jsd running it
	Submitted int64    `json:"submitted"`
	Started   int64    `json:"started,omitempty"`
	Ended     int64    `json:"ended,omitempty"`
	Out       *Outcome `json:"out,omitempty"`
}

const (
	stQueued  = "queued"
	stRunning = "running"
	stEnded   = "ended"
)

func (r *record) job() Job {
	return Job{ID: r.ID, Type: r.Type, Priority: r.Priority, Retries: r.Retries, Detached: r.Detached,
		Origin: r.Origin, Meta: r.Meta, Submitted: r.Submitted}
}

// maxRuns is how many attempts the job may have: Retries+1, at most the
// consumers' MaxDeliver.
func (c *Cluster) maxRuns(r *record) int {
	if r.Retries < 0 || r.Retries+1 > c.cfg.MaxDeliver {
		return c.cfg.MaxDeliver
	}
	return r.Retries + 1
}

// msgHead is the first line of a job's message; the arg follows the newline.
type msgHead struct {
	ID    string `json:"id"`
	Nonce string `json:"nonce"`
}

func encodeMsg(id, nonce string, arg []byte) []byte {
	h, _ := json.Marshal(msgHead{ID: id, Nonce: nonce})
	b := make([]byte, 0, len(h)+1+len(arg))
	b = append(b, h...)
	b = append(b, '\n')
	return append(b, arg...)
}

func decodeMsg(data []byte) (msgHead, []byte, error) {
	var h msgHead
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return h, nil, errors.New("cluster: a job message without its head line")
	}
	if err := json.Unmarshal(data[:i], &h); err != nil {
		return h, nil, fmt.Errorf("cluster: a job message's head: %w", err)
	}
	return h, data[i+1:], nil
}

// token turns a name (type, id, origin) into one subject token, stream-name
// part and KV key part: names of [A-Za-z0-9-] (then also _) are themselves;
// anything else, or a name starting with '_', is "_" + base64url of it.
func token(s string) string {
	plain := s != "" && s[0] != '_'
	for i := 0; plain && i < len(s); i++ {
		b := s[i]
		plain = b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_'
	}
	if plain {
		return s
	}
	return "_" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

func levelSubject(typeTok string, level int) string {
	return "jobs." + typeTok + ".p" + strconv.Itoa(level)
}

// typeQueue is one type's stream and its level consumers, set up once per
// jsd (create-or-update: every jsd may create them).
type typeQueue struct {
	name, tok, stream string
	st                jetstream.Stream
	cons              [Levels]jetstream.Consumer
	ready             chan struct{}
	err               error

	wmu     sync.Mutex
	wsub    *nats.Subscription  // its wake-ups, once a Fetch asked for the type
	waiters map[*waker]struct{} // the Fetches of this jsd waiting for it
}

// maxTypeToken keeps stream and consumer names within JetStream's limits.
const maxTypeToken = 200

func (c *Cluster) queue(ctx context.Context, typ string) (*typeQueue, error) {
	if typ == "" {
		return nil, errors.New("cluster: a job needs a type")
	}
	c.mu.Lock()
	q := c.types[typ]
	if q == nil {
		q = &typeQueue{name: typ, tok: token(typ), ready: make(chan struct{})}
		q.stream = jobStreamPre + q.tok
		c.types[typ] = q
		c.mu.Unlock()
		q.err = c.setupType(ctx, q)
		if q.err != nil {
			c.mu.Lock()
			delete(c.types, typ) // the next call tries again
			c.mu.Unlock()
		}
		close(q.ready)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-q.ready:
		return q, q.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Cluster) setupType(ctx context.Context, q *typeQueue) error {
	if len(q.tok) > maxTypeToken {
		return fmt.Errorf("cluster: job type %.40q... is too long for a stream name", q.name)
	}
	return retry(ctx, "the stream of type "+q.name, func(ctx context.Context) error {
		st, err := c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        q.stream,
			Description: "js: queued and running jobs of type " + q.name,
			Subjects:    []string{"jobs." + q.tok + ".*"},
			Retention:   jetstream.WorkQueuePolicy, // a message goes on ack
			Storage:     jetstream.FileStorage,
			Replicas:    c.replicas,
			Duplicates:  c.cfg.DuplicateWindow,
			Discard:     jetstream.DiscardNew,
			MaxAge:      c.cfg.IDTTL, // a message never outlives its id's record
			Metadata:    map[string]string{typeMetaKey: q.name},
		})
		if err != nil {
			return err
		}
		q.st = st
		for l := 0; l < Levels; l++ {
			cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
				Durable:       "p" + strconv.Itoa(l),
				Description:   "js: level " + strconv.Itoa(l) + " of type " + q.name,
				FilterSubject: levelSubject(q.tok, l),
				DeliverPolicy: jetstream.DeliverAllPolicy,
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       c.cfg.AckWait,
				MaxDeliver:    c.cfg.MaxDeliver,
				MaxAckPending: c.cfg.MaxAckPending,
				MaxWaiting:    4096,
			})
			if err != nil {
				return err
			}
			q.cons[l] = cons
		}
		return nil
	})
}

// stream returns a job stream by name (for advisories), cached.
func (c *Cluster) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	c.mu.Lock()
	st := c.streams[name]
	c.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := c.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.streams[name] = st
	c.mu.Unlock()
	return st, nil
}

// Submit queues a job. Its id must not name a live job anywhere in the
// cluster (ErrIDExists); "" assigns a unique one. It returns the id.
//
// The id is taken first (KV create on the ids bucket, with IDTTL), then the
// job is published to jobs.<type>.p<level> with the submission's nonce as
// Nats-Msg-Id (a re-sent publish is dropped by the stream), then its
// stream sequence is recorded (for cancel). A failed publish gives the id
// back.
func (c *Cluster) Submit(ctx context.Context, j Job) (string, error) {
	return c.SubmitAfter(ctx, j, nil, nil)
}

// SubmitAfter is Submit keeping a submitter's order: the job's message is
// published only once prev is closed (the previous submission of the same
// submitter has published, or given up), and published is closed when this
// one has (or gave up). The reservations of the id run concurrently; only
// the publishes are in turn, so a submitter's jobs of one type and level
// are queued in the order it sent them. nil channels: no order.
func (c *Cluster) SubmitAfter(ctx context.Context, j Job, prev <-chan struct{}, published chan struct{}) (string, error) {
	var once sync.Once
	turnDone := func() { // the next submission of this submitter may publish
		if published != nil {
			once.Do(func() { close(published) })
		}
	}
	defer turnDone()
	q, err := c.queue(ctx, j.Type)
	if err != nil {
		return "", err
	}
	if j.ID == "" {
		j.ID = c.cfg.Name + "-" + nuid.Next()
	}
	if j.Origin == "" {
		j.Origin = c.cfg.Name
	}
	if len(j.Arg) == 0 {
		j.Arg = json.RawMessage("null")
	}
	nonce := j.Nonce
	if nonce == "" {
		nonce = nuid.Next()
	}
	rec := record{ID: j.ID, Type: j.Type, Priority: j.Priority, Retries: j.Retries, Detached: j.Detached,
		Origin: j.Origin, Meta: j.Meta, Nonce: nonce, State: stQueued, Submitted: time.Now().UnixNano()}
	key := token(j.ID)
	val, _ := json.Marshal(&rec)
	// The id is reserved for ReserveTTL only, until the job's message is
	// in its stream: a jsd that dies in between leaves a reservation that
	// expires (its id free again, a wait for it answered not found)
	// instead of a record no message will ever end. Submit gives up well
	// before the reservation ends.
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReserveTTL/2)
	defer cancel()
	rev, err := c.create(ctx, key, val)
	if err != nil && (errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSeq(err)) {
		// A job that has ended and is not detached: its outcome is on its
		// way (settle frees the id right after routing it, so its
		// submitter may see it first). Its id may be used again.
		cur, crev, gerr := c.get(ctx, key)
		switch {
		case gerr != nil:
			err = gerr
		case cur == nil: // freed meanwhile
			rev, err = c.create(ctx, key, val)
		case cur.Nonce == nonce: // our own: an earlier attempt was written after all
			rev, err = crev, nil
		case cur.State == stEnded && !cur.Detached:
			rev, err = c.cas(ctx, key, &rec, crev, c.cfg.ReserveTTL)
		}
		if err != nil && (errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSeq(err) || errors.Is(err, ErrStale)) || err == nil && rev == 0 {
			return "", fmt.Errorf("%w: %s", ErrIDExists, j.ID)
		}
	}
	if err != nil {
		return "", fmt.Errorf("cluster: reserve id %s: %w", j.ID, err)
	}
	level := Level(j.Priority)
	msg := &nats.Msg{Subject: levelSubject(q.tok, level), Data: encodeMsg(j.ID, nonce, j.Arg)}
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
		}
	}
	ack, err := c.publish(ctx, msg, nonce, q.stream)
	turnDone()
	if err != nil {
		// Give the id back. If the publish did land after all, its message
		// carries a nonce no record has: the first fetch drops it.
		pctx, cancel := withTimeout(ctx, 10*time.Second)
		c.free(pctx, key, rev)
		cancel()
		return "", fmt.Errorf("cluster: queue job %s: %w", j.ID, err)
	}
	rec.Seq = ack.Sequence
	if _, err := c.cas(ctx, key, &rec, rev, c.cfg.IDTTL); errors.Is(err, ErrStale) {
		// Someone changed it first: a worker claimed it (and recorded the
		// sequence), or it was cancelled before we knew the sequence: then
		// the message is ours to remove.
		cur, _, gerr := c.get(ctx, key)
		if gerr == nil && (cur == nil || cur.Nonce != nonce || cur.State == stEnded) {
			c.deleteMsg(ctx, q.stream, ack.Sequence)
		}
	} else if err != nil {
		// Not confirmed in time: the reservation will expire, the message
		// goes (if it cannot be removed either, a worker that claims it
		// before the reservation ends runs it after all).
		pctx, cancel := withTimeout(ctx, 10*time.Second)
		c.deleteMsg(pctx, q.stream, ack.Sequence)
		c.free(pctx, key, rev)
		cancel()
		return "", fmt.Errorf("cluster: queue job %s: %w", j.ID, err)
	}
	c.wake(q, level)
	return j.ID, nil
}

// publish sends a job's message, re-sending it (same Nats-Msg-Id: the
// stream keeps one) while the stream has no leader or the ack is late.
func (c *Cluster) publish(ctx context.Context, msg *nats.Msg, nonce, stream string) (*jetstream.PubAck, error) {
	var last error
	for try := 0; try < 5; try++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := c.js.PublishMsg(cctx, msg, jetstream.WithMsgID(nonce), jetstream.WithExpectStream(stream),
			jetstream.WithRetryAttempts(10), jetstream.WithRetryWait(100*time.Millisecond))
		cancel()
		if err == nil {
			return ack, nil
		}
		last = err
		if ctx.Err() != nil || !notReady(err) {
			break
		}
	}
	return nil, last
}

// wake tells a waiting Fetch (one, of a queue group) that a job of q's type
// is queued.
func (c *Cluster) wake(q *typeQueue, level int) {
	_ = c.nc.Publish(wakeSubjectPre+q.tok, []byte{byte('0' + level), 0})
}

// get reads a job's record: nil when there is none (never was, ended and
// freed, or expired).
func (c *Cluster) get(ctx context.Context, key string) (*record, uint64, error) {
	m, err := c.kvGet(ctx, idsBucket, key)
	if err != nil || m == nil {
		return nil, 0, err
	}
	var r record
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, 0, fmt.Errorf("cluster: record of %s: %w", key, err)
	}
	return &r, m.Seq, nil
}

// cas writes a record if the key is still at rev, with a TTL (KV Update
// would drop the key's TTL). It returns the new revision; a conflict is
// ErrStale.
func (c *Cluster) cas(ctx context.Context, key string, r *record, rev uint64, ttl time.Duration) (uint64, error) {
	val, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	subj := "$KV." + idsBucket + "." + key
	wait := 20 * time.Millisecond
	tried := false // an attempt went unanswered: it may have been written
	for {
		m := &nats.Msg{Subject: subj, Data: val, Header: nats.Header{}}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := c.js.PublishMsg(actx, m, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		if isWrongLastSeq(err) && !tried {
			return 0, ErrStale
		}
		if !isWrongLastSeq(err) && (!notReady(err) || ctx.Err() != nil) {
			return 0, err
		}
		tried = true
		cur, gerr := c.leaderGet(ctx, "KV_"+idsBucket, 0, subj)
		if gerr == nil {
			switch {
			case cur != nil && cur.Seq > rev && !cur.deleted() && bytes.Equal(cur.Data, val):
				return cur.Seq, nil // the unanswered attempt was written
			case cur == nil || cur.Seq > rev:
				return 0, ErrStale
			}
			// Still at rev (or the leader has not applied it yet): again.
		}
		if err := pause(ctx, &wait); err != nil {
			return 0, err
		}
	}
}

// attemptTimeout bounds one request to JetStream: a request sent on a
// connection to a node that dies gets no answer at all (nats.go does not
// fail it on the reconnect), so it is sent again rather than waiting for
// the caller's whole deadline.
const attemptTimeout = 4 * time.Second

// create is the ids bucket's Create, sent again while unanswered. An
// earlier attempt that was written after all makes a later one fail with
// ErrKeyExists: Submit recognises its own record by the nonce.
func (c *Cluster) create(ctx context.Context, key string, val []byte) (uint64, error) {
	wait := 20 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		rev, err := c.ids.Create(actx, key, val, jetstream.KeyTTL(c.cfg.ReserveTTL))
		cancel()
		if err == nil || !notReady(err) || ctx.Err() != nil {
			return rev, err
		}
		if err := pause(ctx, &wait); err != nil {
			return 0, err
		}
	}
}

// free removes a job's record if it is still at rev (the id is free again).
// The purge marker itself expires after a minute.
func (c *Cluster) free(ctx context.Context, key string, rev uint64) {
	if _, err := c.take(ctx, idsBucket, key, rev); err != nil {
		c.logf("cluster: free id %s: %v", key, err)
	}
}

// deleteMsg removes a job's message from its stream; gone already is fine.
func (c *Cluster) deleteMsg(ctx context.Context, stream string, seq uint64) {
	if seq == 0 {
		return
	}
	st, err := c.stream(ctx, stream)
	if err == nil {
		err = st.DeleteMsg(ctx, seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == 10057 || strings.Contains(err.Error(), "err_code=10057") {
			return // "no message found": acked or deleted already (nats.go does not wrap the API error here)
		}
		c.logf("cluster: delete message %d of %s: %v", seq, stream, err)
	}
}

func isWrongLastSeq(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// CancelSignal asks the jsd whose worker runs a job to stop it. Fence is the
// attempt's fence: a signal for an older attempt than the one running there
// is stale.
type CancelSignal struct {
	ID     string `json:"id"`
	Fence  uint64 `json:"fence"`
	Signal string `json:"signal,omitempty"`
}

// Cancel ends a queued or running job as cancelled, from any jsd. A queued
// job's message is deleted and its id freed; a running one's jsd is sent a
// CancelSignal (its worker's late outcome is then refused as stale). The
// origin gets the cancelled outcome like any other. ErrNotFound: no such
// live job; ErrEnded: it ended already.
func (c *Cluster) Cancel(ctx context.Context, id, signal string) error {
	key := token(id)
	for {
		r, rev, err := c.get(ctx, key)
		if err != nil {
			return err
		}
		if r == nil {
			if c.hasResult(ctx, id) {
				return ErrEnded
			}
			return ErrNotFound
		}
		if r.State == stEnded {
			return ErrEnded
		}
		q, err := c.queue(ctx, r.Type)
		if err != nil {
			return err
		}
		was := *r
		r.State, r.Ended = stEnded, time.Now().UnixNano()
		r.Out = &Outcome{State: queue.Cancelled, Error: "cancelled"}
		nrev, err := c.cas(ctx, key, r, rev, c.cfg.ResultTTL)
		if errors.Is(err, ErrStale) {
			continue // claimed or ended meanwhile: look again
		}
		if err != nil {
			return err
		}
		ctx, cancel := withTimeout(ctx, 30*time.Second) // decided: carried through even if ctx ends
		defer cancel()
		if was.State == stRunning && was.Host != "" {
			b, _ := json.Marshal(CancelSignal{ID: id, Fence: rev, Signal: signal})
			if err := c.nc.Publish(cancelSubjectPre+token(was.Host), b); err != nil {
				c.logf("cluster: cancel signal for %s to %s: %v", id, was.Host, err)
			}
		}
		if err := c.settle(ctx, key, r, nrev); err != nil {
			return nil // cancelled; its message, met again, carries the outcome through
		}
		// The message goes last, queued or running (the running attempt's
		// late ack finds nothing to ack): until then, a jsd that dies
		// here leaves it to be redelivered and the ended record settled.
		// A sequence not known yet is removed by its submitter, which finds
		// the record ended.
		c.deleteMsg(ctx, q.stream, r.Seq)
		return nil
	}
}

func (c *Cluster) onCancel(m *nats.Msg) {
	var s CancelSignal
	if err := json.Unmarshal(m.Data, &s); err != nil {
		c.logf("cluster: bad cancel signal: %v", err)
		return
	}
	c.cfg.OnCancel(s)
}

// withTimeout is ctx without its cancellation (work that must finish once
// begun) but with a bound.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}
