package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/js-toolkit/js/pkg/queue"
)

func TestLevel(t *testing.T) {
	for p, want := range map[int]int{-1 << 31: 0, -5: 0, 0: 0, 3: 3, 9: 9, 10: 9, 1 << 30: 9} {
		if got := Level(p); got != want {
			t.Errorf("Level(%d) = %d, want %d", p, got, want)
		}
	}
}

func TestToken(t *testing.T) {
	seen := map[string]string{}
	for _, s := range []string{"thumb", "a-b_c", "_x", "a.b", "a b", "ä", "*", ">", "j1", "5", "-1", "x/y"} {
		tok := token(s)
		if prev, ok := seen[tok]; ok {
			t.Errorf("token(%q) = token(%q) = %q", s, prev, tok)
		}
		seen[tok] = s
		if strings.ContainsAny(tok, ".*> /\t") || tok == "" {
			t.Errorf("token(%q) = %q: not one subject token", s, tok)
		}
	}
}

func TestVersionCheck(t *testing.T) {
	for _, c := range []struct {
		v  string
		ok bool
	}{{"2.9.10", false}, {"2.10.22", false}, {"2.11.0", true}, {"2.11.0-RC.1", true}, {"2.15.2", true}, {"3.0.0", true}, {"", false}} {
		if got := versionAtLeast(c.v, MinServerVersion); got != c.ok {
			t.Errorf("versionAtLeast(%q) = %v", c.v, got)
		}
	}
	msg := (&VersionError{Server: "2.9.10", Min: MinServerVersion}).Error()
	if !strings.Contains(msg, "2.9.10 is too old") || !strings.Contains(msg, MinServerVersion) {
		t.Errorf("unclear refusal: %s", msg)
	}
}

// TestConnectSingleNode: an unclustered server gives R1 and the whole path
// works there too.
func TestConnectSingleNode(t *testing.T) {
	s := newSink()
	c := connect(t, shared1.urls(), "solo", func(c *Config) { c.OnResult = s.onResult })
	if c.Replicas() != 1 {
		t.Errorf("replicas %d on one server", c.Replicas())
	}
	id := submit(t, c, Job{Type: "solo", Arg: []byte(`{"a":1}`)})
	ds := fetch(t, c, "solo", 5)
	if len(ds) != 1 || ds[0].Job.ID != id || string(ds[0].Job.Arg) != `{"a":1}` || ds[0].Attempt != 1 {
		t.Fatalf("got %+v", ds)
	}
	if err := c.Complete(ctxT(t, 5*time.Second), ds[0], done(`"ok"`)); err != nil {
		t.Fatal(err)
	}
	if r := s.wait(t, id); r.Outcome.State != queue.Done || string(r.Outcome.Result) != `"ok"` {
		t.Errorf("outcome %+v", r)
	}
}

// TestPriorityThenFIFO: jobs of 10 levels submitted through two jsds on
// different nodes of a 3-node cluster, interleaved, come out of a third
// highest level first and in submission order within a level.
func TestPriorityThenFIFO(t *testing.T) {
	urls := shared3.urls()
	a := connect(t, urls[:1], "prio-a", nil)
	b := connect(t, urls[1:2], "prio-b", nil)
	w := connect(t, urls[2:], "prio-w", nil)
	if a.Replicas() != 3 {
		t.Errorf("replicas %d in a 3-node cluster", a.Replicas())
	}
	const per = 3
	var order []string // expected fetch order
	byLevel := make([][]string, Levels)
	n := 0
	for round := 0; round < per; round++ {
		for k := 0; k < Levels; k++ {
			p := (k*7 + round*3) % Levels // levels interleaved
			id := fmt.Sprintf("p%d-%d", p, n)
			via := a
			if n%2 == 1 {
				via = b
			}
			submit(t, via, Job{ID: id, Type: "prio", Priority: p})
			byLevel[p] = append(byLevel[p], id)
			n++
		}
	}
	// Out-of-range priorities share the end levels, FIFO with the others.
	submit(t, a, Job{ID: "p15", Type: "prio", Priority: 15})
	byLevel[9] = append(byLevel[9], "p15")
	submit(t, b, Job{ID: "p-4", Type: "prio", Priority: -4})
	byLevel[0] = append(byLevel[0], "p-4")
	for l := Levels - 1; l >= 0; l-- {
		order = append(order, byLevel[l]...)
	}
	var got []string
	for i, size := 0, 1; len(got) < len(order); i++ {
		ds := fetch(t, w, "prio", size)
		for _, d := range ds {
			got = append(got, d.Job.ID)
			if err := w.Complete(ctxT(t, 5*time.Second), d, done("null")); err != nil {
				t.Fatal(err)
			}
		}
		size = 1 + i%7 // single fetches and batches
	}
	if strings.Join(got, " ") != strings.Join(order, " ") {
		t.Errorf("order\n got  %v\n want %v", got, order)
	}
	noMsgs(t, w, "prio")
}

