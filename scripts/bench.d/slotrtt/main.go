// Command slotrtt is workload W6 of scripts/bench: the round trip of one
// slot through jsd (acquire, lease, release, released on one connection of
// the native protocol, docs/protocol.md), against the floor of a raw
// jobserver FIFO read and write of one byte, on the same jsd's FIFO, and
// against the same two line exchanges with a Go process that only echoes
// them (echo.go: what any daemon's round trip costs here before it does
// anything).
//
//	slotrtt -dir DIR [-n 20000] [-warmup 500] [-max-seconds 20]
//
// It prints `W6 system metric value unit` lines like the rest of the
// benchmark. It talks the wire protocol by hand and imports nothing from
// this repository, so it keeps measuring while the packages change.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

func main() {
	dir := flag.String("dir", os.Getenv("JS_DIR"), "jsd's runtime directory (socket DIR/jsd.sock)")
	n := flag.Int("n", 20000, "measured round trips per system")
	warmup := flag.Int("warmup", 500, "unmeasured round trips first")
	maxSeconds := flag.Float64("max-seconds", 20, "stop each measurement after this long, whatever -n says")
	workload := flag.String("workload", "W6", "workload name printed first on each line")
	echoServer := flag.String("echo-server", "", "internal: serve the echo floor on this unix socket")
	flag.Parse()
	if *echoServer != "" {
		err := echoServe(*echoServer)
		fmt.Fprintln(os.Stderr, "slotrtt -echo-server:", err)
		os.Exit(1)
	}
	if *dir == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: slotrtt -dir DIR [-n N] [-warmup N] [-max-seconds S]")
		os.Exit(64)
	}
	limit := time.Duration(*maxSeconds * float64(time.Second))
	if err := run(*workload, *dir, *n, *warmup, limit); err != nil {
		fmt.Fprintln(os.Stderr, "slotrtt:", err)
		os.Exit(1)
	}
}

func run(w, dir string, n, warmup int, limit time.Duration) error {
	sock := filepath.Join(dir, "jsd.sock")
	c, err := dial(sock)
	if err != nil {
		return err
	}
	defer c.close()

	// One lease first, to learn the FIFO's path from jsd itself.
	fifo, err := c.roundTrip()
	if err != nil {
		return err
	}
	if fifo == "" {
		fifo = filepath.Join(dir, "jobserver.fifo")
	}

	jsd, err := measure(n, warmup, limit, func() error { _, err := c.roundTrip(); return err })
	if err != nil {
		return fmt.Errorf("jsd round trip: %w", err)
	}

	// What jsrun pays per command on the wire: a fresh connection each time.
	conn, err := measure(n/4+1, warmup/4, limit, func() error {
		c, err := dial(sock)
		if err != nil {
			return err
		}
		_, err = c.roundTrip()
		c.close()
		return err
	})
	if err != nil {
		return fmt.Errorf("jsd connect round trip: %w", err)
	}

	f, err := openFIFO(fifo)
	if err != nil {
		return err
	}
	raw, err := measure(n, warmup, limit, f.roundTrip)
	syscall.Close(f.fd)
	if err != nil {
		return fmt.Errorf("fifo read+write: %w", err)
	}

	echo, err := echoFloor(n, warmup, limit)
	if err != nil {
		return fmt.Errorf("echo floor: %w", err)
	}

	jp50, jp99 := pct(jsd, 50), pct(jsd, 99)
	fp50, fp99 := pct(raw, 50), pct(raw, 99)
	line(w, "jsd", "rtt_p50", jp50, "us", len(jsd), n)
	line(w, "jsd", "rtt_p99", jp99, "us", len(jsd), n)
	line(w, "jsd_connect", "rtt_p50", pct(conn, 50), "us", len(conn), n/4+1)
	line(w, "jsd_connect", "rtt_p99", pct(conn, 99), "us", len(conn), n/4+1)
	line(w, "fifo", "rtt_p50", fp50, "us", len(raw), n)
	line(w, "fifo", "rtt_p99", fp99, "us", len(raw), n)
	line(w, "echo", "rtt_p50", pct(echo, 50), "us", len(echo), n)
	line(w, "echo", "rtt_p99", pct(echo, 99), "us", len(echo), n)
	fmt.Printf("%s ratio jsd/fifo_p50 %.2f x\n", w, jp50/fp50)
	fmt.Printf("%s ratio jsd/fifo_p99 %.2f x\n", w, jp99/fp99)
	// The floor: where echo's p50 is over 30 us, no daemon meets W6 here.
	fmt.Printf("%s ratio jsd/echo_p50 %.2f x\n", w, jp50/pct(echo, 50))
	return nil
}

