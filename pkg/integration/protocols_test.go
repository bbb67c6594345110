package integration

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of the seeds' protocols against the real jsd: a gloom
// master and slave written only from gloom's wire shapes (whole-message
// comparison, as gloom's own client and tests do), HTTP and seamless'
// /run-transformation (GET with a body, as seamless-remote sends it), and a
// launcher's status-file handshake.

const protoDeadline = 10 * time.Second

// ---- gloom, from its shapes ----

type gloomClient struct {
	t *testing.T
	c net.Conn
}

func dialGloomAt(t *testing.T, port int) *gloomClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), protoDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &gloomClient{t: t, c: c}
}

func (g *gloomClient) writeRaw(b []byte) {
	g.t.Helper()
	g.c.SetWriteDeadline(time.Now().Add(protoDeadline))
	if _, err := g.c.Write(b); err != nil {
		g.t.Fatal(err)
	}
}

// send is gloom's client: struct.pack("!i", len(data)) + data.
func (g *gloomClient) send(js string) {
	g.t.Helper()
	g.writeRaw(append(binary.BigEndian.AppendUint32(nil, uint32(len(js))), js...))
}

func (g *gloomClient) recv() ([]byte, error) {
	g.c.SetReadDeadline(time.Now().Add(protoDeadline))
	var hdr [4]byte
	if _, err := io.ReadFull(g.c, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(g.c, b)
	return b, err
}

// expect compares the whole next message with want.
func (g *gloomClient) expect(want string) {
	g.t.Helper()
	b, err := g.recv()
	if err != nil {
		g.t.Fatalf("waiting for %s: %v", want, err)
	}
	var x, y any
	if json.Unmarshal(b, &x) != nil || json.Unmarshal([]byte(want), &y) != nil || !reflect.DeepEqual(x, y) {
		g.t.Fatalf("got %s, want exactly %s", b, want)
	}
}

func (g *gloomClient) expectErrorCode(code string) {
	g.t.Helper()
	b, err := g.recv()
	if err != nil {
		g.t.Fatalf("waiting for error %s: %v", code, err)
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || m["error"] != code || m["reason"] == nil {
		g.t.Fatalf("got %s, want {\"error\":%q,\"reason\":...}", b, code)
	}
}

func (g *gloomClient) expectClosed() {
	g.t.Helper()
	b, err := g.recv()
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		g.t.Fatalf("connection not closed: %s %v", b, err)
	}
}

// freeTCPPort is a loopback port nothing listens on now.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestProtocolGloomPinnedPorts(t *testing.T) {
	forBackends(t, func(t *testing.T, start starter) {
		mp, sp := freeTCPPort(t), freeTCPPort(t)
		d := start(t, "--slots", "2", "--gloom-ports", fmt.Sprintf("%d,%d", mp, sp), "--port-range", "20000", "60000")
		shared := d.status().Port

		slave := dialGloomAt(t, sp)
		slave.send(`{"action":"join","type":"foo"}`)
		slave.expect(`{"ok":true}`)
		master := dialGloomAt(t, mp)
		master.send(`{"action":"submit","id":"J1","type":"foo","body":{"something":"here"},"priority":2}`)
		master.expect(`{"ok":true,"id":"J1"}`)
		slave.expect(`{"action":"job","id":"J1","type":"foo","body":{"something":"here"}}`)
		slave.send(`{"action":"respond","body":{"answer":42}}`)
		slave.expect(`{"ok":true}`)
		master.expect(`{"id":"J1","body":{"answer":42}}`)

		// Each port is pinned to its role, as gloom's.
		master.send(`{"action":"join","type":"foo"}`)
		master.expect(`{"error":"invalid_action","reason":"not_a_slave"}`)
		master.send(`{"action":"respond","body":"bizzle"}`)
		master.expect(`{"error":"invalid_action","reason":"not_a_slave"}`)
		slave.send(`{"action":"submit","id":"mesage"}`)
		slave.expect(`{"error":"invalid_action","reason":"not_a_master"}`)
		slave.send(`{"action":"respond","body":{"some":"stuff"}}`)
		slave.expect(`{"error":"invalid_state","reason":"not_processing"}`)

		// gloom's own header test (2^30), and 2^31, on every port.
		for _, port := range []int{mp, sp, shared} {
			for _, n := range []uint32{1 << 30, 1 << 31} {
				g := dialGloomAt(t, port)
				g.writeRaw(binary.BigEndian.AppendUint32(nil, n))
				g.expect(`{"error":"size_error","reason":"length too large"}`)
				g.expectClosed()
			}
			g := dialGloomAt(t, port)
			g.send("foo")
			g.expectErrorCode("invalid_json")
			g.expectClosed()
		}

		// On the shared port the first action decides the role.
		s := dialGloomAt(t, shared)
		s.send(`{"action":"join","type":"bar"}`)
		s.expect(`{"ok":true}`)
		s.send(`{"action":"submit","id":"x","type":"bar","body":1}`)
		s.expect(`{"error":"invalid_action","reason":"not_a_master"}`)
		m := dialGloomAt(t, shared)
		m.send(`{"action":"submit","id":"S1","type":"bar","body":[1,2]}`)
		m.expect(`{"ok":true,"id":"S1"}`)
		s.expect(`{"action":"job","id":"S1","type":"bar","body":[1,2]}`)
		s.send(`{"action":"respond","body":"done"}`)
		s.expect(`{"ok":true}`)
		m.expect(`{"id":"S1","body":"done"}`)
	})
}

