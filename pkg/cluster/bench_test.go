package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPipeline measures jobs/s through submit -> fetch -> complete ->
// outcome at the origin, on one node and on the 3-node cluster (R3), with
// the submitting jsd and the working jsd on different nodes:
//
//	go test -run '^$' -bench Pipeline -benchtime 3000x ./pkg/cluster/
func BenchmarkPipeline(b *testing.B) {
	for _, tc := range []struct {
		name  string
		nodes *testCluster
	}{{"nodes=1", shared1}, {"nodes=3", shared3}} {
		for _, conc := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/conc=%d", tc.name, conc), func(b *testing.B) {
				benchPipeline(b, tc.nodes, conc)
			})
		}
	}
}

var benchRun atomic.Int32

func benchPipeline(b *testing.B, tc *testCluster, conc int) {
	urls := tc.urls()
	subURL, workURL := urls[:1], urls[len(urls)-1:]
	typ := fmt.Sprintf("bench%d", benchRun.Add(1))
	var ended atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	cfgSub := Config{URLs: subURL, Name: "bench-sub", OnResult: func(Result) bool {
		if ended.Add(1) == n {
			close(all)
		}
		return true
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sub, err := Connect(ctx, cfgSub)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	work, err := Connect(ctx, Config{URLs: workURL, Name: "bench-work"})
	if err != nil {
		b.Fatal(err)
	}
	defer work.Close()
	if _, err := sub.queue(ctx, typ); err != nil { // stream set up outside the clock
		b.Fatal(err)
	}
	if _, err := work.queue(ctx, typ); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ { // submitters
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= n {
				if _, err := sub.Submit(ctx, Job{Type: typ, Arg: []byte(`{"x":1}`)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wctx, stop := context.WithCancel(ctx)
	for i := 0; i < conc; i++ { // workers: fetch a batch, complete each
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				ds, err := work.Fetch(wctx, []string{typ}, 8)
				if err != nil {
					return
				}
				for _, d := range ds {
					if err := work.Complete(ctx, d, done(`"r"`)); err != nil {
						b.Error(err)
					}
				}
			}
		}()
	}
	select {
	case <-all:
	case <-ctx.Done():
		b.Fatalf("%d of %d ended", ended.Load(), n)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	stop()
	wg.Wait()
	b.ReportMetric(float64(n)/el.Seconds(), "jobs/s")
	// CPU of the whole process (servers and both jsds) per job.
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-us/job")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIDsBucketWrites measures the compare-and-set writes the ids
// bucket (one Raft group for the whole cluster) takes per second: every job
// costs five of them, so this is the cluster's ceiling in jobs/s x 5.
func BenchmarkIDsBucketWrites(b *testing.B) {
	for _, tc := range []struct {
		name  string
		nodes *testCluster
	}{{"nodes=1", shared1}, {"nodes=3", shared3}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			c, err := Connect(ctx, Config{URLs: tc.nodes.urls()[:1], Name: "bench-kv"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			n := int64(b.N)
			var next atomic.Int64
			var wg sync.WaitGroup
			run := benchRun.Add(1)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for i := 0; i < 64; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := next.Add(1); k <= n; k = next.Add(1) {
						r := record{ID: fmt.Sprint(k), Nonce: "n", State: stQueued}
						key := fmt.Sprintf("bench%d-%d", run, k)
						rev, err := c.cas(ctx, key, &r, 0, time.Minute)
						if err != nil {
							b.Error(err)
							return
						}
						r.State = stRunning
						if _, err := c.cas(ctx, key, &r, rev, time.Minute); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el, cpu := time.Since(start), cpuTime()-cpu0
			b.ReportMetric(float64(2*n)/el.Seconds(), "writes/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(2*n), "cpu-us/write")
		})
	}
}
