package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/js-toolkit/js/pkg/metrics"
	"github.com/js-toolkit/js/pkg/queue"
	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/wire"
)

// HTTP on jsd's TCP port (docs/protocol.md, "HTTP"): the sniffer hands
// connections whose first byte starts an HTTP method to serveHTTPConn, which
// feeds them to one net/http server through an in-memory listener.

// MaxHTTPBody is the largest request body jsd reads (a job's arg, a
// transformation): 16 MiB, as a native line. Larger ones get 413.
const MaxHTTPBody = 16 << 20

// ---- the protocol adapters' state ----

// adapters is the gloom and HTTP state of one Server: whether the listeners
// closed (then calls into the scheduler, which may have stopped, are not
// made), the open gloom connections, the HTTP server.
type adapters struct {
	done     chan struct{} // closed by stopHTTP
	stopOnce sync.Once

	mu      sync.Mutex
	stopped bool
	gloom   map[*gloomConn]struct{}
	srv     *http.Server
	ln      *connListener
	served  chan struct{} // closed when srv.Serve returned
	s       *Server
	started bool
}

// adapters returns s's adapter state, made on first use (a connection may
// be sniffed before startHTTP runs).
func (s *Server) adapters() *adapters {
	s.adaptOnce.Do(func() {
		s.adapt = &adapters{
			done:   make(chan struct{}),
			gloom:  map[*gloomConn]struct{}{},
			ln:     newConnListener(),
			served: make(chan struct{}),
			s:      s,
		}
	})
	return s.adapt
}

// call runs fn on the scheduler state, like Server.call, unless the
// listeners have closed or the scheduler has stopped: then it reports false.
func (a *adapters) call(fn func(st *loopState)) bool {
	select {
	case <-a.done:
		return false
	default:
	}
	return a.s.tryCall(fn)
}

// ask runs fn on the scheduler state and returns its answer.
func ask[T any](a *adapters, fn func(st *loopState) T) (T, bool) {
	ch := make(chan T, 1)
	var zero T
	if !a.call(func(st *loopState) { ch <- fn(st) }) {
		return zero, false
	}
	select {
	case v := <-ch:
		return v, true
	case <-a.done:
		return zero, false
	}
}

func (a *adapters) addGloom(g *gloomConn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return false
	}
	a.gloom[g] = struct{}{}
	return true
}

func (a *adapters) removeGloom(g *gloomConn) {
	a.mu.Lock()
	delete(a.gloom, g)
	a.mu.Unlock()
}

// connListener is a net.Listener fed by serveHTTPConn.
type connListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// bufConn reads what sniffing already buffered before the socket.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// startHTTP starts the HTTP server (it serves connections serveHTTPConn
// hands it).
func (s *Server) startHTTP() {
	a := s.adapters()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped || a.started {
		return
	}
	a.started = true
	a.srv = &http.Server{
		Handler:           s.httpHandler(a),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.log,
	}
	srv, ln, served := a.srv, a.ln, a.served
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(served)
		srv.Serve(ln)
	}()
}

// stopHTTP runs when the listeners close: no call reaches the loop any
// more, requests waiting for jobs end (503), gloom connections close.
func (s *Server) stopHTTP() {
	a := s.adapters()
	a.stopOnce.Do(func() { close(a.done) })
	a.mu.Lock()
	a.stopped = true
	srv, started := a.srv, a.started
	gl := make([]*gloomConn, 0, len(a.gloom))
	for g := range a.gloom {
		gl = append(gl, g)
	}
	a.gloom = map[*gloomConn]struct{}{}
	a.srv = nil
	a.mu.Unlock()
	a.ln.Close()
	for _, g := range gl {
		g.close()
	}
	if started {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		cancel()
		<-a.served
	}
}

// serveHTTPConn hands a sniffed connection to the HTTP server.
func (s *Server) serveHTTPConn(nc net.Conn, br *bufio.Reader) {
	a := s.adapters()
	if !a.call(func(st *loopState) { st.conns++ }) {
		nc.Close()
		return
	}
	var c net.Conn = nc
	if br != nil {
		c = &bufConn{Conn: nc, r: br}
	}
	select {
	case a.ln.ch <- c:
	case <-a.ln.closed:
		nc.Close()
	case <-a.done:
		nc.Close()
	}
}