// TestUniqueIDs: two jsds on different nodes race to submit the same ids:
// each id is taken once. An ended id is free again; a detached job's id
// stays taken until its result is fetched.
func TestUniqueIDs(t *testing.T) {
	urls := shared3.urls()
	s := newSink()
	a := connect(t, urls[:1], "uniq-a", func(c *Config) { c.OnResult = s.onResult })
	b := connect(t, urls[1:2], "uniq-b", func(c *Config) { c.OnResult = s.onResult })
	const ids = 40
	pre := nuid.Next() + "-" // the cluster outlives one run (-count)
	u0 := pre + "u0"
	var won [2]atomic.Int32
	var wg sync.WaitGroup
	for k, c := range []*Cluster{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < ids; i++ {
				_, err := c.Submit(context.Background(), Job{ID: fmt.Sprintf("%su%d", pre, i), Type: "uniq"})
				switch {
				case err == nil:
					won[k].Add(1)
				case errors.Is(err, ErrIDExists):
				default:
					t.Errorf("submit: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if total := won[0].Load() + won[1].Load(); total != ids {
		t.Fatalf("%d submissions won for %d ids (a %d, b %d)", total, ids, won[0].Load(), won[1].Load())
	}
	if n := streamMsgs(t, a, "uniq"); n != ids {
		t.Errorf("%d messages for %d ids", n, ids)
	}
	// Drain; then the ids are free again.
	for seen := 0; seen < ids; {
		for _, d := range fetch(t, b, "uniq", 16) {
			if err := b.Complete(ctxT(t, 5*time.Second), d, done("1")); err != nil {
				t.Fatal(err)
			}
			seen++
		}
	}
	submit(t, b, Job{ID: u0, Type: "uniq", Detached: true})
	d := fetch(t, a, "uniq", 1)[0]
	if err := a.Complete(ctxT(t, 5*time.Second), d, done(`"kept"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Submit(ctxT(t, 5*time.Second), Job{ID: u0, Type: "uniq"}); !errors.Is(err, ErrIDExists) {
		t.Errorf("resubmit over an unfetched detached result: %v", err)
	}
	r, err := b.WaitResult(ctxT(t, 5*time.Second), u0)
	if err != nil || string(r.Outcome.Result) != `"kept"` {
		t.Fatalf("wait: %+v %v", r, err)
	}
	if _, err := b.WaitResult(ctxT(t, 5*time.Second), u0); !errors.Is(err, ErrNotFound) {
		t.Errorf("second wait: %v", err)
	}
	submit(t, a, Job{ID: u0, Type: "uniq"}) // fetched: free again
}

// TestNakRedeliversAtOnce: a job given back because its worker went away
// comes back at once (not after AckWait), before jobs queued after it;
// when its retries are spent, the Nak ends it as lost, once.
func TestNakRedeliversAtOnce(t *testing.T) {
	s := newSink()
	urls := shared3.urls()
	a := connect(t, urls[:1], "nak-a", func(c *Config) { c.OnResult = s.onResult })
	w := connect(t, urls[1:2], "nak-w", nil)
	w2 := connect(t, urls[2:], "nak-w2", nil)
	submit(t, a, Job{ID: "first", Type: "nak", Retries: 1})
	submit(t, a, Job{ID: "second", Type: "nak"})
	d := fetch(t, w, "nak", 1)[0]
	if d.Job.ID != "first" || d.Attempt != 1 {
		t.Fatalf("got %s attempt %d", d.Job.ID, d.Attempt)
	}
	// A fetch waiting on another jsd is woken by the Nak.
	got := make(chan *Delivery, 1)
	go func() {
		ds, err := w2.Fetch(ctxT(t, 10*time.Second), []string{"nak"}, 1)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		got <- ds[0]
	}()
	start := time.Now()
	if ok, err := d.Nak(ctxT(t, 5*time.Second)); !ok || err != nil {
		t.Fatalf("nak: %v %v", ok, err)
	}
	d2 := <-got
	if d2 == nil {
		t.FailNow()
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("redelivered after %s (AckWait is 30 s)", el)
	}
	if d2.Job.ID != "first" || d2.Attempt != 2 {
		t.Fatalf("after the nak: %s attempt %d", d2.Job.ID, d2.Attempt)
	}
	// Its retries are spent now: the next Nak ends it as lost.
	if ok, err := d2.Nak(ctxT(t, 5*time.Second)); ok || err != nil {
		t.Fatalf("last nak: requeued %v, %v", ok, err)
	}
	if r := s.wait(t, "first"); r.Outcome.State != queue.Lost || r.Attempts != 2 {
		t.Errorf("outcome %+v", r)
	}
	// The old attempt's Nak is refused.
	if _, err := d.Nak(ctxT(t, 5*time.Second)); !errors.Is(err, ErrStale) {
		t.Errorf("second nak of one delivery: %v", err)
	}
	d3 := fetch(t, w, "nak", 1)[0]
	if d3.Job.ID != "second" {
		t.Errorf("then %s", d3.Job.ID)
	}
	if err := w.Complete(ctxT(t, 5*time.Second), d3, done("2")); err != nil {
		t.Fatal(err)
	}
	s.wait(t, "second")
	if n := s.count("first"); n != 1 {
		t.Errorf("'first' reported %d times", n)
	}
	noMsgs(t, a, "nak")
}

// TestMaxDeliveriesLost: jobs whose jsd dies (deliveries time out) end as
// lost exactly once, with no message left: by the MAX_DELIVERIES advisory
// when the consumer's MaxDeliver runs out, and at the next fetch when the
// job's own Retries run out first. Two jsds watch the advisories.
func TestMaxDeliveriesLost(t *testing.T) {
	s := newSink()
	urls := shared3.urls()
	short := func(c *Config) { c.AckWait, c.MaxDeliver = 700*time.Millisecond, 2 }
	a := connect(t, urls[:1], "lost-a", func(c *Config) { short(c); c.OnResult = s.onResult })
	w := connect(t, urls[1:2], "lost-w", short)
	b := connect(t, urls[2:], "lost-b", short)
	_ = b                                                     // a second advisory watcher
	submit(t, a, Job{ID: "capped", Type: "lost", Retries: 5}) // the consumer's MaxDeliver (2) ends it
	submit(t, a, Job{ID: "own", Type: "lost", Retries: 0})    // its own retries end it
	attempts := map[string]int{}
	// The "dead jsd": fetch, never answer. Keep fetching so that pulls are
	// outstanding (the advisory fires on one).
	fctx, stop := context.WithCancel(context.Background())
	defer stop()
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		for fctx.Err() == nil {
			ds, err := w.Fetch(fctx, []string{"lost"}, 4)
			if err != nil {
				return
			}
			for _, d := range ds {
				attempts[d.Job.ID] = max(attempts[d.Job.ID], d.Attempt)
			}
		}
	}()
	for _, id := range []string{"capped", "own"} {
		r := s.wait(t, id)
		if r.Outcome.State != queue.Lost {
			t.Errorf("%s: %+v", id, r.Outcome)
		}
		t.Logf("%s: %s", id, r.Outcome.Error)
	}
	waitFor(t, "no message in the stream", func() bool { return streamMsgs(t, a, "lost") == 0 })
	time.Sleep(1500 * time.Millisecond) // two more AckWaits: nothing more may come
	stop()
	<-fetched
	if attempts["capped"] != 2 || attempts["own"] != 1 {
		t.Errorf("attempts %v", attempts)
	}
	for _, id := range []string{"capped", "own"} {
		if n := s.count(id); n != 1 {
			t.Errorf("%s reported %d times", id, n)
		}
		if idLive(t, a, id) {
			t.Errorf("%s still holds its id", id)
		}
	}
	noMsgs(t, a, "lost")
}

// TestZombieAck: a worker whose delivery timed out (its jsd stalled) and
// was handed out again cannot complete, Nak or extend the newer attempt.
func TestZombieAck(t *testing.T) {
	s := newSink()
	urls := shared3.urls()
	short := func(c *Config) { c.AckWait = 700 * time.Millisecond }
	a := connect(t, urls[:1], "zombie-a", func(c *Config) { short(c); c.OnResult = s.onResult })
	z := connect(t, urls[1:2], "zombie-z", short)
	w := connect(t, urls[2:], "zombie-w", short)
	id := submit(t, a, Job{Type: "zombie", Retries: 3})
	old := fetch(t, z, "zombie", 1)[0]
	cur := fetch(t, w, "zombie", 1)[0] // after AckWait
	if cur.Job.ID != id || cur.Attempt != 2 || old.Attempt != 1 {
		t.Fatalf("attempts %d then %d", old.Attempt, cur.Attempt)
	}
	if err := cur.InProgress(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := z.Complete(ctxT(t, 5*time.Second), old, done(`"zombie"`)); !errors.Is(err, ErrStale) {
		t.Fatalf("zombie complete: %v", err)
	}
	if err := old.InProgress(ctxT(t, 5*time.Second)); !errors.Is(err, ErrStale) {
		t.Errorf("zombie heartbeat: %v", err)
	}
	if n := streamMsgs(t, a, "zombie"); n != 1 {
		t.Errorf("the zombie's answer touched the message: %d left", n)
	}
	if n := s.count(id); n != 0 {
		t.Fatalf("the zombie's answer was delivered")
	}
	if err := cur.InProgress(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := w.Complete(ctxT(t, 5*time.Second), cur, done(`"current"`)); err != nil {
		t.Fatal(err)
	}
	r := s.wait(t, id)
	if string(r.Outcome.Result) != `"current"` || r.Attempts != 2 || r.Host != "zombie-w" {
		t.Errorf("outcome %+v", r)
	}
	noMsgs(t, a, "zombie")
}

// TestResultRouting: an outcome goes to its origin jsd wherever the worker
// was; when the origin does not answer it is kept in the results bucket
// for Results(origin) (and WaitResult by id), once.
func TestResultRouting(t *testing.T) {
	s := newSink()
	urls := shared3.urls()
	a := connect(t, urls[:1], "route-a", func(c *Config) { c.OnResult = s.onResult })
	w := connect(t, urls[2:], "route-w", nil)
	id := submit(t, a, Job{Type: "route", Meta: "gloom"})
	d := fetch(t, w, "route", 1)[0]
	if d.Job.Origin != "route-a" || d.Job.Meta != "gloom" {
		t.Errorf("delivery %+v", d.Job)
	}
	exit := 3
	if err := w.Complete(ctxT(t, 5*time.Second), d, Outcome{State: queue.Failed, Error: "boom", Exit: &exit}); err != nil {
		t.Fatal(err)
	}
	r := s.wait(t, id)
	if r.Outcome.State != queue.Failed || r.Outcome.Error != "boom" || *r.Outcome.Exit != 3 || r.Meta != "gloom" {
		t.Errorf("routed %+v", r)
	}
	if got, _ := a.Results(ctxT(t, 5*time.Second), "route-a"); len(got) != 0 {
		t.Errorf("answered outcome also kept: %+v", got)
	}
	// An origin that is gone (no jsd serves its name).
	gone := []string{submit(t, w, Job{Type: "route", Origin: "route-gone"}),
		submit(t, w, Job{Type: "route", Origin: "route-gone"})}
	for _, d := range fetch(t, w, "route", 2) {
		if err := w.Complete(ctxT(t, 5*time.Second), d, done(`"`+d.Job.ID+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	// One by id, the other by origin.
	r, err := a.WaitResult(ctxT(t, 5*time.Second), gone[0])
	if err != nil || string(r.Outcome.Result) != `"`+gone[0]+`"` {
		t.Fatalf("wait kept: %+v %v", r, err)
	}
	got, err := a.Results(ctxT(t, 5*time.Second), "route-gone")
	if err != nil || len(got) != 1 || got[0].ID != gone[1] {
		keys, kerr := a.resultKeys(ctxT(t, 5*time.Second), "*.*")
		t.Fatalf("results: %+v %v (gone %v; kept keys now %v %v)", got, err, gone, keys, kerr)
	}
	if got, _ := a.Results(ctxT(t, 5*time.Second), "route-gone"); len(got) != 0 {
		t.Errorf("taken twice: %+v", got)
	}
	if n := s.count(gone[0]) + s.count(gone[1]); n != 0 {
		t.Errorf("another origin's outcomes reached route-a")
	}
}

// TestCancelQueued: a queued job cancelled from another jsd is gone from
// its stream, its id is free, it is never handed out, and its origin gets
// the cancelled outcome once.
func TestCancelQueued(t *testing.T) {
	s := newSink()
	urls := shared3.urls()
	a := connect(t, urls[:1], "cq-a", func(c *Config) { c.OnResult = s.onResult })
	x := connect(t, urls[1:2], "cq-x", nil)
	submit(t, a, Job{ID: "cq1", Type: "cq"})
	submit(t, a, Job{ID: "cq2", Type: "cq"})
	if err := x.Cancel(ctxT(t, 5*time.Second), "cq1", ""); err != nil {
		t.Fatal(err)
	}
	if r := s.wait(t, "cq1"); r.Outcome.State != queue.Cancelled {
		t.Errorf("outcome %+v", r)
	}
	if n := streamMsgs(t, a, "cq"); n != 1 {
		t.Errorf("%d messages, want cq2's only", n)
	}
	if err := x.Cancel(ctxT(t, 5*time.Second), "cq1", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel again: %v", err)
	}
	ds := fetch(t, x, "cq", 5)
	if len(ds) != 1 || ds[0].Job.ID != "cq2" {
		t.Fatalf("fetched %d, first %s", len(ds), ds[0].Job.ID)
	}
	if err := x.Complete(ctxT(t, 5*time.Second), ds[0], done("0")); err != nil {
		t.Fatal(err)
	}
	submit(t, a, Job{ID: "cq1", Type: "cq"}) // the id is free
	if err := a.Cancel(ctxT(t, 5*time.Second), "cq1", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two cancelled outcomes", func() bool { return s.count("cq1") == 2 })
	noMsgs(t, a, "cq")
}

// TestCancelRunning: cancelling a running job from another jsd signals the
// jsd whose worker runs it, reports cancelled to the origin, removes the
// message; the worker's late answer is refused.
func TestCancelRunning(t *testing.T) {
	s := newSink()
	signals := make(chan CancelSignal, 4)
	urls := shared3.urls()
	a := connect(t, urls[:1], "cr-a", func(c *Config) { c.OnResult = s.onResult })
	w := connect(t, urls[1:2], "cr-w", func(c *Config) { c.OnCancel = func(s CancelSignal) { signals <- s } })
	x := connect(t, urls[2:], "cr-x", nil)
	id := submit(t, a, Job{Type: "cr", Detached: false})
	d := fetch(t, w, "cr", 1)[0]
	if err := x.Cancel(ctxT(t, 5*time.Second), id, "KILL"); err != nil {
		t.Fatal(err)
	}
	select {
	case sig := <-signals:
		if sig.ID != id || sig.Fence != d.Fence || sig.Signal != "KILL" {
			t.Errorf("signal %+v for delivery fence %d", sig, d.Fence)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cancel signal")
	}
	if r := s.wait(t, id); r.Outcome.State != queue.Cancelled {
		t.Errorf("outcome %+v", r)
	}
	if err := d.InProgress(ctxT(t, 5*time.Second)); !errors.Is(err, ErrStale) {
		t.Errorf("heartbeat after cancel: %v", err)
	}
	if err := w.Complete(ctxT(t, 5*time.Second), d, done(`"late"`)); !errors.Is(err, ErrStale) {
		t.Errorf("late answer: %v", err)
	}
	if err := x.Cancel(ctxT(t, 5*time.Second), id, ""); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrEnded) {
		t.Errorf("cancel again: %v", err)
	}
	noMsgs(t, a, "cr")
	time.Sleep(200 * time.Millisecond)
	if n := s.count(id); n != 1 {
		t.Errorf("reported %d times", n)
	}
}

// TestRelease: a job fetched for a worker that never got it goes back
// without using up an attempt (a job with no retries still runs).
func TestRelease(t *testing.T) {
	s := newSink()
	a := connect(t, shared3.urls()[:1], "rel-a", func(c *Config) { c.OnResult = s.onResult })
	id := submit(t, a, Job{Type: "rel", Retries: 0})
	d := fetch(t, a, "rel", 1)[0]
	if err := d.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	d2 := fetch(t, a, "rel", 1)[0]
	if d2.Job.ID != id || d2.Attempt != 1 {
		t.Fatalf("after release: %s attempt %d", d2.Job.ID, d2.Attempt)
	}
	if err := a.Complete(ctxT(t, 5*time.Second), d, done("1")); !errors.Is(err, ErrStale) {
		t.Errorf("released delivery completed: %v", err)
	}
	if err := a.Complete(ctxT(t, 5*time.Second), d2, done("2")); err != nil {
		t.Fatal(err)
	}
	if r := s.wait(t, id); r.Outcome.State != queue.Done || string(r.Outcome.Result) != "2" {
		t.Errorf("outcome %+v", r)
	}
	noMsgs(t, a, "rel")
}

// TestWaitDetached: WaitResult started while a detached job is queued
// returns its outcome when it ends, from another jsd, and fetches it.
func TestWaitDetached(t *testing.T) {
	urls := shared3.urls()
	a := connect(t, urls[:1], "wd-a", nil)
	w := connect(t, urls[1:2], "wd-w", nil)
	id := submit(t, a, Job{Type: "wd", Detached: true, Arg: []byte(`[1,2]`)})
	got := make(chan Result, 1)
	go func() {
		r, err := a.WaitResult(ctxT(t, 10*time.Second), id)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	d := fetch(t, w, "wd", 1)[0]
	time.Sleep(100 * time.Millisecond) // the wait is watching a running job
	if err := w.Complete(ctxT(t, 5*time.Second), d, done(`"detached"`)); err != nil {
		t.Fatal(err)
	}
	if r := <-got; string(r.Outcome.Result) != `"detached"` || !r.Detached {
		t.Errorf("waited %+v", r)
	}
	waitFor(t, "the id freed by the fetch", func() bool { return !idLive(t, a, id) })
}

// TestWaitDetachedOnce: waits for one detached job on three jsds, each
// connected to another node (their watches served by different replicas):
// exactly one gets the outcome, the others ErrNotFound, and the id is free
// at once (the fetch is confirmed at the stream's leader, never lost to a
// replica that showed the outcome before the leader applied it). Repeated,
// since the race is a matter of milliseconds.
func TestWaitDetachedOnce(t *testing.T) {
	urls := shared3.urls()
	var cs []*Cluster
	watching := make(chan string, 3)
	for i := range urls {
		cs = append(cs, connect(t, urls[i:i+1], fmt.Sprintf("wo-%d", i), nil))
		cs[i].watching = func(id string) { watching <- id }
	}
	for round := 0; round < 20; round++ {
		id := submit(t, cs[0], Job{Type: "wo", Detached: true})
		type got struct {
			r   Result
			err error
		}
		ch := make(chan got, len(cs))
		for _, c := range cs {
			go func() {
				r, err := c.WaitResult(ctxT(t, 10*time.Second), id)
				ch <- got{r, err}
			}()
		}
		d := fetch(t, cs[round%len(cs)], "wo", 1)[0]
		for range cs { // every wait is watching before the outcome comes
			select {
			case got := <-watching:
				if got != id {
					t.Fatalf("round %d: a wait of %s is watching, want %s", round, got, id)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: the waits did not start watching", round)
			}
		}
		if err := cs[round%len(cs)].Complete(ctxT(t, 5*time.Second), d, done(`"once"`)); err != nil {
			t.Fatal(err)
		}
		outcomes := 0
		for range cs {
			g := <-ch
			switch {
			case g.err == nil && string(g.r.Outcome.Result) == `"once"`:
				outcomes++
			case errors.Is(g.err, ErrNotFound):
			default:
				t.Errorf("round %d: wait: %+v %v", round, g.r, g.err)
			}
		}
		if outcomes != 1 {
			t.Errorf("round %d: %d waits got the detached outcome, want 1", round, outcomes)
		}
		if idLive(t, cs[0], id) {
			t.Errorf("round %d: id %s still taken after its result was fetched", round, id)
		}
	}
}

// TestEmbeddedToken: an embedded node off loopback needs a token; with one,
// a jsd without it is refused and one with it joins.
func TestEmbeddedToken(t *testing.T) {
	if _, err := StartNode(NodeConfig{Host: "0.0.0.0", StoreDir: t.TempDir()}); err == nil {
		t.Fatal("a node off loopback started without a token")
	}
	n, err := StartNode(NodeConfig{Name: "tok", StoreDir: t.TempDir(), Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown) // after the jsds' Close (cleanups run last first)
	ctx := ctxT(t, 10*time.Second)
	if c, err := Connect(ctx, Config{URLs: []string{n.ClientURL()}, Name: "tok-no"}); err == nil {
		c.Close()
		t.Fatal("connected without the token")
	}
	c := connect(t, []string{n.ClientURL()}, "tok-yes", func(c *Config) { c.Token = "s3cret" })
	if v := c.ServerVersion(); !versionAtLeast(v, MinServerVersion) {
		t.Errorf("server %s", v)
	}
}
