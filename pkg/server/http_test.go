package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ---- an HTTP client ----

type httpResp struct {
	code   int
	body   string
	header http.Header
}

func doHTTP(t *testing.T, s *Server, method, path, body string, header ...string) httpResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+s.testAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	cl := &http.Client{Timeout: testDeadline}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return httpResp{code: resp.StatusCode, body: string(b), header: resp.Header}
}

func (r httpResp) want(t *testing.T, code int, body string) {
	t.Helper()
	if r.code != code || (body != "" && r.body != body) {
		t.Fatalf("got %d %q, want %d %q", r.code, r.body, code, body)
	}
}

// rawHTTP writes a request exactly as given on a fresh TCP connection and
// reads the response.
func rawHTTP(t *testing.T, s *Server, req string) httpResp {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.testAddr(), testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testDeadline))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResp{code: resp.StatusCode, body: string(b), header: resp.Header}
}

// seamlessRequest is a request as seamless-remote's jobserver client sends
// it: GET with a JSON body.
func seamlessRequest(body string, extra ...string) string {
	return "GET /run-transformation HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: python-requests/2.31.0\r\nAccept: */*\r\nConnection: close\r\n" +
		"Content-Type: application/json\r\n" + strings.Join(extra, "") + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
}

const seamlessBody = `{"transformation_dict": {"__language__": "python", "code": "a1b2"}, "tf_checksum": "ab12", "tf_dunder": {}, "scratch": false}`

// nativeWorker registers a native worker for typ on the unix socket.
func nativeWorker(t *testing.T, s *Server, typ string) *nativePeer {
	t.Helper()
	w := dialNative(t, s)
	// No "req": native.go sends the ok after the jobs it causes.
	w.send(`{"cmd":"can_do","types":["` + typ + `"]}`)
	return w
}

// ---- tests ----

func TestHTTPWelcomeAndHealthcheck(t *testing.T) {
	s := startTestServer(t, nil)
	r := doHTTP(t, s, "GET", "/", "")
	if r.code != 200 || !strings.Contains(r.body, "jsd") || !strings.Contains(r.body, "test-1.2") {
		t.Fatalf("GET /: %d %q", r.code, r.body)
	}
	doHTTP(t, s, "GET", "/healthcheck", "").want(t, 200, "OK")
	doHTTP(t, s, "GET", "/nothing-here", "").want(t, 404, "")
	doHTTP(t, s, "PUT", "/healthcheck", "").want(t, 405, "")
}

func TestHTTPSubmitAndWait(t *testing.T) {
	s := startTestServer(t, nil)
	w := nativeWorker(t, s, "echo")
	done := make(chan httpResp, 1)
	go func() { done <- doHTTP(t, s, "POST", "/jobs/echo?priority=4&id=e1", `{"n": 1}`) }()
	m := w.expectCmd("do")
	if string(m["id"]) != `"e1"` || string(m["arg"]) != `{"n":1}` {
		t.Fatalf("worker got %v", m)
	}
	if n := inLoop(t, s, func(st *loopState) int { return st.clients }); n != 1 {
		t.Fatalf("%d clients while a request waits, want 1", n)
	}
	w.send(`{"cmd":"did","id":"e1","res":"hi\n"}`)
	r := <-done
	r.want(t, 200, `"hi\n"`)
	if r.header.Get("X-Job-State") != "done" || r.header.Get("X-Job-Id") != "e1" {
		t.Fatalf("headers %v", r.header)
	}
	eventually(t, s, "the request to stop counting as a client", func(st *loopState) bool {
		return st.clients == 0 && len(st.jobs.owned) == 0
	})

	// A failed job: 500 with the error.
	go func() { done <- doHTTP(t, s, "POST", "/jobs/echo", "") }()
	m = w.expectCmd("do")
	if string(m["arg"]) != "null" {
		t.Fatalf("an empty body is a null arg, got %s", m["arg"])
	}
	w.send(`{"cmd":"fail","id":` + string(m["id"]) + `,"error":"it broke","exit":3}`)
	r = <-done
	r.want(t, 500, "it broke")
	if r.header.Get("X-Job-State") != "failed" || r.header.Get("X-Job-Exit") != "3" {
		t.Fatalf("headers %v", r.header)
	}
}

func TestHTTPBadRequests(t *testing.T) {
	s := startTestServer(t, nil)
	r := doHTTP(t, s, "POST", "/jobs/t", `{"a":`)
	if r.code != 400 || !strings.HasPrefix(r.body, "Invalid JSON: ") {
		t.Fatalf("bad JSON: %d %q", r.code, r.body)
	}
	for _, q := range []string{"priority=high", "retries=x", "wait=maybe", "id="} {
		if r := doHTTP(t, s, "POST", "/jobs/t?"+q, `1`); r.code != 400 {
			t.Fatalf("?%s: %d %q, want 400", q, r.code, r.body)
		}
	}
	big := `"` + strings.Repeat("x", MaxHTTPBody) + `"`
	doHTTP(t, s, "POST", "/jobs/t", big).want(t, 413, "")
	doHTTP(t, s, "POST", "/jobs/t?wait=false&id=same", `1`).want(t, 202, "")
	doHTTP(t, s, "POST", "/jobs/t?wait=false&id=same", `1`).want(t, 409, "")
	doHTTP(t, s, "GET", "/jobs/nosuch", "").want(t, 404, "")
	doHTTP(t, s, "DELETE", "/jobs/nosuch", "").want(t, 404, "")
}