// ---- the peer of one HTTP request ----

// httpPeer is a request waiting for a job's outcome (as its submitter, or
// as a waiter). sendOutcome never blocks: the channel holds one outcome.
type httpPeer struct {
	ch chan httpOutcome

	// guarded by Server.mu
	counted bool   // counted in st.clients while it waits
	waitID  string // the job it waits for as a waiter
}

// httpOutcome is a copy of a job's end, made in the loop.
type httpOutcome struct {
	key   string
	state queue.State
	res   json.RawMessage
	enc   string
	err   string
	exit  *int
}

func newHTTPPeer() *httpPeer { return &httpPeer{ch: make(chan httpOutcome, 1)} }

func (p *httpPeer) sendJob(*job)            {}
func (p *httpPeer) sendCancel(*job, string) {}
func (p *httpPeer) sendOutcome(j *job, _ json.RawMessage) {
	o := httpOutcome{key: j.ID, state: j.State}
	if j.out != nil {
		o.state, o.res, o.enc, o.err, o.exit = j.out.state, j.out.res, j.out.enc, j.out.err, j.out.exit
	}
	select {
	case p.ch <- o:
	default:
	}
}

// release ends what a finished or abandoned request had in the loop: it
// stops counting as a client; a job it submitted and no longer waits for
// is cancelled (its client disconnected); it waits no more.
func (st *loopState) releaseHTTP(p *httpPeer) {
	if p.counted {
		p.counted = false
		st.clients--
	}
	js := &st.jobs
	if js.owns(p) || js.waits[p] != nil {
		js.dropPeer(p)
	}
	if p.waitID != "" {
		if j := js.live[p.waitID]; j != nil {
			j.dropWaiter(p)
		}
		p.waitID = ""
	}
}

// ---- handlers ----

func (s *Server) httpHandler(a *adapters) http.Handler {
	mux := http.NewServeMux()
	h := &httpHandlers{s: s, a: a}
	mux.HandleFunc("GET /{$}", h.welcome)
	mux.HandleFunc("GET /healthcheck", h.healthcheck)
	mux.HandleFunc("POST /jobs/{type}", h.submit)
	mux.HandleFunc("GET /jobs/{id}", h.get)
	mux.HandleFunc("DELETE /jobs/{id}", h.cancel)
	mux.HandleFunc("GET /metrics", h.metrics)
	mux.HandleFunc("GET /run-transformation", h.transformation)
	mux.HandleFunc("POST /run-transformation", h.transformation)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.httpAuthorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jsd"`)
			http.Error(w, "unauthorized: this listener needs Authorization: Bearer TOKEN (jsd --auth-token-file)", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// httpAuthorized: with a token, every request presents it, but
// /healthcheck (for probes), and seamless' / and /run-transformation when
// --allow-unauthenticated names seamless.
func (s *Server) httpAuthorized(r *http.Request) bool {
	tok := s.cfg.AuthToken
	if !s.needsToken() || r.URL.Path == "/healthcheck" {
		return true
	}
	if s.cfg.AllowUnauth["seamless"] && (r.URL.Path == "/run-transformation" || r.URL.Path == "/") {
		return true
	}
	if tok == "" {
		return false
	}
	h := r.Header.Get("Authorization")
	const bearer = "Bearer "
	if len(h) <= len(bearer) || !strings.EqualFold(h[:len(bearer)], bearer) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(bearer):])), []byte(tok)) == 1
}

type httpHandlers struct {
	s *Server
	a *adapters
}

func textReply(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, text)
}

func jsonReply(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		textReply(w, http.StatusInternalServerError, "internal: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func stoppingReply(w http.ResponseWriter) {
	textReply(w, http.StatusServiceUnavailable, "jsd is stopping")
}

func (h *httpHandlers) welcome(w http.ResponseWriter, r *http.Request) {
	textReply(w, http.StatusOK, fmt.Sprintf("jsd %s is running (js job server; Seamless jobserver compatible)\n", h.s.cfg.Version))
}

func (h *httpHandlers) healthcheck(w http.ResponseWriter, r *http.Request) {
	textReply(w, http.StatusOK, "OK")
}

// readBody reads a request body of at most MaxHTTPBody; on failure it has
// answered (413, or 400).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxHTTPBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			textReply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large: the limit is %d bytes", MaxHTTPBody))
		} else {
			textReply(w, http.StatusBadRequest, "Cannot read the request body: "+err.Error())
		}
		return nil, false
	}
	return b, true
}

