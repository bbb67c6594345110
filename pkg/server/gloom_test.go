package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/rundir"
)

// Tests wait on events with this deadline; nothing asserts a duration.
const testDeadline = 10 * time.Second

// ---- an in-process jsd ----

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startTestServer starts a jsd in a temp dir with a TCP port on loopback
// and runs it until the test ends.
func startTestServer(t testing.TB, mutate func(*Config)) *Server {
	t.Helper()
	logs := &lockedBuf{}
	cfg := Config{
		Paths:              rundir.For(t.TempDir()),
		Slots:              2,
		Host:               "127.0.0.1",
		PortRange:          [2]int{20000, 60000},
		TransformationType: "transformation",
		Version:            "test-1.2",
		Log:                logs,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return within 15s after the stop")
		}
		if t.Failed() {
			t.Logf("jsd log:\n%s", logs)
		}
	})
	return s
}

func (s *Server) testAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcp.port)) }

// inLoop runs fn in the loop and returns its answer.
func inLoop[T any](t testing.TB, s *Server, fn func(st *loopState) T) T {
	t.Helper()
	ch := make(chan T, 1)
	s.call(func(st *loopState) { ch <- fn(st) })
	select {
	case v := <-ch:
		return v
	case <-time.After(testDeadline):
		t.Fatal("the loop did not answer")
	}
	panic("unreachable")
}

