package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// benchConn is a raw native connection for benchmarks.
type benchConn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dialBench(tb testing.TB, s *Server) *benchConn {
	nc, err := net.Dial("unix", s.cfg.Paths.Socket)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	return &benchConn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), w: bufio.NewWriterSize(nc, 64<<10)}
}

func (c *benchConn) line(tb testing.TB) []byte {
	b, err := c.r.ReadSlice('\n')
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkSlotRoundTrip is W6: acquire + release of one slot through jsd
// on an open connection.
func BenchmarkSlotRoundTrip(b *testing.B) {
	s := startTestServer(b, func(c *Config) { c.PortRange = [2]int{} })
	c := dialBench(b, s)
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		c.nc.Write([]byte(`{"cmd":"acquire","slots":1}` + "\n"))
		l := c.line(b)
		i := bytes.Index(l, []byte(`"lease":`))
		if i < 0 {
			b.Fatalf("no lease: %s", l)
		}
		j := i + 8
		for j < len(l) && l[j] >= '0' && l[j] <= '9' {
			j++
		}
		c.nc.Write([]byte(`{"cmd":"release","lease":` + string(l[i+8:j]) + "}\n"))
		c.line(b)
		lat = append(lat, time.Since(t0))
	}
	reportPercentiles(b, lat)
}

// BenchmarkLeaseConnection is what jsrun --exec asks of jsd (W1): connect,
// acquire, read the lease, close (the end of input releases it). It runs in
// the unix socket's loop (evloop.go); the next acquire may wait for the
// previous close to be seen, as a jsrun's does.
func BenchmarkLeaseConnection(b *testing.B) {
	s := startTestServer(b, func(c *Config) { c.PortRange = [2]int{} })
	buf := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		nc, err := net.Dial("unix", s.cfg.Paths.Socket)
		if err != nil {
			b.Fatal(err)
		}
		nc.Write([]byte(`{"cmd":"acquire","slots":1,"pid":1,"command":"true"}` + "\n"))
		n, err := nc.Read(buf)
		if err != nil || !bytes.Contains(buf[:n], []byte(`"lease"`)) {
			b.Fatalf("no lease: %q, %v", buf[:n], err)
		}
		nc.Close()
	}
}

// BenchmarkJobThroughput is W2 on the native protocol: one producer with up
// to 64 jobs outstanding, two workers echoing a 16-byte payload. With
// concurrency 1 a worker takes one job at a time (deputy's rule).
func BenchmarkJobThroughput(b *testing.B) {
	for _, tc := range []struct {
		conc    int
		journal bool
	}{{1, false}, {64, false}, {64, true}} {
		conc := tc.conc
		name := fmt.Sprintf("concurrency=%d", conc)
		if tc.journal {
			name += "/journal"
		}
		b.Run(name, func(b *testing.B) {
			s := startTestServer(b, func(c *Config) {
				c.PortRange = [2]int{}
				if tc.journal {
					c.Journal = filepath.Join(c.Paths.Dir, "journal.db")
				}
			})
			for w := 0; w < 2; w++ {
				wc := dialBench(b, s)
				fmt.Fprintf(wc.w, `{"cmd":"can_do","types":["echo"],"concurrency":%d}`+"\n", conc)
				wc.w.Flush()
				go func() {
					for {
						l, err := wc.r.ReadSlice('\n')
						if err != nil {
							return
						}
						var m struct {
							ID  json.RawMessage `json:"id"`
							Arg json.RawMessage `json:"arg"`
						}
						if json.Unmarshal(l, &m) != nil {
							return
						}
						fmt.Fprintf(wc.w, `{"cmd":"did","id":%s,"res":%s}`+"\n", m.ID, m.Arg)
						if wc.r.Buffered() == 0 {
							wc.w.Flush()
						}
					}
				}()
			}
			eventually(b, s, "two workers", func(st *loopState) bool { return len(st.jobs.workers) == 2 })
			p := dialBench(b, s)
			const window = 64
			sent, got := 0, 0
			payload := `"0123456789abcdef"`
			b.ReportAllocs()
			start := time.Now()
			for got < b.N {
				for sent < b.N && sent-got < window {
					p.w.WriteString(`{"cmd":"do","id":` + strconv.Itoa(sent) + `,"type":"echo","arg":` + payload + "}\n")
					sent++
				}
				p.w.Flush()
				l := p.line(b)
				if !bytes.Contains(l, []byte(payload)) {
					b.Fatalf("bad result %s", l)
				}
				got++
				for p.r.Buffered() > 0 && got < sent {
					l = p.line(b)
					if !bytes.Contains(l, []byte(payload)) {
						b.Fatalf("bad result %s", l)
					}
					got++
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}
