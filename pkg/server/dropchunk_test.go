package server

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// A submitter that disconnects with many jobs queued has them dropped a
// chunk per hold of the lock; meanwhile none of them is handed to a worker
// (fill drops them too), and each ends cancelled.
func TestGoneSubmittersJobsDroppedInChunks(t *testing.T) {
	defer func(n int, f func(func())) { dropChunk, dropLater = n, f }(dropChunk, dropLater)
	dropChunk = 50
	next := make(chan func(), 4) // dropStored's and fill's continuations
	dropLater = func(f func()) { next <- f }
	s := startTestServer(t, nil)
	sub := dialNative(t, s)
	const n = 2000
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(`{"cmd":"do","type":"t","id":"d` + strconv.Itoa(i) + `","arg":1}` + "\n")
	}
	b.WriteString(`{"cmd":"ping"}`)
	sub.send(b.String())
	sub.expectCmd("pong")
	sub.c.Close()
	// The first chunk is dropped; the rest wait for the next.
	var more func()
	select {
	case more = <-next:
	case <-time.After(testDeadline):
		t.Fatal("the drop did not go on in chunks")
	}
	if left := inLoop(t, s, func(st *loopState) int { return st.jobs.store.Total() }); left != n-50 {
		t.Errorf("after the first chunk %d jobs are queued, want %d", left, n-50)
	}
	// A worker arrives meanwhile: it gets none of them, and fill drops no
	// more than a chunk of them under this hold of the lock either.
	w := dialNative(t, s)
	w.send(`{"cmd":"can_do","types":["t"],"concurrency":8}` + "\n" + `{"cmd":"ping"}`)
	w.expectCmd("pong") // not a "do": no job of a gone submitter was handed out
	if left := inLoop(t, s, func(st *loopState) int { return st.jobs.store.Total() }); left != n-100 {
		t.Errorf("after the worker's fill %d jobs are queued, want %d (one chunk more)", left, n-100)
	}
	// Let every held-back continuation run (dropStored's and fill's).
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			more()
			select {
			case more = <-next:
			case <-done:
				return
			}
		}
	}()
	eventually(t, s, "the gone submitter's jobs dropped", func(st *loopState) bool {
		return st.jobs.store.Total() == 0 && len(st.jobs.leaving) == 0
	})
	if got := inLoop(t, s, func(st *loopState) int64 { return st.metrics().Counters.JobsCancelled }); got != n {
		t.Errorf("jobs cancelled: %d, want %d", got, n)
	}
	// The worker was left waiting for work, not forgotten: a new job reaches it.
	sub2 := dialNative(t, s)
	sub2.send(`{"cmd":"do","type":"t","id":"after","arg":1}`)
	w.expectCmd("do")
}
