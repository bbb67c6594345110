package server

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// inUnixLoop reports whether the connection holding lease id is still
// served by the unix socket's loop (not handed over).
func inUnixLoop(t *testing.T, s *Server, id uint64) bool {
	return inLoop(t, s, func(st *loopState) bool {
		for c := range st.open {
			if _, ok := c.leases[id]; ok {
				c.wmu.Lock()
				defer c.wmu.Unlock()
				return c.lite != nil && c.nc == nil
			}
		}
		t.Errorf("no connection holds lease %d", id)
		return false
	})
}

func leaseID(t *testing.T, m map[string]json.RawMessage) uint64 {
	t.Helper()
	var id uint64
	if err := json.Unmarshal(m["lease"], &id); err != nil {
		t.Fatalf("lease id in %v: %v", m, err)
	}
	return id
}

// A connection that only asks for slots stays in the loop; its first other
// message hands it over, with its lease, and the conversation goes on in
// order.
func TestUnixLoopHandsOverOnOtherMessages(t *testing.T) {
	s := startTestServer(t, nil)
	p := dialNative(t, s)
	p.send(`{"cmd":"acquire","slots":1,"pid":1,"command":"x"}`)
	id := leaseID(t, p.expectCmd("lease"))
	if !inUnixLoop(t, s, id) {
		t.Fatal("a connection that only acquired was handed over")
	}
	// An acquire, a status and a release in one write: the acquire is
	// answered in the loop, the rest after the hand-over, in order.
	p.send(`{"cmd":"acquire","slots":1,"pid":1,"command":"y"}` + "\n" + `{"cmd":"status"}` + "\n" + `{"cmd":"release","lease":` + string(mustJSON(id)) + `}`)
	id2 := leaseID(t, p.expectCmd("lease"))
	st := p.expectCmd("status")
	if !bytes.Contains(st["status"], []byte(`"in_use":2`)) {
		t.Errorf("status after two leases: %s", st["status"])
	}
	p.expectCmd("released")
	if inUnixLoop(t, s, id2) {
		t.Error("still in the loop after a status request")
	}
	// The lease taken in the loop lives on after the hand-over, and ends
	// with the connection.
	p.c.Close()
	eventually(t, s, "the lease given back", func(st *loopState) bool { return st.slots.leasedCount() == 0 })
}

// A line may come in pieces, and several lines in one piece. A second
// acquire hands the connection over: a client that keeps it for many
// leases has a reader goroutine of its own.
func TestUnixLoopSplitLinesAndSecondAcquire(t *testing.T) {
	s := startTestServer(t, nil)
	p := dialNative(t, s)
	msg := `{"cmd":"acquire","slots":1,"pid":1,"command":"split"}` + "\r\n"
	for i := 0; i < len(msg); i += 7 {
		before := s.uloop.reads.Load()
		p.c.Write([]byte(msg[i:min(i+7, len(msg))]))
		// Each piece is read before the next is written.
		for deadline := time.Now().Add(testDeadline); s.uloop.reads.Load() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the loop did not read piece %d", i/7)
			}
		}
	}
	id := leaseID(t, p.expectCmd("lease"))
	if !inUnixLoop(t, s, id) {
		t.Error("handed over for a line in pieces")
	}
	p.send(`{"cmd":"release","lease":` + string(mustJSON(id)) + "}\n\n" + `{"cmd":"acquire","slots":1}`)
	p.expectCmd("released")
	id2 := leaseID(t, p.expectCmd("lease"))
	if inUnixLoop(t, s, id2) {
		t.Error("still in the loop after a second acquire")
	}
}

// A last line without its newline is read at the end of input, as on any
// connection.
func TestUnixLoopLastLineAtEOF(t *testing.T) {
	s := startTestServer(t, nil)
	p := dialNative(t, s)
	p.c.Write([]byte(`{"cmd":"acquire","slots":1}`))
	p.c.(interface{ CloseWrite() error }).CloseWrite()
	p.expectCmd("lease")
	eventually(t, s, "the lease given back at the end", func(st *loopState) bool { return st.slots.leasedCount() == 0 })
}

// A peer that does not read its replies fills its socket: the loop keeps
// the rest and writes it when the peer reads, in order, without blocking
// anyone else.
func TestUnixLoopWritesWhenThePeerReads(t *testing.T) {
	s := startTestServer(t, nil)
	p := dialNative(t, s)
	const n = 20000 // ~2 MB of replies: more than a socket buffer holds
	var req strings.Builder
	for i := 0; i < n; i++ {
		req.WriteString(`{"cmd":"release","lease":999999,"req":` + string(mustJSON(i)) + "}\n")
	}
	go p.c.Write([]byte(req.String()))
	eventually(t, s, "the loop to wait for the socket", func(st *loopState) bool {
		for c := range st.open {
			c.wmu.Lock()
			armed := c.lite != nil && c.lite.out
			c.wmu.Unlock()
			if armed {
				return true
			}
		}
		return false
	})
	// Others are served meanwhile.
	q := dialNative(t, s)
	q.send(`{"cmd":"acquire","slots":1}`)
	q.expectCmd("lease")
	p.c.SetReadDeadline(time.Now().Add(testDeadline))
	for i := 0; i < n; i++ {
		m := p.read()
		if string(m["code"]) != `"not_found"` || string(m["req"]) != string(mustJSON(i)) {
			t.Fatalf("reply %d: %v", i, m)
		}
	}
}

// A stop closes the connections still in the loop; a waiter hears why.
func TestUnixLoopStop(t *testing.T) {
	s := startTestServer(t, nil)
	p := dialNative(t, s)
	p.send(`{"cmd":"acquire","slots":2}`)
	p.expectCmd("lease")
	w := dialNative(t, s)
	w.send(`{"cmd":"acquire","slots":1}`)
	eventually(t, s, "the waiter", func(st *loopState) bool { return len(st.slots.waiters) == 1 })
	ctl := dialNative(t, s)
	ctl.send(`{"cmd":"shutdown"}`)
	if m := w.expectCmd("error"); string(m["code"]) != `"stopping"` {
		t.Errorf("waiter at the stop: %v", m)
	}
	p.c.Close() // the last lease: jsd stops
	w.c.SetReadDeadline(time.Now().Add(testDeadline))
	if b, err := io.ReadAll(w.c); err != nil || len(b) != 0 {
		t.Errorf("after the error: %q, %v; want the end", b, err)
	}
}
