package integration

// Hostile clients (issue 5, "Bad input: a hostile-client test"): one jsd
// faces oversized lines and frames, invalid UTF-8, deeply nested JSON,
// thousands of silent connections and clients that never read, while a
// canary keeps pinging it and running jobs through it. Each offender must
// get an error or a close, the canary must be served throughout, and jsd's
// VmRSS must stay within a bound per offence.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// memScale widens the memory bounds for race-built binaries (the race
// detector's shadow memory multiplies every allocation).
func memScale() int {
	if raceEnabled {
		return 4
	}
	return 1
}

// rssWatch samples a process's VmRSS every 5 ms and keeps the peak.
type rssWatch struct {
	pid  int
	mu   sync.Mutex
	peak int
	stop chan struct{}
	done chan struct{}
}

func watchRSS(pid int) *rssWatch {
	w := &rssWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			if kb := rssKB(pid); kb > 0 {
				w.mu.Lock()
				w.peak = max(w.peak, kb)
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return w
}

// reset starts a new peak from now and returns the current RSS.
func (w *rssWatch) reset() int {
	kb := rssKB(w.pid)
	w.mu.Lock()
	w.peak = kb
	w.mu.Unlock()
	return kb
}

func (w *rssWatch) peakKB() int {
	if kb := rssKB(w.pid); kb > 0 {
		w.mu.Lock()
		w.peak = max(w.peak, kb)
		w.mu.Unlock()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

func (w *rssWatch) close() { close(w.stop); <-w.done }

// canary is a well-behaved client that must be served while offenders act:
// a ping on a long-lived connection every 20 ms, a job round trip through
// a worker every 100 ms, and fresh connections (unix and TCP) every 200 ms.
type canary struct {
	mu     sync.Mutex
	errs   []string
	maxLat time.Duration
	rounds int
	eagain int // fresh unix connects retried: the backlog was full
	stop   chan struct{}
	done   chan struct{}
}

func startCanary(t *testing.T, d *daemon, tcpAddr string) *canary {
	// How long an answer may take: race-built binaries are ~10 times
	// slower, and a 2-CPU machine runs the offenders too.
	canaryWait := 5 * time.Second
	if raceEnabled {
		canaryWait = 15 * time.Second
	}
	c := &canary{stop: make(chan struct{}), done: make(chan struct{})}
	pinger := dialJobs(t, d.dir)
	sub := dialJobs(t, d.dir)
	worker := dialJobs(t, d.dir)
	if err := worker.send(map[string]any{"cmd": "can_do", "types": []string{"canary"}, "req": 0}); err != nil {
		t.Fatal(err)
	}
	if m, err := worker.recv(time.Now().Add(10 * time.Second)); err != nil || m.Cmd != "ok" {
		t.Fatalf("canary worker: %v %+v", err, m)
	}
	go func() { // the worker answers at once
		for {
			m, err := worker.recv(time.Time{})
			if err != nil {
				return
			}
			if m.Cmd == "do" {
				worker.send(map[string]any{"cmd": "did", "id": m.ID, "res": m.Arg})
			}
		}
	}()
	fail := func(format string, args ...any) {
		c.mu.Lock()
		c.errs = append(c.errs, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
		c.mu.Unlock()
	}
	lat := func(since time.Time) {
		c.mu.Lock()
		c.maxLat = max(c.maxLat, time.Since(since))
		c.mu.Unlock()
	}
	ping := func(nc net.Conn) error {
		nc.SetDeadline(time.Now().Add(canaryWait))
		if _, err := nc.Write([]byte(`{"cmd":"ping"}` + "\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil {
			return err
		}
		if line != `{"cmd":"pong"}`+"\r\n" {
			return fmt.Errorf("got %q", line)
		}
		return nil
	}
	go func() {
		defer close(c.done)
		for i := 0; ; i++ {
			select {
			case <-c.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			if err := pinger.send(`{"cmd":"ping"}` + "\r\n"); err != nil {
				fail("ping: %v", err)
				return
			}
			if m, err := pinger.recv(time.Now().Add(canaryWait)); err != nil || m.Cmd != "pong" {
				fail("ping: %v %+v", err, m)
				return
			}
			lat(start)
			if i%5 == 0 {
				start = time.Now()
				id := fmt.Sprint(i)
				sub.send(map[string]any{"cmd": "do", "id": id, "type": "canary", "arg": i, "req": i})
				ok := false
				for k := 0; k < 2; k++ {
					m, err := sub.recv(time.Now().Add(canaryWait))
					if err != nil {
						fail("job %s: %v", id, err)
						return
					}
					ok = m.Cmd == "did" && string(m.ID) == `"`+id+`"` && string(m.Res) == id
					if k == 0 && m.Cmd != "queued" {
						fail("job %s: want queued, got %+v", id, m)
					}
				}
				if !ok {
					fail("job %s: no did", id)
				}
				lat(start)
			}
			if i%10 == 0 {
				start = time.Now()
				for _, nw := range [][2]string{{"unix", filepath.Join(d.dir, "jsd.sock")}, {"tcp", tcpAddr}} {
					nc, err := net.DialTimeout(nw[0], nw[1], canaryWait)
					for errors.Is(err, syscall.EAGAIN) && time.Since(start) < canaryWait {
						// A full unix backlog (a connection flood): a
						// unix connect does not wait, so retry.
						c.mu.Lock()
						c.eagain++
						c.mu.Unlock()
						time.Sleep(10 * time.Millisecond)
						nc, err = net.DialTimeout(nw[0], nw[1], canaryWait)
					}
					if err != nil {
						fail("dial %s: %v", nw[0], err)
						continue
					}
					if err := ping(nc); err != nil {
						fail("fresh %s connection: %v", nw[0], err)
					}
					nc.Close()
				}
				lat(start)
			}
			c.mu.Lock()
			c.rounds++
			c.mu.Unlock()
		}
	}()
	return c
}

// check fails the test if the canary was not served since the last check.
func (c *canary) check(t *testing.T, what string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.errs {
		t.Errorf("canary during %s: %s", what, e)
	}
	c.errs = nil
}

func (c *canary) close() {
	close(c.stop)
	<-c.done
}

// rawConn is an offender's connection.
type rawConn struct {
	t       *testing.T
	nc      net.Conn
	br      *bufio.Reader
	badUTF8 []string // replies that were not valid UTF-8
}

func dialRaw(t *testing.T, network, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// line reads one native reply (CRLF-terminated) within 20 s.
func (c *rawConn) line() (map[string]any, error) {
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	s, err := c.br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(s, "\r\n") {
		return nil, fmt.Errorf("reply not ended by CRLF: %q", s)
	}
	if !utf8.ValidString(s) {
		c.badUTF8 = append(c.badUTF8, s)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("reply not JSON: %q", s)
	}
	return m, nil
}

// expectError reads a native error reply with code.
func (c *rawConn) expectError(code string) {
	c.t.Helper()
	m, err := c.line()
	if err != nil {
		c.t.Fatalf("want error %s: %v", code, err)
	}
	if m["cmd"] != "error" || m["code"] != code {
		c.t.Fatalf("want error %s, got %v", code, m)
	}
}

// expectPong checks the connection still serves.
func (c *rawConn) expectPong() {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write([]byte(`{"cmd":"ping"}` + "\r\n")); err != nil {
		c.t.Fatalf("ping: %v", err)
	}
	if m, err := c.line(); err != nil || m["cmd"] != "pong" {
		c.t.Fatalf("ping: %v %v", err, m)
	}
}

// gloomFrame reads one gloom frame within 20 s.
func (c *rawConn) gloomFrame() (map[string]any, error) {
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("a reply frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.br, b); err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("frame not JSON: %q", b)
	}
	return m, nil
}

// closed reports whether jsd closed the connection within 20 s (what it
// still sends is read and dropped).
func (c *rawConn) closed() bool {
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

func gloomPayload(prefix uint32, body string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, prefix), body...)
}

func TestHostileClients(t *testing.T) {
	// Not parallel: it opens thousands of descriptors and times the canary.
	d := startJSD(t, "--slots", "2", "--port-range", "20000", "30000")
	addr := d.tcpAddr()
	sock := filepath.Join(d.dir, "jsd.sock")
	rss := watchRSS(d.pid())
	defer rss.close()
	can := startCanary(t, d, addr)
	defer can.close()
	time.Sleep(300 * time.Millisecond)
	base := rss.reset()
	t.Logf("jsd VmRSS at rest: %d KiB (race: %v)", base, raceEnabled)
	type phaseLatency struct {
		phase string
		max   time.Duration
	}
	var latencies []phaseLatency
	// phase runs one offence and checks the canary and the memory bound
	// (MiB above the RSS before it; scaled under -race).
	phase := func(name string, boundMiB int, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			before := rss.reset()
			can.mu.Lock()
			can.maxLat = 0
			can.mu.Unlock()
			start := time.Now()
			fn(t)
			peak := rss.peakKB()
			can.check(t, name)
			can.mu.Lock()
			lat := can.maxLat
			can.mu.Unlock()
			latencies = append(latencies, phaseLatency{name, lat})
			grow := (peak - before) / 1024
			t.Logf("%v; jsd VmRSS %d KiB before, peak %d KiB (+%d MiB, bound %d MiB); canary's slowest answer %v", time.Since(start).Round(time.Millisecond),
				before, peak, grow, boundMiB*memScale(), lat.Round(time.Millisecond))
			if grow > boundMiB*memScale() {
				t.Errorf("jsd grew by %d MiB during %s (bound %d MiB)", grow, name, boundMiB*memScale())
			}
		})
	}

	// A line over 16 MiB: too_large, then the connection is closed. Four
	// at once on each listener (one under -race, which is slow at it):
	// memory grows by about twice the line limit per connection at most.
	phase("oversized native lines", 4*2*32+64, func(t *testing.T) {
		var wg sync.WaitGroup
		for i := 0; i < 8/memScale(); i++ {
			network, a := "unix", sock
			if i%2 == 1 {
				network, a = "tcp", addr
			}
			c := dialRaw(t, network, a)
			wg.Add(1)
			go func() {
				defer wg.Done()
				big := make([]byte, 17<<20)
				for k := range big {
					big[k] = 'x'
				}
				copy(big, `{"cmd":"do","type":"t","arg":"`)
				c.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
				c.nc.Write(big) // jsd may close before it has read it all
			}()
			defer func() {
				c.expectError("too_large")
				if !c.closed() {
					t.Errorf("%s connection with an oversized line stayed open", network)
				}
			}()
		}
		wg.Wait()
	})

	// gloom length prefixes of 2^31 (first byte 0x80) and 2^30 (first byte
	// '@'), and 2^32-1: size_error, then the connection is closed, with
	// nothing allocated for the announced payload.
	phase("gloom length prefixes", 32, func(t *testing.T) {
		for _, n := range []uint32{1 << 31, 1 << 30, 1<<32 - 1, 256<<20 + 1} {
			c := dialRaw(t, "tcp", addr)
			c.nc.Write(gloomPayload(n, `{"action":"submit","id":1,"type":"t","body":1}`))
			m, err := c.gloomFrame()
			if err != nil || m["error"] != "size_error" {
				t.Errorf("length %d: want a size_error frame, got %v %v", n, m, err)
			}
			if !c.closed() {
				t.Errorf("length %d: connection stayed open", n)
			}
		}
	})

	// Invalid UTF-8 in every position: answered, never fatal to the
	// connection on the line protocol; replies stay valid UTF-8.
	var badReplies []string // replies to invalid UTF-8 that were not UTF-8
	phase("invalid UTF-8", 32, func(t *testing.T) {
		for _, network := range []string{"unix", "tcp"} {
			a := sock
			if network == "tcp" {
				a = addr
			}
			c := dialRaw(t, network, a)
			c.nc.Write([]byte("{\xff\xfe\xfd}\r\n"))
			c.expectError("bad_request")
			c.nc.Write([]byte("\xff\xfe\r\n"))
			c.expectError("bad_request")
			c.nc.Write([]byte("{\"cmd\":\"\xff\xfe\"}\r\n"))
			c.expectError("unknown_cmd")
			c.nc.Write([]byte("{\"cmd\":\"do\",\"id\":\"u\xff" + network + "\",\"type\":\"nobody\xfe\",\"arg\":\"\xc3\x28\",\"req\":\"r\xff\"}\r\n"))
			if m, err := c.line(); err != nil || m["cmd"] != "queued" {
				t.Errorf("%s: a job with invalid UTF-8 in its strings: %v %v", network, m, err)
			}
			// The ok and the cancelled outcome it causes (this connection
			// submitted the job), in either order.
			c.nc.Write([]byte("{\"cmd\":\"cancel\",\"id\":\"u\xff" + network + "\",\"req\":2}\r\n"))
			got := map[any]bool{}
			for k := 0; k < 2; k++ {
				m, err := c.line()
				if err != nil {
					t.Fatalf("%s: cancel by the same invalid id: %v", network, err)
				}
				got[m["cmd"]] = true
			}
			if !got["ok"] || !got["cancelled"] {
				t.Errorf("%s: cancel by the same invalid id: got %v, want ok and cancelled", network, got)
			}
			c.expectPong()
			badReplies = append(badReplies, c.badUTF8...)
		}
		// gloom: a payload that is not UTF-8 (nor JSON) is invalid_json,
		// then a close; invalid UTF-8 inside strings is accepted.
		c := dialRaw(t, "tcp", addr)
		c.nc.Write(gloomPayload(4, "\xff\xfe\xfd\xfc"))
		if m, err := c.gloomFrame(); err != nil || m["error"] == nil {
			t.Errorf("gloom: want an error frame, got %v %v", m, err)
		}
		if !c.closed() {
			t.Errorf("gloom: the connection stayed open after invalid JSON")
		}
		body := "{\"action\":\"submit\",\"id\":\"g\xff\",\"type\":\"nobody\",\"body\":\"\xfe\"}"
		c = dialRaw(t, "tcp", addr)
		c.nc.Write(gloomPayload(uint32(len(body)), body))
		if m, err := c.gloomFrame(); err != nil || m["ok"] != true {
			t.Errorf("gloom: submit with invalid UTF-8 in strings: %v %v", m, err)
		}
		c.nc.Close()
		// HTTP: a body that is not UTF-8.
		resp, err := hostileHTTP("POST", "http://"+addr+"/jobs/nobody?wait=false", "\xff\xfe")
		t.Logf("HTTP POST of a non-UTF-8 body: %s %v", resp, err)
		if err != nil {
			t.Errorf("HTTP: %v", err)
		}
	})

	// What jsd writes is JSON, which is UTF-8 (RFC 8259): a client's
	// invalid bytes must not be echoed back raw.
	t.Run("replies stay valid UTF-8", func(t *testing.T) {
		for _, r := range badReplies {
			t.Errorf("a reply carries the client's invalid UTF-8: %q", r)
		}
	})

	// 100,000 nested '[' (Go's decoder stops at depth 10,000): an error,
	// the connection goes on (native) or is closed after an error (gloom).
	phase("deeply nested JSON", 64, func(t *testing.T) {
		deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
		for _, network := range []string{"unix", "tcp"} {
			a := sock
			if network == "tcp" {
				a = addr
			}
			c := dialRaw(t, network, a)
			c.nc.Write([]byte(`{"cmd":"do","type":"nobody","req":1,"arg":` + deep + "}\r\n"))
			c.expectError("bad_request")
			c.nc.Write([]byte(`{"cmd":"ping","req":` + deep + "}\r\n"))
			c.expectError("bad_request")
			unclosed := strings.Repeat(`{"a":`, 100000)
			c.nc.Write([]byte(`{"cmd":"do","type":"nobody","arg":` + unclosed + "\r\n"))
			c.expectError("bad_request")
			c.expectPong()
		}
		body := `{"action":"submit","id":1,"type":"nobody","body":` + deep + `}`
		c := dialRaw(t, "tcp", addr)
		c.nc.Write(gloomPayload(uint32(len(body)), body))
		if m, err := c.gloomFrame(); err != nil || m["error"] == nil {
			t.Errorf("gloom: want an error frame, got %v %v", m, err)
		}
		if !c.closed() {
			t.Errorf("gloom: the connection stayed open after invalid JSON")
		}
		resp, err := hostileHTTP("POST", "http://"+addr+"/jobs/nobody?wait=false", deep)
		if err != nil || !strings.HasPrefix(resp, "400") {
			t.Errorf("HTTP POST of a nested body: %s %v, want 400", resp, err)
		}
	})

	// Clients that send a request in a loop and never read: jsd closes
	// them (a reply queue is bounded) and its memory stays bounded. At once:
	// {"cmd":"status"} on each listener, and {"cmd":"jobs"} with big replies
	// (200 queued jobs with 1000-byte ids make each ~220 KB: the queue must
	// be bounded in bytes, not only in messages).
	phase("clients that never read", 256, func(t *testing.T) {
		owner := dialJobs(t, d.dir)
		for i := 0; i < 200; i++ {
			owner.send(map[string]any{"cmd": "do", "id": fmt.Sprintf("%04d%s", i, strings.Repeat("x", 996)), "type": "nobody-big", "arg": i})
		}
		defer owner.close()
		waitFor(t, 10*time.Second, "200 queued jobs", func() bool {
			for _, q := range d.status().Queues {
				if q.Type == "nobody-big" && q.Queued == 200 {
					return true
				}
			}
			return false
		})
		offenders := [][3]string{{"unix", sock, `{"cmd":"status"}`}, {"unix", sock, `{"cmd":"jobs"}`}, {"tcp", addr, `{"cmd":"status"}`}}
		if raceEnabled {
			// A race-built jsd is ~10 times slower: ~100,000 small status
			// replies to fill the 32 MiB reply buffer take over a minute.
			// The full set runs without -race (and in scripts/chaos).
			offenders = offenders[1:2]
		}
		var wg sync.WaitGroup
		for _, c := range offenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				neverRead(t, c[0], c[1], c[2])
			}()
		}
		wg.Wait()
	})

	// Many connections that send nothing (slowloris), as many as the
	// descriptor limit allows up to 10,000: half on the unix socket, half
	// on TCP (silent, a partial native line, a partial HTTP header, a
	// gloom frame announcing 100 MiB and sending 1 KiB). jsd keeps serving
	// the canary and fresh connections; closing them gives everything back.
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	// Under -race every goroutine of jsd costs ~10 times the memory and
	// time: 2,000 connections there, 10,000 otherwise.
	n, perConnKiB := min(10000, int(lim.Cur)-2000), 40
	if raceEnabled {
		n, perConnKiB = min(2000, n), 400
	}
	phase(fmt.Sprintf("%d silent connections", n), (n*perConnKiB/1024+64)/memScale(), func(t *testing.T) {
		if n < 1000 {
			t.Skipf("RLIMIT_NOFILE is %d: too few descriptors for a slowloris test", lim.Cur)
		}
		openBefore := metricInt(d.metrics(), "connections_open")
		// jsctl itself gets EAGAIN while the unix backlog is full: retry.
		jsctlEagain := 0
		openNow := func() int {
			for {
				out, err := d.jsctl("metrics", "--json")
				var m map[string]any
				if err == nil && json.Unmarshal([]byte(out), &m) == nil {
					return metricInt(m, "connections_open")
				}
				if !strings.Contains(out, "temporarily unavailable") {
					t.Fatalf("jsctl metrics: %v %s", err, out)
				}
				jsctlEagain++
				time.Sleep(10 * time.Millisecond)
			}
		}
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		partialGloom := append(binary.BigEndian.AppendUint32(nil, 100<<20), bytes.Repeat([]byte("["), 1024)...)
		start := time.Now()
		eagain := 0
		for i := 0; i < n; i++ {
			network, a := "unix", sock
			if i%2 == 1 {
				network, a = "tcp", addr
			}
			c, err := net.DialTimeout(network, a, 10*time.Second)
			for retry := 0; errors.Is(err, syscall.EAGAIN) && retry < 10000; retry++ {
				// The unix socket's backlog is full: jsd has not accepted
				// the last ones yet (a unix connect does not wait).
				eagain++
				time.Sleep(time.Millisecond)
				c, err = net.DialTimeout(network, a, 10*time.Second)
			}
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			conns = append(conns, c)
			if network == "tcp" {
				switch i / 2 % 4 {
				case 1:
					c.Write([]byte(`{"cmd":"ping"`))
				case 2:
					c.Write([]byte("GET /healthcheck HTTP/1.1\r\nHost: x\r\n"))
				case 3:
					c.Write(partialGloom)
				}
			}
		}
		t.Logf("%d connections opened in %v (RLIMIT_NOFILE %d; %d unix connects retried on EAGAIN, backlog full)",
			n, time.Since(start).Round(time.Millisecond), lim.Cur, eagain)
		waitFor(t, 20*time.Second, "jsd to count the unix connections", func() bool {
			return openNow() >= openBefore+n/2
		})
		time.Sleep(time.Second) // the canary runs against them
		t.Logf("with them open: connections_open %d, jsd VmRSS %d KiB, %d fds; jsctl got EAGAIN %d times",
			openNow(), rssKB(d.pid()), countFDs(d.pid()), jsctlEagain)
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		closedAt := time.Now()
		waitFor(t, 20*time.Second, "jsd to let the closed connections go", func() bool {
			return openNow() <= openBefore && countFDs(d.pid()) < 100
		})
		t.Logf("all let go %v after the close; jsd VmRSS %d KiB", time.Since(closedAt).Round(time.Millisecond), rssKB(d.pid()))
	})
	can.check(t, "the end")
	can.mu.Lock()
	t.Logf("canary: %d rounds, slowest answer %v, %d fresh unix connects retried on EAGAIN (backlog full)",
		can.rounds, can.maxLat.Round(time.Millisecond), can.eagain)
	can.mu.Unlock()
}

// neverRead sends request in a loop on a new connection and never reads
// the replies: jsd must close the connection within 15 s (30 s under
// -race).
func neverRead(t *testing.T, network, addr, request string) {
	within := 15 * time.Second
	if raceEnabled {
		within = 30 * time.Second
	}
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Error(err)
		return
	}
	defer nc.Close()
	batch := bytes.Repeat([]byte(request+"\r\n"), 64)
	start := time.Now()
	sent := 0
	for {
		nc.SetWriteDeadline(start.Add(within))
		if _, err := nc.Write(batch); err != nil {
			if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
				t.Logf("%s %s: jsd closed the connection after %d unread requests (%v)", network, request, sent, time.Since(start).Round(time.Millisecond))
			} else {
				t.Errorf("%s %s: jsd did not close a connection that never reads within %v (%d requests sent): %v", network, request, within, sent, err)
			}
			return
		}
		sent += len(batch) / (len(request) + 2)
	}
}

// hostileHTTP sends one request and returns "STATUS body" (the body cut short).
func hostileHTTP(method, url, body string) (string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	cl := &http.Client{Timeout: 20 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b))), nil
}

// countFDs is the number of open descriptors of pid.
func countFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}
