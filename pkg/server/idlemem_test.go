package server

import (
	"net"
	"runtime"
	"testing"
)

// An idle connection costs jsd little: no read buffer while it waits (a
// pooled one while it has input) and a goroutine stack that stays small.
// With 5,000 idle workers this was 15 KiB each (a 4 KiB buffer, an 8 KiB
// stack); now about 7 KiB (scripts/chaos --soak).
func TestIdleConnectionMemory(t *testing.T) {
	s := startTestServer(t, nil)
	const n = 500
	measure := func() (heap, stack uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// One connection first: the pools and the server's first-use state.
	open := func() {
		c, err := net.Dial("unix", s.cfg.Paths.Socket)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte(`{"cmd":"ping"}` + "\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		if _, err := c.Read(buf); err != nil { // the pong (one short line)
			t.Fatal(err)
		}
	}
	open()
	heap0, stack0 := measure()
	for i := 0; i < n; i++ {
		open()
	}
	heap1, stack1 := measure()
	perHeap := float64(int64(heap1)-int64(heap0)) / n
	perStack := float64(int64(stack1)-int64(stack0)) / n
	t.Logf("per idle connection (both ends in this process): heap %.0f B, stacks %.0f B", perHeap, perStack)
	// Both ends are counted: the client's net.Conn and jsd's conn, reader
	// and stack. Measured: heap 3.8 KiB and stacks 4 KiB; with a read buffer
	// held while idle and readLoop's batch array on its stack they were 7.3
	// and 8 KiB.
	if perHeap > 5.5*1024 {
		t.Errorf("heap per idle connection %.0f B: over 5.5 KiB (a read buffer held while idle?)", perHeap)
	}
	if perStack > 6*1024 && !raceEnabled { // the race detector's frames are bigger
		t.Errorf("stack per idle connection %.0f B: over 6 KiB (a big frame in readLoop?)", perStack)
	}
}