// line prints one measurement, noting the count when the time limit cut it
// short of the one asked for.
func line(w, sys, metric string, v float64, unit string, count, asked int) {
	note := ""
	if count < asked {
		note = fmt.Sprintf(" # n=%d of %d: time limit", count, asked)
	}
	prec := 1
	if v < 10 {
		prec = 2
	}
	fmt.Printf("%s %s %s %.*f %s%s\n", w, sys, metric, prec, v, unit, note)
}

// measure runs f warmup times, then up to n times or until limit has
// passed, and returns each measured call's duration in microseconds.
func measure(n, warmup int, limit time.Duration, f func() error) ([]float64, error) {
	for i := 0; i < warmup; i++ {
		if err := f(); err != nil {
			return nil, err
		}
	}
	out := make([]float64, 0, n)
	deadline := time.Now().Add(limit)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		t1 := time.Now()
		out = append(out, float64(t1.Sub(t0).Nanoseconds())/1e3)
		if t1.After(deadline) {
			break
		}
	}
	return out, nil
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

// client is one connection of jsd's native protocol, JSON lines.
type client struct {
	conn *net.UnixConn
	r    *bufio.Reader
	buf  []byte
}

func dial(sock string) (*client, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	return &client{conn: conn, r: bufio.NewReader(conn)}, nil
}

func (c *client) close() { c.conn.Close() }

var (
	acquireLine = []byte("{\"cmd\":\"acquire\",\"slots\":1,\"timeout_ms\":10000}\r\n")
	leaseCmd    = []byte(`"cmd":"lease"`)
	releasedCmd = []byte(`"cmd":"released"`)
)

// roundTrip acquires one slot, releases it, and returns the FIFO path the
// lease named.
func (c *client) roundTrip() (string, error) {
	if _, err := c.conn.Write(acquireLine); err != nil {
		return "", err
	}
	reply, err := c.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	if !bytes.Contains(reply, leaseCmd) {
		return "", fmt.Errorf("acquire: unexpected reply %q", reply)
	}
	lease, ok := field(reply, "lease")
	if !ok {
		return "", fmt.Errorf("acquire: no lease id in %q", reply)
	}
	fifo, _ := field(reply, "fifo")
	c.buf = append(c.buf[:0], `{"cmd":"release","lease":`...)
	c.buf = append(c.buf, lease...)
	c.buf = append(c.buf, "}\r\n"...)
	if _, err := c.conn.Write(c.buf); err != nil {
		return "", err
	}
	reply, err = c.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	if !bytes.Contains(reply, releasedCmd) {
		return "", fmt.Errorf("release: unexpected reply %q", reply)
	}
	return string(fifo), nil
}

// field returns the raw value of "key": in a flat JSON object: digits for a
// number, the unquoted text for a string without escapes.
func field(line []byte, key string) ([]byte, bool) {
	k := []byte(`"` + key + `":`)
	i := bytes.Index(line, k)
	if i < 0 {
		return nil, false
	}
	v := line[i+len(k):]
	if len(v) > 0 && v[0] == '"' {
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 {
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
	if _, err := strconv.ParseUint(string(v[:end]), 10, 64); err != nil {
		return nil, false
	}
	return v[:end], true
}

// rawFIFO takes a token from the jobserver FIFO and puts it back, as make
// does, with non-blocking reads so that an empty pool cannot hang the
// benchmark.
type rawFIFO struct{ fd int }

func openFIFO(path string) (*rawFIFO, error) {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &rawFIFO{fd: fd}, nil
}

func (f *rawFIFO) roundTrip() error {
	var b [1]byte
	for tries := 0; ; tries++ {
		n, err := syscall.Read(f.fd, b[:])
		if n == 1 {
			break
		}
		if err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if tries >= 1000 {
			return errors.New("no token in the FIFO for 1 s")
		}
		time.Sleep(time.Millisecond)
	}
	for {
		n, err := syscall.Write(f.fd, b[:])
		if n == 1 {
			return nil
		}
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