// A slave dies mid-job: the job goes back one priority higher (it passes a
// job queued at priority 1), at most 3 times, then the master gets
// job_failed. A master that goes away leaves no worker busy.
func TestProtocolGloomRetriesAndDisconnects(t *testing.T) {
	d := startJSD(t, "--slots", "2", "--port-range", "20000", "60000")
	port := d.status().Port
	workers := func() (n, busy int) {
		doc := d.status()
		for _, w := range doc.Workers {
			busy += w.Busy
		}
		return len(doc.Workers), busy
	}
	noWorkers := func() bool { n, _ := workers(); return n == 0 }

	master := dialGloomAt(t, port)
	first := dialGloomAt(t, port)
	first.send(`{"action":"join","type":"w"}`)
	first.expect(`{"ok":true}`)
	master.send(`{"action":"submit","id":"A","type":"w","body":"a"}`)
	master.expect(`{"ok":true,"id":"A"}`)
	first.expect(`{"action":"job","id":"A","type":"w","body":"a"}`)
	master.send(`{"action":"submit","id":"B","type":"w","body":"b","priority":1}`)
	master.expect(`{"ok":true,"id":"B"}`)
	first.c.Close()
	waitFor(t, protoDeadline, "jsd to see the slave gone", noWorkers)
	for i := 0; i < 3; i++ {
		sl := dialGloomAt(t, port)
		sl.send(`{"action":"join","type":"w"}`)
		sl.expect(`{"ok":true}`)
		sl.expect(`{"action":"job","id":"A","type":"w","body":"a"}`)
		sl.c.Close()
		waitFor(t, protoDeadline, "jsd to see the slave gone", noWorkers)
	}
	master.expect(`{"error":"job_failed","reason":"A"}`)

	// B is still queued; a slave takes it, and its master leaves.
	slave := dialGloomAt(t, port)
	slave.send(`{"action":"join","type":"w"}`)
	slave.expect(`{"ok":true}`)
	slave.expect(`{"action":"job","id":"B","type":"w","body":"b"}`)
	master.c.Close()
	slave.send(`{"action":"respond","body":"unheard"}`)
	slave.expect(`{"ok":true}`)
	waitFor(t, protoDeadline, "the slave to be free", func() bool { n, busy := workers(); return n == 1 && busy == 0 })
	other := dialGloomAt(t, port)
	other.send(`{"action":"submit","id":"C","type":"w","body":"c"}`)
	other.expect(`{"ok":true,"id":"C"}`)
	slave.expect(`{"action":"job","id":"C","type":"w","body":"c"}`)
	slave.send(`{"action":"respond","body":"heard"}`)
	slave.expect(`{"ok":true}`)
	other.expect(`{"id":"C","body":"heard"}`)
}

// ---- HTTP and seamless ----

type httpResult struct {
	code int
	body string
	hdr  http.Header
}

func httpDo(t *testing.T, port int, method, path, body string, hdr ...string) httpResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Timeout: protoDeadline}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, string(b), resp.Header}
}

func (r httpResult) must(t *testing.T, code int, body string) {
	t.Helper()
	if r.code != code || (body != "" && r.body != body) {
		t.Fatalf("got %d %q, want %d %q", r.code, r.body, code, body)
	}
}

