// Command qload is the load generator of workloads W2, W3 and W4 of
// scripts/bench: job queues under load, jsd against beanstalkd and gearmand.
// It speaks each server's protocol itself (jsd's JSON lines, beanstalkd's
// text protocol, gearmand's binary protocol) and imports nothing from this
// repository, so it keeps measuring while the packages change.
//
//	qload freeport
//	qload waitfor -addr ADDR [-seconds 5]
//	qload tput -system S -addr ADDR [-worker-addr ADDR2] [-workers 2] [-outstanding 64] [-seconds 10] [-concurrency C]
//	qload lat  -system S -addr ADDR [-worker-addr ADDR2] [-workers 2] [-n 5000] [-warmup 200] [-concurrency C]
//	qload fill -system S -addr ADDR -pid PID [-n 1000000] [-window 4000]
//	qload relay -listen ADDR
//
// S is jsd, beanstalkd or gearmand; ADDR is host:port (TCP) or unix:PATH.
// -concurrency is the concurrency a jsd worker registers in can_do (0: none,
// deputy's one job at a time).
//
// tput: one producer connection keeps up to -outstanding jobs in flight for
// -seconds, -workers worker connections echo each 16-byte payload back; it
// then waits for every result. Every result is checked: a payload derived
// from the job's id, back for that id, exactly once, none missing.
// Prints "jobs_per_s=X jobs=N seconds=T".
//
// lat: -n sequential round trips (submit, a worker echoes, the result is
// back) after -warmup unmeasured ones. Prints "p50_us=X p99_us=Y n=N".
//
// fill: -n 16-byte jobs queued with no worker, pipelined in batches, every
// one acknowledged (jsd: "req" and its "queued" ack; beanstalkd: INSERTED;
// gearmand: background jobs, JOB_CREATED); then the server's VmRSS from
// /proc/PID/status, with the connection still open. Prints
// "rss0_kb=A rss_kb=B jobs=N bytes_per_job=X seconds=T", where bytes_per_job
// is (B-A)/N less the 16-byte payload.
//
// relay: a line relay speaking the part of jsd's protocol the others use,
// with no queue and no parsing (relay.go): W3's floor for any broker.
//
// Every loop is bounded: a run that sees no result for 10 s fails, and
// every run has a hard -max-seconds. Errors go to stderr with exit 1.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const payloadLen = 16

// stallLimit: a run with jobs outstanding and no result for this long fails.
const stallLimit = 10 * time.Second

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "freeport":
		err = freeport()
	case "waitfor":
		err = waitfor(args)
	case "tput", "lat":
		err = load(cmd, args)
	case "fill":
		err = fill(args)
	case "relay":
		err = relay(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "qload %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: qload freeport | waitfor -addr ADDR | tput|lat|fill -system jsd|beanstalkd|gearmand -addr ADDR [flags] | relay -listen ADDR")
	os.Exit(64)
}

// freeport prints a TCP port on 127.0.0.1 that was free a moment ago.
func freeport() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}

