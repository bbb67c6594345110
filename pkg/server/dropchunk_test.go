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
	next := make(chan func(), 1)
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
	// A worker arrives meanwhile: it gets none of them.
	w := dialNative(t, s)
	w.send(`{"cmd":"can_do","types":["t"],"concurrency":8}` + "\n" + `{"cmd":"ping"}`)
	w.expectCmd("pong") // not a "do": no job of a gone submitter was handed out
	go more()
	eventually(t, s, "the gone submitter's jobs dropped", func(st *loopState) bool {
		return st.jobs.store.Total() == 0 && len(st.jobs.leaving) == 0
	})
	if got := inLoop(t, s, func(st *loopState) int64 { return st.metrics().Counters.JobsCancelled }); got != n {
		t.Errorf("jobs cancelled: %d, want %d", got, n)
	}
}