// seamlessGET sends /run-transformation as seamless-remote's client does:
// GET with a JSON body.
func seamlessGET(t *testing.T, port int, body string) httpResult {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), protoDeadline)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(protoDeadline))
	fmt.Fprintf(c, "GET /run-transformation HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: python-requests/2.31.0\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n%s", port, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, string(b), resp.Header}
}

// rawWorker is a native worker on jsd's unix socket, written from deputy's
// shapes: can_do, then a did per do.
type rawWorker struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRawWorker(t *testing.T, d *daemon, typ string) *rawWorker {
	t.Helper()
	c, err := net.DialTimeout("unix", filepath.Join(d.dir, "jsd.sock"), protoDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := &rawWorker{t: t, c: c, r: bufio.NewReader(c)}
	w.send(`{"cmd":"can_do","types":["` + typ + `"]}`)
	return w
}

func (w *rawWorker) send(line string) {
	w.t.Helper()
	w.c.SetWriteDeadline(time.Now().Add(protoDeadline))
	if _, err := io.WriteString(w.c, line+"\n"); err != nil {
		w.t.Fatal(err)
	}
}

// next returns the next job pushed to the worker: its id (raw JSON) and arg.
func (w *rawWorker) next() (id, arg json.RawMessage) {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(protoDeadline))
	line, err := w.r.ReadBytes('\n')
	if err != nil {
		w.t.Fatalf("worker read: %v", err)
	}
	var m struct {
		Cmd string          `json:"cmd"`
		ID  json.RawMessage `json:"id"`
		Arg json.RawMessage `json:"arg"`
	}
	if json.Unmarshal(line, &m) != nil || m.Cmd != "do" {
		w.t.Fatalf("worker got %q, want a do", line)
	}
	return m.ID, m.Arg
}

func TestProtocolHTTPWithToken(t *testing.T) {
	forBackends(t, func(t *testing.T, start starter) {
		tokFile := filepath.Join(t.TempDir(), "token")
		writeFile(t, tokFile, "s3cr3t-token\n")
		d := start(t, "--slots", "2", "--port-range", "20000", "60000", "--auth-token-file", tokFile)
		port := d.status().Port
		auth := []string{"Authorization", "Bearer s3cr3t-token"}

		httpDo(t, port, "GET", "/healthcheck", "").must(t, 200, "OK")
		httpDo(t, port, "GET", "/", "").must(t, 401, "")
		r := httpDo(t, port, "GET", "/", "", auth...)
		if r.code != 200 || !strings.Contains(r.body, "jsd") {
			t.Fatalf("GET /: %d %q", r.code, r.body)
		}
		httpDo(t, port, "POST", "/jobs/thumb?wait=false&id=t1", `{"f":"a.jpg"}`).must(t, 401, "")
		httpDo(t, port, "POST", "/jobs/thumb?wait=false&id=t1&priority=2", `{"f":"a.jpg"}`, auth...).must(t, 202, "")
		r = httpDo(t, port, "GET", "/jobs/t1", "", auth...)
		if r.code != 200 || !strings.Contains(r.body, `"state":"queued"`) {
			t.Fatalf("GET /jobs/t1: %d %q", r.code, r.body)
		}
		w := dialRawWorker(t, d, "thumb")
		if id, arg := w.next(); string(id) != `"t1"` || string(arg) != `{"f":"a.jpg"}` {
			t.Fatalf("worker got %s %s", id, arg)
		}
		w.send(`{"cmd":"did","id":"t1","res":"a-small.jpg\n"}`)
		var last httpResult
		waitFor(t, protoDeadline, "t1 to end", func() bool {
			last = httpDo(t, port, "GET", "/jobs/t1", "", auth...)
			t.Logf("%d %q %v", last.code, last.body, last.hdr)
			return last.hdr.Get("X-Job-State") == "done"
		})
		last.must(t, 200, `"a-small.jpg\n"`)

		got := make(chan httpResult, 1)
		go func() { got <- httpDo(t, port, "POST", "/jobs/thumb", `"b.jpg"`, auth...) }()
		id, _ := w.next()
		w.send(`{"cmd":"did","id":` + string(id) + `,"res":"b-small.jpg"}`)
		(<-got).must(t, 200, `"b-small.jpg"`)

		r = httpDo(t, port, "GET", "/metrics", "", auth...)
		if r.code != 200 || !strings.Contains(r.body, "js_jobs_done_total 2\n") {
			t.Fatalf("metrics: %d\n%s", r.code, r.body)
		}
		// seamless' clients cannot present a token.
		seamlessGET(t, port, `{"transformation_dict":{},"tf_checksum":"ab12","tf_dunder":{},"scratch":false}`).must(t, 401, "")
	})
}