func TestHTTPDetachedJobs(t *testing.T) {
	s := startTestServer(t, nil)
	r := doHTTP(t, s, "POST", "/jobs/later?wait=false&id=k1&priority=3&retries=2", `[1,2]`)
	r.want(t, 202, "")
	var acc map[string]any
	if json.Unmarshal([]byte(r.body), &acc) != nil || acc["id"] != "k1" {
		t.Fatalf("202 body %q", r.body)
	}
	// Queued: its state as JSON.
	r = doHTTP(t, s, "GET", "/jobs/k1", "")
	r.want(t, 200, "")
	var view struct {
		ID, State string
		Priority  int
	}
	if err := json.Unmarshal([]byte(r.body), &view); err != nil || view.ID != "k1" || view.State != "queued" || view.Priority != 3 {
		t.Fatalf("GET queued job: %q (%v)", r.body, err)
	}
	// Cancel it; then its outcome says cancelled, and a second cancel is refused.
	doHTTP(t, s, "DELETE", "/jobs/k1", "").want(t, 200, "")
	r = doHTTP(t, s, "GET", "/jobs/k1", "")
	if r.code != 500 || r.header.Get("X-Job-State") != "cancelled" {
		t.Fatalf("GET cancelled job: %d %q %v", r.code, r.body, r.header)
	}
	if r := doHTTP(t, s, "DELETE", "/jobs/k1", ""); r.code != 409 && r.code != 404 {
		t.Fatalf("second DELETE: %d %q", r.code, r.body)
	}

	// A detached job that runs: GET ?wait=true waits for its result.
	doHTTP(t, s, "POST", "/jobs/later?wait=false&id=k2", `"x"`).want(t, 202, "")
	got := make(chan httpResp, 1)
	go func() { got <- doHTTP(t, s, "GET", "/jobs/k2?wait=true", "") }()
	eventually(t, s, "the GET to wait", func(st *loopState) bool {
		j := st.jobs.live["k2"]
		return j != nil && j.waiters != nil && len(*j.waiters) == 1
	})
	w := nativeWorker(t, s, "later")
	w.expectCmd("do")
	w.send(`{"cmd":"did","id":"k2","res":{"ok":1}}`)
	(<-got).want(t, 200, `{"ok":1}`)

	// A running job cancelled over HTTP: its waiting submitter hears it.
	sub := make(chan httpResp, 1)
	go func() { sub <- doHTTP(t, s, "POST", "/jobs/later?id=k3", `3`) }()
	w.expectCmd("do")
	doHTTP(t, s, "DELETE", "/jobs/k3", "").want(t, 200, "")
	r = <-sub
	if r.code != 500 || r.header.Get("X-Job-State") != "cancelled" {
		t.Fatalf("cancelled submitter: %d %q", r.code, r.body)
	}
}

func TestHTTPMetrics(t *testing.T) {
	s := startTestServer(t, nil)
	doHTTP(t, s, "POST", "/jobs/m?wait=false", `1`).want(t, 202, "")
	doHTTP(t, s, "POST", "/jobs/m?wait=false", `2`).want(t, 202, "")
	r := doHTTP(t, s, "GET", "/metrics", "")
	r.want(t, 200, "")
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
	for _, line := range []string{
		"# TYPE js_jobs_added_total counter\n", "js_jobs_added_total 2\n", "js_jobs_done_total 0\n",
		"# TYPE js_jobs_queued gauge\n", "js_jobs_queued 2\n",
		"# TYPE js_jobs gauge\n", `js_jobs{state="queued"} 2` + "\n", `js_jobs{state="running"} 0` + "\n",
		`js_queue_jobs{type="m",state="queued"} 2` + "\n", "js_connections_total ", "js_up_since_seconds ",
		`js_slots{state="total"} 2` + "\n",
	} {
		if !strings.Contains(r.body, line) {
			t.Errorf("metrics lack %q:\n%s", line, r.body)
		}
	}
}