// eventually waits until cond (run in the loop) holds.
func eventually(t testing.TB, s *Server, what string, cond func(st *loopState) bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !inLoop(t, s, cond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freePort returns a port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ---- a gloom peer written from gloom's wire shapes ----

type gloomPeer struct {
	t *testing.T
	c net.Conn
}

func dialGloom(t *testing.T, addr string) *gloomPeer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &gloomPeer{t: t, c: c}
}

func (g *gloomPeer) sendRaw(b []byte) {
	g.t.Helper()
	g.c.SetWriteDeadline(time.Now().Add(testDeadline))
	if _, err := g.c.Write(b); err != nil {
		g.t.Fatalf("write: %v", err)
	}
}

// send frames a JSON text as gloom's client does (4-byte big-endian length).
func (g *gloomPeer) send(js string) {
	g.t.Helper()
	g.sendRaw(append(binary.BigEndian.AppendUint32(nil, uint32(len(js))), js...))
}

func (g *gloomPeer) readFrame() ([]byte, error) {
	g.c.SetReadDeadline(time.Now().Add(testDeadline))
	var hdr [4]byte
	if _, err := io.ReadFull(g.c, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(g.c, b)
	return b, err
}

// expect reads one frame and compares the whole message with want.
func (g *gloomPeer) expect(want string) {
	g.t.Helper()
	b, err := g.readFrame()
	if err != nil {
		g.t.Fatalf("waiting for %s: %v", want, err)
	}
	if !sameJSON(b, []byte(want)) {
		g.t.Fatalf("got %s, want exactly %s", b, want)
	}
}

// expectError reads an error frame with that code and returns its reason.
func (g *gloomPeer) expectError(code string) any {
	g.t.Helper()
	b, err := g.readFrame()
	if err != nil {
		g.t.Fatalf("waiting for error %s: %v", code, err)
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || m["error"] != code || len(m) != 2 {
		g.t.Fatalf("got %s, want {\"error\":%q,\"reason\":...}", b, code)
	}
	return m["reason"]
}

// expectClosed: the next read meets the end of the stream.
func (g *gloomPeer) expectClosed() {
	g.t.Helper()
	b, err := g.readFrame()
	if err == nil {
		g.t.Fatalf("got %s, want the connection closed", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		g.t.Fatalf("connection still open after %v", testDeadline)
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func slaveJoin(t *testing.T, addr, typ string) *gloomPeer {
	t.Helper()
	g := dialGloom(t, addr)
	g.send(`{"action":"join","type":"` + typ + `"}`)
	g.expect(`{"ok":true}`)
	return g
}

// ---- tests ----

func TestGloomMasterAndSlave(t *testing.T) {
	s := startTestServer(t, nil)
	slave := slaveJoin(t, s.testAddr(), "foo")
	master := dialGloom(t, s.testAddr())

	master.send(`{"action":"submit","id":"J1","type":"foo","body":{"x":[1,"two"]},"priority":0}`)
	master.expect(`{"ok":true,"id":"J1"}`)
	slave.expect(`{"action":"job","id":"J1","type":"foo","body":{"x":[1,"two"]}}`)
	slave.send(`{"action":"respond","body":{"y":2}}`)
	slave.expect(`{"ok":true}`)
	master.expect(`{"id":"J1","body":{"y":2}}`)

	// No priority (gloom's default 0), a numeric id, a string body.
	master.send(`{"action":"submit","id":42,"type":"foo","body":"text"}`)
	master.expect(`{"ok":true,"id":42}`)
	slave.expect(`{"action":"job","id":42,"type":"foo","body":"text"}`)
	slave.send(`{"action":"respond","body":null}`)
	slave.expect(`{"ok":true}`)
	master.expect(`{"id":42,"body":null}`)

	// A done id may be reused.
	master.send(`{"action":"submit","id":"J1","type":"foo","body":1}`)
	master.expect(`{"ok":true,"id":"J1"}`)
	slave.expect(`{"action":"job","id":"J1","type":"foo","body":1}`)
}

func TestGloomPriorityOrder(t *testing.T) {
	s := startTestServer(t, nil)
	master := dialGloom(t, s.testAddr())
	for _, j := range []struct{ id, prio string }{{"a", "0"}, {"b", "5"}, {"c", "1"}, {"d", "0"}, {"e", "5"}, {"f", "-2"}} {
		master.send(`{"action":"submit","id":"` + j.id + `","type":"p","body":"` + j.id + `","priority":` + j.prio + `}`)
		master.expect(`{"ok":true,"id":"` + j.id + `"}`)
	}
	slave := slaveJoin(t, s.testAddr(), "p")
	for _, id := range []string{"b", "e", "c", "a", "d", "f"} {
		slave.expect(`{"action":"job","id":"` + id + `","type":"p","body":"` + id + `"}`)
		slave.send(`{"action":"respond","body":"r-` + id + `"}`)
		slave.expect(`{"ok":true}`)
		master.expect(`{"id":"` + id + `","body":"r-` + id + `"}`)
	}
}

func TestGloomRejoinSwitchesType(t *testing.T) {
	s := startTestServer(t, nil)
	slave := slaveJoin(t, s.testAddr(), "foo")
	slave.send(`{"action":"join","type":"bar"}`)
	slave.expect(`{"ok":true}`)
	master := dialGloom(t, s.testAddr())
	// The older foo job would come first if the slave still served foo.
	master.send(`{"action":"submit","id":"F","type":"foo","body":1}`)
	master.expect(`{"ok":true,"id":"F"}`)
	master.send(`{"action":"submit","id":"B","type":"bar","body":2}`)
	master.expect(`{"ok":true,"id":"B"}`)
	slave.expect(`{"action":"job","id":"B","type":"bar","body":2}`)
	slave.send(`{"action":"respond","body":"b"}`)
	slave.expect(`{"ok":true}`)
	master.expect(`{"id":"B","body":"b"}`)
	slave.send(`{"action":"join","type":"foo"}`)
	slave.expect(`{"ok":true}`)
	slave.expect(`{"action":"job","id":"F","type":"foo","body":1}`)
}

func TestGloomRespondWhileIdle(t *testing.T) {
	s := startTestServer(t, nil)
	slave := slaveJoin(t, s.testAddr(), "foo")
	slave.send(`{"action":"respond","body":{"some":"stuff"}}`)
	slave.expect(`{"error":"invalid_state","reason":"not_processing"}`)
	// The connection goes on.
	slave.send(`{"action":"join","type":"foo"}`)
	slave.expect(`{"ok":true}`)
}

func TestGloomOversizedLengthPrefix(t *testing.T) {
	mp, sp := freePort(t), freePort(t)
	s := startTestServer(t, func(c *Config) { c.GloomPorts = [2]int{mp, sp} })
	addrs := map[string]string{"shared": s.testAddr(), "master": "127.0.0.1:" + strconv.Itoa(mp), "slave": "127.0.0.1:" + strconv.Itoa(sp)}
	for name, addr := range addrs {
		for _, n := range []uint32{1 << 30, 1 << 31, 0xffffffff, 256<<20 + 1} {
			g := dialGloom(t, addr)
			g.sendRaw(binary.BigEndian.AppendUint32(nil, n))
			b, err := g.readFrame()
			if err != nil || !sameJSON(b, []byte(`{"error":"size_error","reason":"length too large"}`)) {
				t.Fatalf("%s port, length %d: got %s, %v", name, n, b, err)
			}
			g.expectClosed()
		}
	}
}

func TestGloomInvalidJSON(t *testing.T) {
	s := startTestServer(t, nil)
	for _, payload := range []string{"foo", "", `{"action":"submit",`} {
		g := dialGloom(t, s.testAddr())
		g.send(payload)
		if _, ok := g.expectError("invalid_json").(string); !ok {
			t.Fatalf("invalid_json for %q: the reason is not a string", payload)
		}
		g.expectClosed()
	}
	// Other connections are not affected.
	slaveJoin(t, s.testAddr(), "foo")
}

func TestGloomMalformedRequests(t *testing.T) {
	s := startTestServer(t, nil)
	m := dialGloom(t, s.testAddr())
	m.send(`{"foo":"bar"}`)
	m.expect(`{"error":"missing_field","reason":"action"}`)
	m.send(`[1,2]`)
	m.expectError("invalid_message")
	m.send(`{"action":"dance"}`)
	m.expect(`{"error":"unknown_action","reason":"dance"}`)
	m.send(`{"action":"submit","type":"t","body":1}`)
	m.expect(`{"error":"missing_field","reason":"id"}`)
	m.send(`{"action":"submit","id":"x","body":1}`)
	m.expect(`{"error":"missing_field","reason":"type"}`)
	m.send(`{"action":"submit","id":"x","type":"t"}`)
	m.expect(`{"error":"missing_field","reason":"body"}`)
	for _, p := range []string{`"high"`, `1.5`, `null`, `[1]`} {
		m.send(`{"action":"submit","id":"x","type":"t","body":1,"priority":` + p + `}`)
		m.expect(`{"error":"invalid_type","reason":"priority"}`)
	}
	// A live id: the error, never an ok first.
	m.send(`{"action":"submit","id":"dup","type":"t","body":1}`)
	m.expect(`{"ok":true,"id":"dup"}`)
	m.send(`{"action":"submit","id":"dup","type":"t","body":2}`)
	m.expect(`{"error":"id_exists","reason":"dup"}`)
	// The first dup still runs, once.
	slave := slaveJoin(t, s.testAddr(), "t")
	slave.expect(`{"action":"job","id":"dup","type":"t","body":1}`)
	slave.send(`{"action":"respond","body":"ok"}`)
	slave.expect(`{"ok":true}`)
	m.expect(`{"id":"dup","body":"ok"}`)

	sl := slaveJoin(t, s.testAddr(), "t")
	sl.send(`{"action":"join"}`)
	sl.expect(`{"error":"missing_field","reason":"job_type"}`)
	sl.send(`{"action":"respond"}`)
	sl.expect(`{"error":"invalid_state","reason":"not_processing"}`)
}

// The role follows the first action on the shared port, and is pinned on
// the --gloom-ports listeners.
func TestGloomRoles(t *testing.T) {
	mp, sp := freePort(t), freePort(t)
	s := startTestServer(t, func(c *Config) { c.GloomPorts = [2]int{mp, sp} })
	masterAddr, slaveAddr := "127.0.0.1:"+strconv.Itoa(mp), "127.0.0.1:"+strconv.Itoa(sp)

	m := dialGloom(t, masterAddr)
	m.send(`{"action":"join","type":"foo"}`)
	m.expect(`{"error":"invalid_action","reason":"not_a_slave"}`)
	m.send(`{"action":"respond","body":"bizzle"}`)
	m.expect(`{"error":"invalid_action","reason":"not_a_slave"}`)

	sl := dialGloom(t, slaveAddr)
	sl.send(`{"action":"submit","id":"mesage"}`)
	sl.expect(`{"error":"invalid_action","reason":"not_a_master"}`)
	sl.send(`{"action":"join","type":"foo"}`)
	sl.expect(`{"ok":true}`)

	m.send(`{"action":"submit","id":"P1","type":"foo","body":{"a":1},"priority":3}`)
	m.expect(`{"ok":true,"id":"P1"}`)
	sl.expect(`{"action":"job","id":"P1","type":"foo","body":{"a":1}}`)
	sl.send(`{"action":"respond","body":[1]}`)
	sl.expect(`{"ok":true}`)
	m.expect(`{"id":"P1","body":[1]}`)

	// Shared port: a slave cannot submit, a master cannot join.
	a := slaveJoin(t, s.testAddr(), "foo")
	a.send(`{"action":"submit","id":"z","type":"foo","body":1}`)
	a.expect(`{"error":"invalid_action","reason":"not_a_master"}`)
	b := dialGloom(t, s.testAddr())
	b.send(`{"action":"submit","id":"z","type":"other","body":1}`)
	b.expect(`{"ok":true,"id":"z"}`)
	b.send(`{"action":"join","type":"foo"}`)
	b.expect(`{"error":"invalid_action","reason":"not_a_slave"}`)
}

// A slave that dies mid-job sends it back one priority higher, at most 3
// times; then the master gets job_failed.
func TestGloomWorkerDeathRequeues(t *testing.T) {
	s := startTestServer(t, nil)
	master := dialGloom(t, s.testAddr())
	first := slaveJoin(t, s.testAddr(), "w")
	master.send(`{"action":"submit","id":"A","type":"w","body":"a","priority":0}`)
	master.expect(`{"ok":true,"id":"A"}`)
	first.expect(`{"action":"job","id":"A","type":"w","body":"a"}`)
	// B waits at priority 1: A, requeued at 0, would come after it.
	master.send(`{"action":"submit","id":"B","type":"w","body":"b","priority":1}`)
	master.expect(`{"ok":true,"id":"B"}`)
	first.c.Close()
	noWorkers := func(st *loopState) bool { return len(st.jobs.workers) == 0 }
	eventually(t, s, "jsd to see the slave gone", noWorkers)
	for attempt := 2; attempt <= 4; attempt++ {
		sl := slaveJoin(t, s.testAddr(), "w")
		sl.expect(`{"action":"job","id":"A","type":"w","body":"a"}`)
		prio := inLoop(t, s, func(st *loopState) int32 { return st.jobs.live["A"].Priority })
		if prio != int32(attempt-1) {
			t.Fatalf("attempt %d runs at priority %d, want %d", attempt, prio, attempt-1)
		}
		sl.c.Close()
		eventually(t, s, "jsd to see the slave gone", noWorkers)
	}
	master.expect(`{"error":"job_failed","reason":"A"}`)
	last := slaveJoin(t, s.testAddr(), "w")
	last.expect(`{"action":"job","id":"B","type":"w","body":"b"}`)
}

// A master that goes away: its queued jobs are removed, its running job's
// answer is dropped, and the worker is free again (gloom left it busy).
func TestGloomMasterDisconnect(t *testing.T) {
	s := startTestServer(t, nil)
	slave := slaveJoin(t, s.testAddr(), "m")
	master := dialGloom(t, s.testAddr())
	master.send(`{"action":"submit","id":"X","type":"m","body":1}`)
	master.expect(`{"ok":true,"id":"X"}`)
	master.send(`{"action":"submit","id":"Q","type":"m","body":2}`)
	master.expect(`{"ok":true,"id":"Q"}`)
	slave.expect(`{"action":"job","id":"X","type":"m","body":1}`)
	if n := inLoop(t, s, func(st *loopState) int { return st.clients }); n != 1 {
		t.Fatalf("%d clients with a master and a slave connected, want 1 (the master)", n)
	}
	master.c.Close()
	eventually(t, s, "the master's jobs to end", func(st *loopState) bool {
		x := st.jobs.live["X"]
		return x != nil && x.gone && st.jobs.live["Q"] == nil && st.clients == 0
	})
	slave.send(`{"action":"respond","body":"late"}`)
	slave.expect(`{"ok":true}`)

	other := dialGloom(t, s.testAddr())
	other.send(`{"action":"submit","id":"Y","type":"m","body":3}`)
	other.expect(`{"ok":true,"id":"Y"}`)
	slave.expect(`{"action":"job","id":"Y","type":"m","body":3}`)
	slave.send(`{"action":"respond","body":"y"}`)
	slave.expect(`{"ok":true}`)
	other.expect(`{"id":"Y","body":"y"}`)
	eventually(t, s, "no job left", func(st *loopState) bool { return len(st.jobs.live) == 0 })
}

func TestGloomNeedsAllowUnauthWithToken(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.AuthToken = "sekrit" })
	g := dialGloom(t, s.testAddr())
	g.send(`{"action":"join","type":"foo"}`)
	g.expectError("unauthorized")
	g.expectClosed()

	s2 := startTestServer(t, func(c *Config) { c.AuthToken = "sekrit"; c.AllowUnauth = map[string]bool{"gloom": true} })
	slaveJoin(t, s2.testAddr(), "foo")
}

// A gloom slave serves jobs from a native submitter too, and a gloom master
// hears of a failed native job as job_failed.
func TestGloomAcrossProtocols(t *testing.T) {
	s := startTestServer(t, nil)
	slave := slaveJoin(t, s.testAddr(), "x")
	nat := dialNative(t, s)
	nat.send(`{"cmd":"do","id":"n1","type":"x","arg":{"k":"v"},"priority":1}`)
	nat.expectCmd("queued")
	slave.expect(`{"action":"job","id":"n1","type":"x","body":{"k":"v"}}`)
	slave.send(`{"action":"respond","body":"res"}`)
	slave.expect(`{"ok":true}`)
	if m := nat.expectCmd("did"); string(m["res"]) != `"res"` {
		t.Fatalf("did: %v", m)
	}

	w := dialNative(t, s)
	w.send(`{"cmd":"can_do","types":["y"]}`)
	master := dialGloom(t, s.testAddr())
	master.send(`{"action":"submit","id":"g1","type":"y","body":[1]}`)
	master.expect(`{"ok":true,"id":"g1"}`)
	if m := w.expectCmd("do"); string(m["arg"]) != `[1]` {
		t.Fatalf("do: %v", m)
	}
	w.send(`{"cmd":"fail","id":"g1","error":"boom"}`)
	master.expect(`{"error":"job_failed","reason":"g1"}`)
}

// ---- a native JSON-line peer on the unix socket ----

type nativePeer struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialNative(t *testing.T, s *Server) *nativePeer {
	t.Helper()
	c, err := net.DialTimeout("unix", s.cfg.Paths.Socket, testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &nativePeer{t: t, c: c, r: bufio.NewReader(c)}
}

func (n *nativePeer) send(line string) {
	n.t.Helper()
	n.c.SetWriteDeadline(time.Now().Add(testDeadline))
	if _, err := io.WriteString(n.c, line+"\n"); err != nil {
		n.t.Fatal(err)
	}
}

func (n *nativePeer) read() map[string]json.RawMessage {
	n.t.Helper()
	n.c.SetReadDeadline(time.Now().Add(testDeadline))
	line, err := n.r.ReadBytes('\n')
	if err != nil {
		n.t.Fatalf("native read: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		n.t.Fatalf("native line %q: %v", line, err)
	}
	return m
}

func (n *nativePeer) expectCmd(cmd string) map[string]json.RawMessage {
	n.t.Helper()
	m := n.read()
	if string(m["cmd"]) != `"`+cmd+`"` {
		n.t.Fatalf("got %v, want cmd %s", m, cmd)
	}
	return m
}

// With --journal a submit's ok waits for the disk; the replies still come in
// the order of the requests, and a result after its ok.
func TestGloomRepliesInOrderWithJournal(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.Journal = filepath.Join(t.TempDir(), "jobs.db") })
	master := dialGloom(t, s.testAddr())
	var batch []byte
	for _, js := range []string{
		`{"action":"submit","id":"A","type":"j","body":1}`,
		`{"action":"submit","id":"A","type":"j","body":2}`,
		`{"foo":1}`,
		`{"action":"submit","id":"B","type":"j","body":3}`,
	} {
		batch = append(binary.BigEndian.AppendUint32(batch, uint32(len(js))), js...)
	}
	master.sendRaw(batch)
	// The replies in the order of the frames, each ok once its job is on
	// disk. (The slave joins after them: had it answered A first, the
	// second A could have been taken as a new job.)
	master.expect(`{"ok":true,"id":"A"}`)
	master.expect(`{"error":"id_exists","reason":"A"}`)
	master.expect(`{"error":"missing_field","reason":"action"}`)
	master.expect(`{"ok":true,"id":"B"}`)
	slave := slaveJoin(t, s.testAddr(), "j")
	slave.expect(`{"action":"job","id":"A","type":"j","body":1}`)
	slave.send(`{"action":"respond","body":"a"}`)
	slave.expect(`{"ok":true}`)
	slave.expect(`{"action":"job","id":"B","type":"j","body":3}`)
	slave.send(`{"action":"respond","body":"b"}`)
	slave.expect(`{"ok":true}`)
	// Results come after their own ok; A's may come before B's ok.
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		b, err := master.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case sameJSON(b, []byte(`{"id":"A","body":"a"}`)):
			got["A"] = true
		case sameJSON(b, []byte(`{"id":"B","body":"b"}`)):
			got["B"] = true
		default:
			t.Fatalf("got %s, want a result", b)
		}
	}
	if !got["A"] || !got["B"] {
		t.Fatalf("results %v", got)
	}
}

// A fatal error right behind a submit whose ok waits for the journal: the
// ok still goes out first, then the error, then the close.
func TestGloomFatalErrorBehindPendingAck(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.Journal = filepath.Join(t.TempDir(), "jobs.db") })
	m := dialGloom(t, s.testAddr())
	sub := `{"action":"submit","id":"K","type":"k","body":1}`
	batch := append(binary.BigEndian.AppendUint32(nil, uint32(len(sub))), sub...)
	batch = append(binary.BigEndian.AppendUint32(batch, 3), "foo"...)
	m.sendRaw(batch)
	m.expect(`{"ok":true,"id":"K"}`)
	m.expectError("invalid_json")
	m.expectClosed()
	// Its master gone, the job is gone too.
	eventually(t, s, "K to be dropped", func(st *loopState) bool { return st.jobs.live["K"] == nil && st.clients == 0 })
}