// waitfor waits until ADDR accepts a connection.
func waitfor(args []string) error {
	fs := flag.NewFlagSet("waitfor", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port or unix:PATH")
	secs := fs.Float64("seconds", 5, "how long to wait")
	fs.Parse(args)
	end := time.Now().Add(time.Duration(*secs * float64(time.Second)))
	for {
		c, err := dial(*addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s: not accepting after %.1f s: %v", *addr, *secs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dial(addr string) (net.Conn, error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return net.DialTimeout("unix", p, 5*time.Second)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s: only loopback addresses here", addr)
	}
	return net.DialTimeout("tcp", addr, 5*time.Second)
}

// payloadFor is job id's 16-byte payload: hex of a mix of the id, so that a
// payload returned for the wrong job is seen.
func payloadFor(id uint64) [payloadLen]byte {
	z := id + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	var p [payloadLen]byte
	const hexd = "0123456789abcdef"
	for i := payloadLen - 1; i >= 0; i-- {
		p[i] = hexd[z&15]
		z >>= 4
	}
	return p
}

// sink receives what the connections' readers see.
type sink interface {
	result(id uint64, payload []byte)
	fail(err error)
}

// system is one server's protocol.
type system interface {
	// worker connects one worker for queue q that echoes each payload.
	worker(addr, q string, concurrency int, s sink) (closer, error)
	// producer connects the producing side for queue q.
	producer(addr, q string, s sink) (producer, error)
}

type closer interface{ Close() error }

type producer interface {
	submit(id uint64, payload []byte) error // buffered: flush sends
	flush() error
	Close() error
}

func systemNamed(name string) (system, error) {
	switch name {
	case "jsd":
		return jsdSystem{}, nil
	case "beanstalkd":
		return beanstalkSystem{}, nil
	case "gearmand":
		return gearmanSystem{}, nil
	}
	return nil, fmt.Errorf("unknown system %q (jsd, beanstalkd, gearmand)", name)
}

// tracker checks every result and hands out the places for outstanding jobs.
type tracker struct {
	mu      sync.Mutex
	out     map[uint64]struct{}
	done    atomic.Int64
	last    time.Time
	tokens  chan struct{} // one per free place
	failed  chan struct{}
	once    sync.Once
	err     error
	closing atomic.Bool
	pending func() int // when set, what outstanding reports (fill)
}

func newTracker(places int) *tracker {
	t := &tracker{out: map[uint64]struct{}{}, tokens: make(chan struct{}, places), failed: make(chan struct{})}
	for i := 0; i < places; i++ {
		t.tokens <- struct{}{}
	}
	return t
}

func (t *tracker) add(id uint64) {
	t.mu.Lock()
	t.out[id] = struct{}{}
	t.mu.Unlock()
}

func (t *tracker) result(id uint64, payload []byte) {
	want := payloadFor(id)
	t.mu.Lock()
	if _, ok := t.out[id]; !ok {
		t.mu.Unlock()
		t.fail(fmt.Errorf("a result for job %d, which is not outstanding (a duplicate or an unknown id)", id))
		return
	}
	if !bytes.Equal(payload, want[:]) {
		t.mu.Unlock()
		t.fail(fmt.Errorf("job %d: result %q, want %q", id, payload, want[:]))
		return
	}
	delete(t.out, id)
	t.last = time.Now()
	t.mu.Unlock()
	t.done.Add(1)
	t.tokens <- struct{}{}
}

func (t *tracker) fail(err error) {
	if t.closing.Load() {
		return
	}
	t.once.Do(func() { t.err = err; close(t.failed) })
}

func (t *tracker) outstanding() int {
	if t.pending != nil {
		return t.pending()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.out)
}

// cause prefers the failure a reader saw to the error it caused here (a
// write to a connection that failure closed).
func (t *tracker) cause(err error) error {
	select {
	case <-t.failed:
		return t.err
	default:
		return err
	}
}

// closeOnFail closes the connections once the run fails, so that no write
// stays blocked on a server that stopped reading.
func (t *tracker) closeOnFail(c ...closer) {
	go func() {
		<-t.failed
		for _, x := range c {
			x.Close()
		}
	}()
}

// take waits for a free place.
func (t *tracker) take() error {
	select {
	case <-t.tokens:
		return nil
	case <-t.failed:
		return t.err
	}
}

// watchdog fails the run when jobs are outstanding and no result came for
// stallLimit, or when the run passes its hard limit.
func (t *tracker) watchdog(hard time.Duration) (stop func()) {
	quit := make(chan struct{})
	go func() {
		start := time.Now()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		lastDone, lastChange := t.done.Load(), time.Now()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				if d := t.done.Load(); d != lastDone || t.outstanding() == 0 {
					lastDone, lastChange = d, now
				} else if now.Sub(lastChange) > stallLimit {
					t.fail(fmt.Errorf("no result for %v with %d jobs outstanding (%d done)", stallLimit, t.outstanding(), d))
				}
				if now.Sub(start) > hard {
					t.fail(fmt.Errorf("the run passed its hard limit of %v (%d done, %d outstanding)", hard, t.done.Load(), t.outstanding()))
				}
			}
		}
	}()
	return func() { close(quit) }
}