// jsonError is a JSON parse error's text, with where it happened.
func jsonError(b []byte) error {
	var v json.RawMessage
	err := json.Unmarshal(b, &v)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%s (at byte %d)", se.Error(), se.Offset)
	}
	return err
}

type submitReply struct {
	id   json.RawMessage
	key  string
	code string
	msg  string
}

// submitJob queues a job for the request (p is its owner unless detached)
// and returns once jsd acknowledged it (with --journal: once it is on
// disk). The caller releases p in every case.
func (h *httpHandlers) submitJob(r *http.Request, sub submission, p *httpPeer) (submitReply, bool) {
	ch := make(chan submitReply, 1)
	if !h.a.call(func(st *loopState) {
		j, code, msg := st.jobs.submit(p, sub)
		if j == nil {
			ch <- submitReply{code: code, msg: msg}
			return
		}
		if !sub.detach {
			p.counted = true
			st.clients++
		}
		rep := submitReply{id: j.RawID(), key: j.ID}
		st.jobs.accept(j, func() { ch <- rep }, func(code, msg string) { ch <- submitReply{code: code, msg: msg} })
		st.jobs.enqueue(j)
	}) {
		return submitReply{}, false
	}
	select {
	case v := <-ch:
		return v, true
	case <-r.Context().Done():
		return submitReply{}, false
	case <-h.a.done:
		return submitReply{}, false
	}
}

// wait waits for p's outcome, the client going away, or jsd stopping.
func (h *httpHandlers) wait(r *http.Request, p *httpPeer) (httpOutcome, bool) {
	select {
	case o := <-p.ch:
		return o, true
	case <-r.Context().Done():
		return httpOutcome{}, false
	case <-h.a.done:
		return httpOutcome{}, false
	}
}

func (h *httpHandlers) release(p *httpPeer) {
	h.a.call(func(st *loopState) { st.releaseHTTP(p) })
}

