//go:build soak

package integration

// The soak (issue 5, "Load"): 1,000,000 jobs through one jsd that also
// holds 5,000 connected idle workers (of a type that gets no jobs) and 8
// busy ones (raw connections answering at once). Every result is accounted
// for, and jsd's VmRSS once the queue has drained comes back to what it was
// before the load (memory is given back), within a small margin.
//
//	go test -tags soak -run Soak -timeout 30m -v ./pkg/integration/   (or scripts/chaos --soak)
//
// JS_SOAK_JOBS overrides the number of jobs (for a quick try).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/wire"
)

func TestSoak(t *testing.T) {
	jobs := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("JS_SOAK_JOBS")); err == nil && v > 0 {
		jobs = v
	}
	const (
		idleWorkers = 5000
		busyWorkers = 8
		busyCap     = 256  // jobs a busy worker takes at once
		submitters  = 4    // connections submitting
		window      = 4000 // jobs a submitter has in flight
	)
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	if lim.Cur < idleWorkers+1000 {
		t.Skipf("RLIMIT_NOFILE %d is too low for %d idle workers", lim.Cur, idleWorkers)
	}
	d := startJSD(t)
	pid := d.pid()
	sock := filepath.Join(d.dir, "jsd.sock")
	dial := func() net.Conn {
		for retry := 0; ; retry++ {
			nc, err := net.Dial("unix", sock)
			if err == nil {
				return nc
			}
			if !errors.Is(err, syscall.EAGAIN) || retry > 10000 {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond) // the backlog is full
		}
	}
	rest := rssKB(pid)

	// 5,000 idle workers: registered, never sent a job.
	idle := make([]net.Conn, 0, idleWorkers)
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < idleWorkers; i++ {
		nc := dial()
		idle = append(idle, nc)
		if _, err := nc.Write([]byte(`{"cmd":"can_do","types":["soak-idle"]}` + "\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	// 8 busy workers answering every job at once (res = arg).
	var answered atomic.Int64
	for i := 0; i < busyWorkers; i++ {
		nc := dial()
		defer nc.Close()
		fmt.Fprintf(nc, `{"cmd":"can_do","types":["soak"],"concurrency":%d}`+"\r\n", busyCap)
		go func() {
			lr := wire.NewLineReader(nc, wire.MaxLine)
			br := lr.Reader()
			w := bufio.NewWriterSize(nc, 64<<10)
			for {
				line, err := lr.Next()
				if err != nil {
					return
				}
				var m wire.Msg
				if json.Unmarshal(line, &m) != nil || m.Cmd != wire.CmdDo {
					continue
				}
				w.WriteString(`{"cmd":"did","id":`)
				w.Write(m.ID)
				w.WriteString(`,"res":`)
				w.Write(m.Arg)
				w.WriteString("}\r\n")
				answered.Add(1)
				if br.Buffered() == 0 {
					if w.Flush() != nil {
						return
					}
				}
			}
		}()
	}
	waitFor(t, 60*time.Second, "every worker to register", func() bool {
		return metricInt(d.metrics(), "workers") == idleWorkers+busyWorkers
	})
	time.Sleep(2 * time.Second)
	before := rssKB(pid)
	t.Logf("jsd VmRSS: %d KiB at rest, %d KiB with %d idle and %d busy workers connected", rest, before, idleWorkers, busyWorkers)

	// The load: submitters with a window of jobs in flight each.
	rss := watchRSS(pid)
	defer rss.close()
	var wg sync.WaitGroup
	type tally struct {
		done, bad, dup int
		err            error
	}
	tallies := make([]tally, submitters)
	start := time.Now()
	per := jobs / submitters
	for s := 0; s < submitters; s++ {
		n := per
		if s == submitters-1 {
			n = jobs - per*(submitters-1)
		}
		nc := dial()
		defer nc.Close()
		credit := make(chan struct{}, window)
		for i := 0; i < window; i++ {
			credit <- struct{}{}
		}
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			w := bufio.NewWriterSize(nc, 64<<10)
			base := s * per
			for i := 0; i < n; i++ {
				select {
				case <-credit:
				default:
					if w.Flush() != nil {
						return
					}
					<-credit
				}
				id := strconv.Itoa(base + i)
				w.WriteString(`{"cmd":"do","id":` + id + `,"type":"soak","arg":` + id + "}\r\n")
			}
			w.Flush()
		}()
		go func() { // reader: every result exactly once, and the right one
			defer wg.Done()
			tl := &tallies[s]
			seen := make([]bool, n)
			lr := wire.NewLineReader(nc, wire.MaxLine)
			base := s * per
			for tl.done < n {
				nc.SetReadDeadline(time.Now().Add(60 * time.Second))
				line, err := lr.Next()
				if err != nil {
					tl.err = fmt.Errorf("after %d results: %w", tl.done, err)
					return
				}
				var m wire.Msg
				if json.Unmarshal(line, &m) != nil || m.Cmd != wire.CmdDid {
					tl.err = fmt.Errorf("unexpected line %q", line)
					return
				}
				id, err := strconv.Atoi(string(m.ID))
				k := id - base
				if err != nil || k < 0 || k >= n || string(m.Res) != string(m.ID) {
					tl.bad++
					continue
				}
				if seen[k] {
					tl.dup++
					continue
				}
				seen[k] = true
				tl.done++
				credit <- struct{}{}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	peak := rss.peakKB()
	total := 0
	for s, tl := range tallies {
		total += tl.done
		if tl.err != nil || tl.bad > 0 || tl.dup > 0 {
			t.Errorf("submitter %d: %d results, %d wrong, %d twice, error %v", s, tl.done, tl.bad, tl.dup, tl.err)
		}
	}
	if total != jobs {
		t.Errorf("%d results for %d jobs", total, jobs)
	}
	m := d.metrics()
	if metricInt(m, "jobs_added") != jobs || metricInt(m, "jobs_done") != jobs || metricInt(m, "jobs_queued") != 0 ||
		metricInt(m, "jobs_running") != 0 || metricInt(m, "workers") != idleWorkers+busyWorkers || answered.Load() != int64(jobs) {
		t.Errorf("after the load: workers answered %d; metrics %v", answered.Load(), m)
	}
	s := d.status()
	for _, w := range s.Workers {
		if w.Busy != 0 {
			t.Errorf("worker %d still busy: %+v", w.ID, w)
		}
	}
	drained := rssKB(pid)
	// Memory given back: within 3 minutes (the Go runtime forces a GC every
	// 2), VmRSS returns to within 10% (at least 16 MiB) of what it was
	// before the load, as the runtime's scavenger returns freed pages (no
	// forced GC from outside).
	margin := max(before/10, 16<<10)
	var after int
	settle := time.Now()
	for {
		after = rssKB(pid)
		if after <= before+margin || time.Since(settle) > 3*time.Minute {
			break
		}
		if k := int(time.Since(settle) / time.Second); k%15 == 0 {
			t.Logf("%ds after the drain: VmRSS %d KiB", k, after)
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d jobs in %v: %.0f jobs/s; jsd VmRSS before %d KiB, peak %d KiB, at drain %d KiB, after %v %d KiB (margin %d KiB)",
		jobs, elapsed.Round(time.Millisecond), float64(jobs)/elapsed.Seconds(), before, peak, drained,
		time.Since(settle).Round(time.Second), after, margin)
	if after > before+margin {
		t.Errorf("jsd kept %d KiB more than before the load 3 minutes after the queue drained (before %d KiB, after %d KiB)",
			after-before, before, after)
	}
}