// load runs tput or lat.
func load(mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	sysName := fs.String("system", "", "jsd, beanstalkd or gearmand")
	addr := fs.String("addr", "", "host:port or unix:PATH")
	workerAddr := fs.String("worker-addr", "", "where the workers connect (default -addr): another jsd sharing the queues")
	workers := fs.Int("workers", 2, "worker connections")
	outstanding := fs.Int("outstanding", 64, "tput: jobs in flight at most")
	seconds := fs.Float64("seconds", 10, "tput: how long to submit")
	n := fs.Int("n", 5000, "lat: measured round trips")
	warmup := fs.Int("warmup", 200, "lat: unmeasured round trips first")
	concurrency := fs.Int("concurrency", 0, "jsd: the concurrency each worker registers (0: none, one job at a time)")
	queue := fs.String("queue", "", "queue (tube, function, type) name; default: a fresh one")
	maxSeconds := fs.Float64("max-seconds", 120, "hard limit of the whole run")
	fs.Parse(args)
	sys, err := systemNamed(*sysName)
	if err != nil {
		return err
	}
	if *addr == "" || *workers < 1 || *outstanding < 1 || *n < 1 {
		usage()
	}
	q := *queue
	if q == "" {
		q = fmt.Sprintf("qload-%s-%d-%d", mode, os.Getpid(), time.Now().UnixNano()%1e9)
	}
	places := *outstanding
	if mode == "lat" {
		places = 1
	}
	t := newTracker(places)
	stop := t.watchdog(time.Duration(*maxSeconds * float64(time.Second)))
	defer stop()

	var conns []closer
	defer func() {
		t.closing.Store(true)
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < *workers; i++ {
		wa := *addr
		if *workerAddr != "" {
			wa = *workerAddr
		}
		w, err := sys.worker(wa, q, *concurrency, t)
		if err != nil {
			return fmt.Errorf("worker %d: %w", i+1, err)
		}
		conns = append(conns, w)
	}
	p, err := sys.producer(*addr, q, t)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	conns = append(conns, p)
	t.closeOnFail(conns...)

	if mode == "tput" {
		err = throughput(t, p, *outstanding, time.Duration(*seconds*float64(time.Second)))
	} else {
		err = latency(t, p, *n, *warmup)
	}
	return t.cause(err)
}

func throughput(t *tracker, p producer, places int, d time.Duration) error {
	const maxJobs = 100_000_000
	var id uint64
	start := time.Now()
	end := start.Add(d)
	for id < maxJobs && time.Now().Before(end) {
		select {
		case <-t.tokens:
		default:
			if err := p.flush(); err != nil {
				return err
			}
			if err := t.take(); err != nil {
				return err
			}
		}
		id++
		t.add(id)
		pl := payloadFor(id)
		if err := p.submit(id, pl[:]); err != nil {
			return err
		}
	}
	if err := p.flush(); err != nil {
		return err
	}
	// Every place back: every result is in.
	for i := 0; i < places; i++ {
		if err := t.take(); err != nil {
			return err
		}
	}
	if got := t.done.Load(); got != int64(id) || t.outstanding() != 0 {
		return fmt.Errorf("%d jobs submitted, %d results, %d outstanding", id, got, t.outstanding())
	}
	t.mu.Lock()
	el := t.last.Sub(start).Seconds()
	t.mu.Unlock()
	fmt.Printf("jobs_per_s=%.1f jobs=%d seconds=%.3f\n", float64(id)/el, id, el)
	return nil
}

func latency(t *tracker, p producer, n, warmup int) error {
	if err := t.take(); err != nil {
		return err
	}
	us := make([]float64, 0, n)
	for i := 1; i <= warmup+n; i++ {
		id := uint64(i)
		t0 := time.Now()
		t.add(id)
		pl := payloadFor(id)
		if err := p.submit(id, pl[:]); err != nil {
			return err
		}
		if err := p.flush(); err != nil {
			return err
		}
		if err := t.take(); err != nil {
			return err
		}
		if i > warmup {
			us = append(us, float64(time.Since(t0).Nanoseconds())/1e3)
		}
	}
	fmt.Printf("p50_us=%.1f p99_us=%.1f n=%d\n", pct(us, 50), pct(us, 99), len(us))
	return nil
}

func pct(us []float64, p int) float64 {
	s := slices.Clone(us)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[i-1]
}

// ---- fill (W4) ---------------------------------------------------------------

// filler queues jobs with no worker; acked is called from its reader for
// every acknowledgement, fail on anything else.
type filler interface {
	submit(seq uint64, payload []byte) error
	flush() error
	Close() error
}

func fill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	sysName := fs.String("system", "", "jsd, beanstalkd or gearmand")
	addr := fs.String("addr", "", "host:port or unix:PATH")
	pid := fs.Int("pid", 0, "the server's pid, for its VmRSS")
	n := fs.Int("n", 1_000_000, "jobs to queue")
	window := fs.Int("window", 4000, "unacknowledged jobs at most (in batches of 1000)")
	queue := fs.String("queue", "", "queue name; default: a fresh one")
	maxSeconds := fs.Float64("max-seconds", 300, "hard limit of the whole run")
	fs.Parse(args)
	if *addr == "" || *pid <= 0 || *n < 1 || *window < 1 {
		usage()
	}
	q := *queue
	if q == "" {
		q = fmt.Sprintf("qload-fill-%d", os.Getpid())
	}
	const batch = 1000
	places := max(1, *window/batch)
	t := newTracker(places)
	total := uint64(*n)
	var sent atomic.Uint64
	t.pending = func() int { return int(sent.Load() - uint64(t.done.Load())) }
	stop := t.watchdog(time.Duration(*maxSeconds * float64(time.Second)))
	defer stop()

	rss0, err := vmRSS(*pid)
	if err != nil {
		return err
	}
	var acked uint64 // only the reader touches it
	allIn := make(chan struct{})
	ack := func(seq uint64) {
		acked++
		if seq != acked {
			t.fail(fmt.Errorf("acknowledgement %d names job %d", acked, seq))
			return
		}
		if acked%batch == 0 {
			t.tokens <- struct{}{}
		}
		if acked == total {
			close(allIn)
		}
		t.done.Add(1)
	}
	var f filler
	switch *sysName {
	case "jsd":
		f, err = jsdFiller(*addr, q, ack, t)
	case "beanstalkd":
		f, err = beanstalkFiller(*addr, q, ack, t)
	case "gearmand":
		f, err = gearmanFiller(*addr, q, ack, t)
	default:
		return fmt.Errorf("unknown system %q", *sysName)
	}
	if err != nil {
		return err
	}
	defer func() { t.closing.Store(true); f.Close() }()
	t.closeOnFail(f)
	start := time.Now()
	if err := fillAll(t, f, total, batch, &sent, allIn); err != nil {
		return t.cause(err)
	}
	el := time.Since(start).Seconds()
	rss, err := vmRSS(*pid)
	if err != nil {
		return err
	}
	per := float64(rss-rss0)*1024/float64(total) - payloadLen
	fmt.Printf("rss0_kb=%d rss_kb=%d jobs=%d bytes_per_job=%.1f seconds=%.3f\n", rss0, rss, total, per, el)
	return nil
}