func submitStatus(code string) int {
	switch code {
	case wire.CodeIDExists:
		return http.StatusConflict
	case wire.CodeStopping:
		return http.StatusServiceUnavailable
	case wire.CodeNotFound:
		return http.StatusNotFound
	case wire.CodeEnded:
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// POST /jobs/{type}?wait=false&priority=P&id=ID&retries=R, the arg as the
// JSON body (empty: null).
func (h *httpHandlers) submit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sub := submission{typ: r.PathValue("type"), proto: protoHTTP}
	var err error
	if v := q.Get("priority"); v != "" {
		if sub.priority, err = strconv.Atoi(v); err != nil || sub.priority != int(int32(sub.priority)) {
			textReply(w, http.StatusBadRequest, "Invalid priority: must be an integer")
			return
		}
	}
	if v := q.Get("retries"); v != "" {
		if sub.retries, err = strconv.Atoi(v); err != nil || sub.retries != int(int32(sub.retries)) {
			textReply(w, http.StatusBadRequest, "Invalid retries: must be an integer (-1: unbounded)")
			return
		}
	}
	if v := q.Get("wait"); v != "" {
		wait, err := strconv.ParseBool(v)
		if err != nil {
			textReply(w, http.StatusBadRequest, "Invalid wait: must be true or false")
			return
		}
		sub.detach = !wait
	}
	if q.Has("id") {
		sub.id, _ = json.Marshal(q.Get("id"))
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("null")
	} else if err := jsonError(body); err != nil {
		textReply(w, http.StatusBadRequest, "Invalid JSON: "+err.Error())
		return
	}
	sub.arg = body
	p := newHTTPPeer()
	defer h.release(p)
	rep, ok := h.submitJob(r, sub, p)
	if !ok {
		if r.Context().Err() == nil {
			stoppingReply(w)
		}
		return
	}
	if rep.code != "" {
		textReply(w, submitStatus(rep.code), rep.msg)
		return
	}
	w.Header().Set("X-Job-Id", rep.key)
	if sub.detach {
		w.Header().Set("Location", "/jobs/"+url.PathEscape(rep.key))
		jsonReply(w, http.StatusAccepted, map[string]any{"id": rep.id, "state": "queued"})
		return
	}
	o, ok := h.wait(r, p)
	if !ok {
		if r.Context().Err() == nil {
			stoppingReply(w)
		}
		return
	}
	writeOutcome(w, o)
}

// writeOutcome answers with an ended job: done is 200 with the result as
// JSON (X-Job-Encoding: base64 when the handler's bytes were not UTF-8);
// failed, lost and cancelled are 500 with the error text.
func writeOutcome(w http.ResponseWriter, o httpOutcome) {
	w.Header().Set("X-Job-Id", o.key)
	w.Header().Set("X-Job-State", o.state.String())
	if o.state == queue.Done {
		if o.enc != "" {
			w.Header().Set("X-Job-Encoding", o.enc)
		}
		res := o.res
		if len(res) == 0 {
			res = json.RawMessage("null")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(res)
		return
	}
	if o.exit != nil {
		w.Header().Set("X-Job-Exit", strconv.Itoa(*o.exit))
	}
	textReply(w, http.StatusInternalServerError, outcomeText(o))
}

func outcomeText(o httpOutcome) string {
	if o.err != "" {
		return o.err
	}
	return "job " + o.state.String()
}

type getReply struct {
	view    *status.Job
	waiting bool
	code    string
	msg     string
}

// GET /jobs/{id}: a queued or running job's state as JSON (?wait=true waits
// for its end instead); an ended one's outcome as POST /jobs gives it.
func (h *httpHandlers) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wantWait := false
	if v := r.URL.Query().Get("wait"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			textReply(w, http.StatusBadRequest, "Invalid wait: must be true or false")
			return
		}
		wantWait = b
	}
	p := newHTTPPeer()
	rep, ok := ask(h.a, func(st *loopState) getReply {
		js := &st.jobs
		if j := js.lookup(id); j != nil && !j.gone {
			if !wantWait {
				v := jobView(j)
				return getReply{view: &v}
			}
			js.wait(p, id, nil, nil)
			p.waitID = id
			p.counted = true
			st.clients++
			return getReply{waiting: true}
		}
		code, msg := js.wait(p, id, nil, nil) // an ended job: at once
		return getReply{code: code, msg: msg}
	})
	if !ok {
		stoppingReply(w)
		return
	}
	if rep.code == wire.CodeNotFound && h.s.sh != nil {
		h.s.sh.httpGet(w, r, id, wantWait) // not held here: ask the cluster
		return
	}
	switch {
	case rep.code != "":
		textReply(w, submitStatus(rep.code), rep.msg)
	case rep.view != nil:
		w.Header().Set("X-Job-Id", rep.view.ID)
		w.Header().Set("X-Job-State", rep.view.State)
		jsonReply(w, http.StatusOK, rep.view)
	default:
		if rep.waiting {
			defer h.release(p)
		}
		o, ok := h.wait(r, p)
		if !ok {
			if r.Context().Err() == nil {
				stoppingReply(w)
			}
			return
		}
		writeOutcome(w, o)
	}
}

// DELETE /jobs/{id}: cancel a queued or running job.
func (h *httpHandlers) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sig := r.URL.Query().Get("signal")
	if sig == "" {
		sig = "TERM"
	}
	type reply struct{ code, msg string }
	ch := make(chan reply, 1)
	if !h.a.call(func(st *loopState) {
		code, msg := st.jobs.cancel(id, sig, func() { ch <- reply{} }, func(code, msg string) { ch <- reply{code, msg} })
		if code != "" {
			ch <- reply{code, msg} // else ack or fail answers, now or later
		}
	}) {
		stoppingReply(w)
		return
	}
	var rep reply
	select {
	case rep = <-ch:
	case <-r.Context().Done():
		return
	}
	if rep.code != "" {
		textReply(w, submitStatus(rep.code), rep.msg)
		return
	}
	jsonReply(w, http.StatusOK, map[string]string{"id": id, "state": "cancelled"})
}