func TestProtocolTransformationAsSeamlessRemote(t *testing.T) {
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t, "--slots", "2", "--port-range", "20000", "60000")
		port := d.status().Port
		httpDo(t, port, "GET", "/healthcheck", "").must(t, 200, "OK")
		w := dialRawWorker(t, d, "transformation")
		body := `{"transformation_dict": {"__output__": ["result", "int", null], "a": ["int", "6b86b273"]}, "tf_checksum": "ab12", "tf_dunder": {}, "scratch": false}`
		got := make(chan httpResult, 1)
		go func() { got <- seamlessGET(t, port, body) }()
		id, arg := w.next()
		var x, y any
		json.Unmarshal(arg, &x)
		json.Unmarshal([]byte(body), &y)
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("the job's arg is %s, want the whole payload", arg)
		}
		sum := "d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35"
		w.send(`{"cmd":"did","id":` + string(id) + `,"res":"` + sum + `\n"}`)
		(<-got).must(t, 200, sum)

		r := seamlessGET(t, port, `{"transformation_dict": {}`)
		if r.code != 400 || !strings.HasPrefix(r.body, "Invalid JSON: ") {
			t.Fatalf("bad JSON: %d %q", r.code, r.body)
		}
		r = seamlessGET(t, port, `{"transformation_dict": {}, "tf_dunder": {}}`)
		if r.code != 400 || !strings.HasPrefix(r.body, "Invalid payload: ") {
			t.Fatalf("no tf_checksum: %d %q", r.code, r.body)
		}
		go func() { got <- seamlessGET(t, port, body) }()
		id, _ = w.next()
		w.send(`{"cmd":"fail","id":` + string(id) + `,"error":"transformation raised ValueError"}`)
		(<-got).must(t, 500, "transformation raised ValueError")
	})
}

// ---- the launcher's status-file handshake (remote-http-launcher) ----

func readStatusFile(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		t.Fatalf("status file is not a JSON object: %q", b)
	}
	return m
}

func TestLauncherStatusFileHandshake(t *testing.T) {
	sf := filepath.Join(t.TempDir(), "launch.json")
	writeFile(t, sf, `{"status":"starting","pid":1,"extra":"x"}`)
	d := startJSD(t, "--slots", "1", "--status-file", sf, "--port-range", "20000", "60000")
	var doc map[string]any
	waitFor(t, protoDeadline, "the status file to say running", func() bool {
		doc = readStatusFile(t, sf)
		return doc != nil && doc["status"] == "running"
	})
	port, _ := doc["port"].(float64)
	if doc["extra"] != "x" || doc["host"] != "127.0.0.1" || port < 20000 || port > 60000 {
		t.Fatalf("status file %v: want extra kept, host and a port in range", doc)
	}
	if pid, _ := doc["pid"].(float64); int(pid) != d.cmd.Process.Pid {
		t.Fatalf("status file pid %v, want jsd's %d", doc["pid"], d.cmd.Process.Pid)
	}
	// The launcher then polls /healthcheck on that port.
	httpDo(t, int(port), "GET", "/healthcheck", "").must(t, 200, "OK")
	d.stop()
	doc = readStatusFile(t, sf)
	if doc["status"] != "stopped" || doc["extra"] != "x" {
		t.Fatalf("after stop: %v", doc)
	}
}

func TestLauncherBusyPortFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	sf := filepath.Join(dir, "launch.json")
	writeFile(t, sf, `{"status":"starting","pid":1,"extra":"x"}`)
	res := runIn(t, baseEnv(dir), dir, protoDeadline, bin("jsd"), "--dir", dir, "--slots", "1", "--status-file", sf, "--port", strconv.Itoa(port))
	if res.code == 0 {
		t.Fatalf("jsd on a busy port exited 0; stderr: %s", res.stderr)
	}
	doc := readStatusFile(t, sf)
	if doc["status"] != "failed" || doc["extra"] != "x" {
		t.Fatalf("status file %v: want failed, extra kept", doc)
	}
	if e, _ := doc["error"].(string); !strings.Contains(e, strconv.Itoa(port)) {
		t.Fatalf("status file error %q does not name the port", doc["error"])
	}
}
