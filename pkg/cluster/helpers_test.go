package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/queue"
)

// testCluster is a set of in-process NATS nodes on loopback.
type testCluster struct {
	nodes []*Node
	dir   string
}

func (tc *testCluster) urls() []string {
	var out []string
	for _, n := range tc.nodes {
		out = append(out, n.ClientURL())
	}
	return out
}

func (tc *testCluster) shutdown() {
	for _, n := range tc.nodes {
		n.Shutdown()
	}
	_ = os.RemoveAll(tc.dir)
}

// startNodes starts n nodes (n > 1: a cluster on random loopback ports, all
// routes known up front) and waits for a JetStream leader and all peers.
func startNodes(n int) (*testCluster, error) {
	dir, err := os.MkdirTemp("", "js-cluster-test-")
	if err != nil {
		return nil, err
	}
	tc := &testCluster{dir: dir}
	var routes []string
	var ports []int
	if n > 1 {
		if ports, err = FreePorts(n); err != nil {
			return nil, err
		}
		for _, p := range ports {
			routes = append(routes, "127.0.0.1:"+strconv.Itoa(p))
		}
	}
	for i := 0; i < n; i++ {
		cfg := NodeConfig{Name: fmt.Sprintf("n%d", i+1), StoreDir: filepath.Join(dir, strconv.Itoa(i))}
		if n > 1 {
			cfg.ClusterName, cfg.ClusterPort, cfg.Routes = "js-test", ports[i], routes
		}
		node, err := StartNode(cfg)
		if err != nil {
			tc.shutdown()
			return nil, err
		}
		tc.nodes = append(tc.nodes, node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitJetStream(ctx, tc.nodes, n); err != nil {
		tc.shutdown()
		return nil, err
	}
	return tc, nil
}

// The tests share one 3-node cluster (each test its own job types) and one
// single node.
var (
	shared3, shared1 *testCluster
)

func TestMain(m *testing.M) {
	var err error
	if shared3, err = startNodes(3); err != nil {
		fmt.Fprintln(os.Stderr, "3-node cluster:", err)
		os.Exit(1)
	}
	if shared1, err = startNodes(1); err != nil {
		fmt.Fprintln(os.Stderr, "single node:", err)
		os.Exit(1)
	}
	code := m.Run()
	shared3.shutdown()
	shared1.shutdown()
	os.Exit(code)
}

// sink collects the outcomes routed to a jsd.
type sink struct {
	mu  sync.Mutex
	got []Result
	ch  chan Result
}

func newSink() *sink { return &sink{ch: make(chan Result, 1024)} }

func (s *sink) onResult(r Result) bool {
	s.mu.Lock()
	s.got = append(s.got, r)
	s.mu.Unlock()
	select {
	case s.ch <- r:
	default:
	}
	return true
}

func (s *sink) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.got {
		if r.ID == id {
			n++
		}
	}
	return n
}

func (s *sink) wait(t *testing.T, id string) Result {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		for _, r := range s.got {
			if r.ID == id {
				s.mu.Unlock()
				return r
			}
		}
		s.mu.Unlock()
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("no outcome for %s within 10 s", id)
		}
	}
}

// connect joins url(s) as jsd name; mut adjusts the config.
func connect(t *testing.T, urls []string, name string, mut func(*Config)) *Cluster {
	t.Helper()
	cfg := Config{URLs: urls, Name: name, PollInterval: 200 * time.Millisecond, Logf: t.Logf}
	if mut != nil {
		mut(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func submit(t *testing.T, c *Cluster, j Job) string {
	t.Helper()
	id, err := c.Submit(ctxT(t, 10*time.Second), j)
	if err != nil {
		t.Fatalf("submit %+v: %v", j, err)
	}
	return id
}

func fetch(t *testing.T, c *Cluster, typ string, max int) []*Delivery {
	t.Helper()
	ds, err := c.Fetch(ctxT(t, 10*time.Second), []string{typ}, max)
	if err != nil {
		t.Fatalf("fetch %s: %v", typ, err)
	}
	return ds
}

func done(res string) Outcome { return Outcome{State: queue.Done, Result: []byte(res)} }

// streamMsgs is how many messages a type's stream holds (queued + running).
func streamMsgs(t *testing.T, c *Cluster, typ string) uint64 {
	t.Helper()
	st, err := c.js.Stream(ctxT(t, 5*time.Second), jobStreamPre+token(typ))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// noMsgs waits until a type's stream holds no message: an acked message
// leaves a replicated work-queue stream shortly after the ack is confirmed
// (the consumer's and the stream's Raft groups apply it in turn).
func noMsgs(t *testing.T, c *Cluster, typ string) {
	t.Helper()
	waitFor(t, "no message left in the stream of "+typ, func() bool { return streamMsgs(t, c, typ) == 0 })
}

// waitFor polls cond (state on the servers) until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idLive reports whether an id has a record in the ids bucket.
func idLive(t *testing.T, c *Cluster, id string) bool {
	t.Helper()
	r, _, err := c.get(ctxT(t, 5*time.Second), token(id))
	if err != nil {
		t.Fatal(err)
	}
	return r != nil
}