// GET /metrics: the Prometheus text format.
func (h *httpHandlers) metrics(w http.ResponseWriter, r *http.Request) {
	type reply struct {
		m  *Metrics
		qs []status.Queue
	}
	rep, ok := ask(h.a, func(st *loopState) reply {
		return reply{st.metrics(), st.jobs.queuesView(time.Now())}
	})
	if !ok {
		stoppingReply(w)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write(promText(rep.m, rep.qs, h.s.snap.Load()))
}

// promText renders the metrics as jsctl metrics --prometheus does (the
// counters of {"cmd":"metrics"} as js_NAME_total, the levels as gauges, the
// latency histograms), then per-state and per-type gauges.
func promText(m *Metrics, qs []status.Queue, doc *status.Doc) []byte {
	var b bytes.Buffer
	raw, err := json.Marshal(m)
	if err == nil {
		if snap, counters, err := metrics.Decode(raw); err == nil {
			metrics.Prometheus(&b, snap, counters)
		}
	}
	b.WriteString("# HELP js_jobs Jobs queued or running now, by state.\n# TYPE js_jobs gauge\n")
	fmt.Fprintf(&b, "js_jobs{state=\"queued\"} %d\njs_jobs{state=\"running\"} %d\n", m.JobsQueued, m.JobsRunning)
	b.WriteString("# HELP js_queue_jobs Jobs of a type queued or running now.\n# TYPE js_queue_jobs gauge\n")
	for _, q := range qs {
		t := promLabel(q.Type)
		fmt.Fprintf(&b, "js_queue_jobs{type=\"%s\",state=\"queued\"} %d\njs_queue_jobs{type=\"%s\",state=\"running\"} %d\n", t, q.Queued, t, q.Running)
	}
	b.WriteString("# HELP js_queue_workers Workers serving a type.\n# TYPE js_queue_workers gauge\n")
	for _, q := range qs {
		fmt.Fprintf(&b, "js_queue_workers{type=\"%s\"} %d\n", promLabel(q.Type), q.Workers)
	}
	if doc != nil {
		sl := doc.Slots
		b.WriteString("# HELP js_slots The slot pool, by state.\n# TYPE js_slots gauge\n")
		fmt.Fprintf(&b, "js_slots{state=\"total\"} %d\njs_slots{state=\"free\"} %d\njs_slots{state=\"in_use\"} %d\njs_slots{state=\"leased\"} %d\njs_slots{state=\"waiting\"} %d\n",
			sl.Total, sl.Free, sl.InUse, sl.Leased, sl.Waiting)
	}
	return b.Bytes()
}

func promLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// /run-transformation (seamless-jobserver; GET with a JSON body, or POST):
// the whole payload is the arg of a job of type --transformation-type.
func (h *httpHandlers) transformation(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if err := jsonError(body); err != nil {
		textReply(w, http.StatusBadRequest, "Invalid JSON: "+err.Error())
		return
	}
	var payload map[string]json.RawMessage
	if err := json.Unmarshal(body, &payload); err != nil || payload == nil {
		textReply(w, http.StatusBadRequest, "Invalid payload: the payload must be a JSON object")
		return
	}
	for _, k := range []string{"transformation_dict", "tf_checksum"} {
		if _, ok := payload[k]; !ok {
			textReply(w, http.StatusBadRequest, fmt.Sprintf("Invalid payload: missing '%s'", k))
			return
		}
	}
	p := newHTTPPeer()
	defer h.release(p)
	rep, ok := h.submitJob(r, submission{typ: h.s.cfg.TransformationType, arg: body, proto: protoHTTP}, p)
	if !ok {
		if r.Context().Err() == nil {
			stoppingReply(w)
		}
		return
	}
	if rep.code != "" {
		textReply(w, http.StatusInternalServerError, rep.msg)
		return
	}
	o, ok := h.wait(r, p)
	if !ok {
		if r.Context().Err() == nil {
			stoppingReply(w)
		}
		return
	}
	w.Header().Set("X-Job-Id", o.key)
	if o.state != queue.Done {
		textReply(w, http.StatusInternalServerError, outcomeText(o))
		return
	}
	textReply(w, http.StatusOK, strings.TrimSuffix(string(resultBytes(o)), "\n"))
}

// resultBytes is a done job's result as bytes: a JSON string's text (a
// handler's stdout), decoded from base64 when enc says so; any other JSON
// value as its JSON text.
func resultBytes(o httpOutcome) []byte {
	if len(o.res) == 0 {
		return nil
	}
	if o.res[0] != '"' {
		return o.res
	}
	var s string
	if err := json.Unmarshal(o.res, &s); err != nil {
		return o.res
	}
	if o.enc == "base64" {
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			return b
		}
	}
	return []byte(s)
}