func fillAll(t *tracker, f filler, total, batch uint64, sent *atomic.Uint64, allIn chan struct{}) error {
	for seq := uint64(1); seq <= total; seq++ {
		if (seq-1)%batch == 0 {
			if err := f.flush(); err != nil {
				return err
			}
			if err := t.take(); err != nil {
				return err
			}
		}
		sent.Store(seq)
		pl := payloadFor(seq)
		if err := f.submit(seq, pl[:]); err != nil {
			return err
		}
	}
	if err := f.flush(); err != nil {
		return err
	}
	select {
	case <-allIn:
		return nil
	case <-t.failed:
		return t.err
	}
}

// vmRSS is the VmRSS of pid in kB.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// ---- line helpers -------------------------------------------------------------

// field returns the raw value of "key": in a flat JSON object: digits for a
// number, the unquoted text for a string without escapes.
func field(line []byte, key string) ([]byte, bool) {
	var kb [40]byte
	k := append(append(append(kb[:0], '"'), key...), '"', ':')
	i := bytes.Index(line, k)
	if i < 0 {
		return nil, false
	}
	v := line[i+len(k):]
	if len(v) > 0 && v[0] == '"' {
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 || bytes.IndexByte(v[1:1+end], '\\') >= 0 {
			return nil, false
		}
		return v[1 : 1+end], true
	}
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	if end == 0 {
		return nil, false
	}
	return v[:end], true
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// readLine reads one line without its CR LF; the slice is valid until the
// next read.
func readLine(r *bufio.Reader) ([]byte, error) {
	l, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("a line over %d bytes", r.Size())
		}
		return nil, err
	}
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil
}

// correlator maps server-assigned handles (beanstalkd job ids, gearmand job
// handles) back to our ids: created comes in submission order on the
// producer's connection; a result may come before its creation is read.
type correlator struct {
	mu       sync.Mutex
	fifo     []uint64
	head     int
	byHandle map[string]uint64
	early    map[string][]byte
	s        sink
}

func newCorrelator(s sink) *correlator {
	return &correlator{byHandle: map[string]uint64{}, early: map[string][]byte{}, s: s}
}

func (c *correlator) sent(id uint64) {
	c.mu.Lock()
	if c.head > 0 && c.head == len(c.fifo) {
		c.fifo, c.head = c.fifo[:0], 0
	}
	c.fifo = append(c.fifo, id)
	c.mu.Unlock()
}

func (c *correlator) created(handle []byte) {
	c.mu.Lock()
	if c.head >= len(c.fifo) {
		c.mu.Unlock()
		c.s.fail(fmt.Errorf("a creation (%q) for no submitted job", handle))
		return
	}
	id := c.fifo[c.head]
	c.head++
	if p, ok := c.early[string(handle)]; ok {
		delete(c.early, string(handle))
		c.mu.Unlock()
		c.s.result(id, p)
		return
	}
	c.byHandle[string(handle)] = id
	c.mu.Unlock()
}

func (c *correlator) completed(handle, payload []byte) {
	c.mu.Lock()
	if id, ok := c.byHandle[string(handle)]; ok {
		delete(c.byHandle, string(handle))
		c.mu.Unlock()
		c.s.result(id, payload)
		return
	}
	if _, dup := c.early[string(handle)]; dup {
		c.mu.Unlock()
		c.s.fail(fmt.Errorf("two results for handle %q", handle))
		return
	}
	c.early[string(handle)] = bytes.Clone(payload)
	c.mu.Unlock()
}
