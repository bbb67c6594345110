package server

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/metrics"
	"github.com/js-toolkit/js/pkg/queue"
	"github.com/js-toolkit/js/pkg/wire"
)

// recPeer records what the scheduler sends it.
type recPeer struct {
	jobs []string // ids of the jobs it was given
	outs []string // "id state" of the outcomes it was sent
}

func (p *recPeer) sendJob(j *job)          { p.jobs = append(p.jobs, j.ID) }
func (p *recPeer) sendCancel(*job, string) {}
func (p *recPeer) sendOutcome(j *job, _ json.RawMessage) {
	p.outs = append(p.outs, j.ID+" "+j.out.state.String())
}

func newJobState() *jobState {
	js := &jobState{hist: metrics.Set{}}
	js.init(0, time.Hour, 1000)
	return js
}

func submitJob(t *testing.T, js *jobState, p peer, id string, prio int) *job {
	t.Helper()
	var raw json.RawMessage
	if id != "" {
		raw = json.RawMessage(`"` + id + `"`)
	}
	j, code, msg := js.submit(p, submission{id: raw, typ: "t", priority: prio, retries: 1, arg: json.RawMessage(`"arg-` + id + `"`), proto: protoNative})
	if j == nil {
		t.Fatalf("submit %s: %s %s", id, code, msg)
	}
	js.accept(j, nil, nil)
	js.enqueue(j)
	return j
}

// Queued jobs kept by the store alone (no records) and with their records
// (someone waits for one) keep one order, one id space, cancel and wait.
func TestStoreKeepsQueuedJobs(t *testing.T) {
	js := newJobState()
	sub, waiter := &recPeer{}, &recPeer{}
	for i, prio := range []int{0, 5, 0, 5, 9, -1} {
		submitJob(t, js, sub, fmt.Sprint("q", i), prio)
	}
	if len(js.live) != 0 || len(js.owned) != 0 || js.store.Total() != 6 || js.liveCount() != 6 || !js.owns(sub) {
		t.Fatalf("live %d, owned %d, stored %d: want every queued job in the store alone", len(js.live), len(js.owned), js.store.Total())
	}
	if _, code, _ := js.submit(sub, submission{id: json.RawMessage(`"q2"`), typ: "t"}); code != wire.CodeIDExists {
		t.Fatalf("a queued job's id was accepted again: %q", code)
	}
	if code, msg := js.wait(waiter, "q3", nil, nil); code != "" {
		t.Fatal(code, msg)
	}
	if j := js.live["q3"]; j == nil || j.Ref == 0 || j.waiters == nil {
		t.Fatal("a waited-for queued job has no record")
	}
	if code, msg := js.cancel("q1", "TERM", nil, nil); code != "" {
		t.Fatal(code, msg)
	}
	if code, _ := js.cancel("q1", "TERM", nil, nil); code != wire.CodeEnded {
		t.Fatalf("cancel twice: %q", code)
	}
	if got := fmt.Sprint(sub.outs); got != "[q1 cancelled]" {
		t.Fatalf("submitter got %s", got)
	}
	if n := len(js.list("", "queued")); n != 5 {
		t.Fatalf("%d jobs listed queued, want 5", n)
	}
	w := &recPeer{}
	js.register(w, []string{"t"}, 100, true, protoNative, "", 0)
	if got := fmt.Sprint(w.jobs); got != "[q4 q3 q0 q2 q5]" {
		t.Fatalf("worker got %s, want priority then arrival", got)
	}
	if js.store.Total() != 0 || len(js.qhot) != 0 || len(js.ownerIDs) != 0 || js.owned[sub] == nil || js.liveCount() != 5 {
		t.Fatal("running jobs: store or records wrong")
	}
	for _, id := range w.jobs {
		js.result(w, id, &outcome{state: queue.Done})
	}
	if got := fmt.Sprint(waiter.outs); got != "[q3 done]" {
		t.Fatalf("waiter got %s", got)
	}
	if js.owns(sub) || js.busy() || js.liveCount() != 0 {
		t.Fatal("jobs left")
	}
}

// A submitter that disconnects: its queued jobs go, another's stay; a
// requeued job keeps its place and its record.
func TestStoreDropPeer(t *testing.T) {
	js := newJobState()
	a, b := &recPeer{}, &recPeer{}
	for i := range 1000 {
		submitJob(t, js, a, fmt.Sprint("a", i), i%3)
		submitJob(t, js, b, fmt.Sprint("b", i), i%3)
	}
	js.dropPeer(a)
	if js.store.Total() != 1000 || js.owns(a) || !js.owns(b) || len(a.outs) != 0 || js.c.JobsCancelled != 1000 {
		t.Fatalf("after the drop: %d queued, %d outcomes sent", js.store.Total(), len(a.outs))
	}
	w := &recPeer{}
	js.register(w, []string{"t"}, 1, false, protoNative, "", 0)
	if len(w.jobs) != 1 || w.jobs[0] != "b2" {
		t.Fatalf("worker got %v, want b2", w.jobs)
	}
	js.dropPeer(w) // its job is queued again, at its place
	if j := js.live["b2"]; j == nil || j.Ref == 0 || j.Attempts != 1 {
		t.Fatal("requeued job has no record")
	}
	w2 := &recPeer{}
	js.register(w2, []string{"t"}, 2, false, protoNative, "", 0)
	if got := fmt.Sprint(w2.jobs); got != "[b2 b5]" {
		t.Fatalf("worker got %s", got)
	}
	js.abandon("stop")
	if js.busy() || len(b.outs) != 1000 {
		t.Fatalf("abandon: busy %v, %d outcomes", js.busy(), len(b.outs))
	}
}

// With --journal a queued job keeps its record until its acknowledgement is
// out, then the store keeps it alone; cancel and the queue's order still work.
func TestStoreWithJournal(t *testing.T) {
	db := filepath.Join(t.TempDir(), "jobs.db")
	s := startTestServer(t, func(c *Config) { c.Journal = db })
	c := dialNative(t, s)
	for i := range 5 {
		c.send(fmt.Sprintf(`{"cmd":"do","req":%d,"id":"k%d","type":"jt","arg":%d,"priority":%d}`, i, i, i, i%2))
		c.expectCmd("queued")
	}
	eventually(t, s, "the store to keep the jobs alone", func(st *loopState) bool {
		return len(st.jobs.qhot) == 0 && len(st.jobs.live) == 0 && st.jobs.store.Total() == 5
	})
	c.send(`{"cmd":"cancel","req":9,"id":"k1"}`)
	c.expectCmd("ok")
	c.expectCmd("cancelled")
	w := dialNative(t, s)
	w.send(`{"cmd":"can_do","types":["jt"],"concurrency":10}`)
	var got []string
	for range 4 {
		m := w.expectCmd("do")
		got = append(got, string(m["id"]))
	}
	if fmt.Sprint(got) != `["k3" "k0" "k2" "k4"]` {
		t.Fatalf("worker got %s", got)
	}
}