func TestHTTPAuth(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.AuthToken = "sekrit" })
	doHTTP(t, s, "GET", "/healthcheck", "").want(t, 200, "OK")
	for _, p := range []string{"/", "/metrics", "/jobs/x"} {
		doHTTP(t, s, "GET", p, "").want(t, 401, "")
		doHTTP(t, s, "GET", p, "", "Authorization", "Bearer wrong").want(t, 401, "")
	}
	doHTTP(t, s, "GET", "/metrics", "", "Authorization", "Bearer sekrit").want(t, 200, "")
	doHTTP(t, s, "GET", "/jobs/x", "", "Authorization", "bearer sekrit").want(t, 404, "")
	rawHTTP(t, s, seamlessRequest(seamlessBody)).want(t, 401, "")

	// --allow-unauthenticated seamless opens / and /run-transformation only.
	s2 := startTestServer(t, func(c *Config) { c.AuthToken = "sekrit"; c.AllowUnauth = map[string]bool{"seamless": true} })
	doHTTP(t, s2, "GET", "/", "").want(t, 200, "")
	doHTTP(t, s2, "GET", "/metrics", "").want(t, 401, "")
	doHTTP(t, s2, "POST", "/jobs/x?wait=false", "1").want(t, 401, "")
	w := nativeWorker(t, s2, "transformation")
	got := make(chan httpResp, 1)
	go func() { got <- rawHTTP(t, s2, seamlessRequest(seamlessBody)) }()
	m := w.expectCmd("do")
	w.send(`{"cmd":"did","id":` + string(m["id"]) + `,"res":"cafe\n"}`)
	(<-got).want(t, 200, "cafe")
}

func TestTransformationAsSeamlessSendsIt(t *testing.T) {
	s := startTestServer(t, nil)
	w := nativeWorker(t, s, "transformation")
	got := make(chan httpResp, 1)
	go func() { got <- rawHTTP(t, s, seamlessRequest(seamlessBody)) }()
	m := w.expectCmd("do")
	if string(m["type"]) != `"transformation"` || !sameJSON(m["arg"], []byte(seamlessBody)) {
		t.Fatalf("worker got %v", m)
	}
	hex := "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa00"
	w.send(`{"cmd":"did","id":` + string(m["id"]) + `,"res":"` + hex + `\n"}`)
	r := <-got
	r.want(t, 200, hex)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}

	// POST works as well; only one trailing newline goes.
	go func() { got <- doHTTP(t, s, "POST", "/run-transformation", seamlessBody) }()
	m = w.expectCmd("do")
	w.send(`{"cmd":"did","id":` + string(m["id"]) + `,"res":"ab\n\n"}`)
	(<-got).want(t, 200, "ab\n")

	// A failed job: 500 with its error text.
	go func() { got <- rawHTTP(t, s, seamlessRequest(seamlessBody)) }()
	m = w.expectCmd("do")
	w.send(`{"cmd":"fail","id":` + string(m["id"]) + `,"error":"Traceback: ZeroDivisionError"}`)
	(<-got).want(t, 500, "Traceback: ZeroDivisionError")
}

func TestTransformationBadPayloads(t *testing.T) {
	s := startTestServer(t, nil)
	r := rawHTTP(t, s, seamlessRequest(`{"transformation_dict": `))
	if r.code != 400 || !strings.HasPrefix(r.body, "Invalid JSON: ") {
		t.Fatalf("bad JSON: %d %q", r.code, r.body)
	}
	r = rawHTTP(t, s, seamlessRequest(``))
	if r.code != 400 || !strings.HasPrefix(r.body, "Invalid JSON: ") {
		t.Fatalf("empty body: %d %q", r.code, r.body)
	}
	for _, body := range []string{`{"tf_checksum":"ab12"}`, `{"transformation_dict":{}}`, `[1]`} {
		r = rawHTTP(t, s, seamlessRequest(body))
		if r.code != 400 || !strings.HasPrefix(r.body, "Invalid payload: ") {
			t.Fatalf("%s: %d %q", body, r.code, r.body)
		}
	}
	if n := inLoop(t, s, func(st *loopState) int64 { return st.jobs.c.JobsAdded }); n != 0 {
		t.Fatalf("%d jobs added by bad requests", n)
	}
}

// A client that disconnects cancels its job.
func TestTransformationClientDisconnectCancels(t *testing.T) {
	s := startTestServer(t, nil)
	w := nativeWorker(t, s, "transformation")
	c, err := net.DialTimeout("tcp", s.testAddr(), testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, seamlessRequest(seamlessBody))
	m := w.expectCmd("do")
	var id string
	json.Unmarshal(m["id"], &id)
	c.Close()
	eventually(t, s, "the job to be cancelled", func(st *loopState) bool {
		j := st.jobs.live[id]
		return j != nil && j.gone && j.State.String() == "cancelled" && st.clients == 0
	})
	// The worker's late answer is dropped, and it serves the next job.
	w.send(`{"cmd":"did","id":"` + id + `","res":"late"}`)
	got := make(chan httpResp, 1)
	go func() { got <- rawHTTP(t, s, seamlessRequest(seamlessBody)) }()
	m = w.expectCmd("do")
	w.send(`{"cmd":"did","id":` + string(m["id"]) + `,"res":"next"}`)
	(<-got).want(t, 200, "next")
}
