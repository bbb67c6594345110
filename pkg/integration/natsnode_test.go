package integration

// Real nats-server processes for the multi-host tests: built once per test
// binary from the nats-server module in go.mod (no network: the module is
// in the module cache), started as a JetStream cluster on loopback, and
// SIGKILLed and restarted on the same ports and store dirs.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/cluster"
)

// natsServerBin builds nats-server into binDir once (it goes with binDir).
var natsServerBin = sync.OnceValues(func() (string, error) {
	path := filepath.Join(binDir, "nats-server")
	cmd := exec.Command("go", "build", "-o", path, "github.com/nats-io/nats-server/v2")
	cmd.Env = append(os.Environ(), "GOPROXY=off") // the module is in go.sum and the module cache
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return path, nil
})

// natsCluster is n nats-server processes forming one JetStream cluster.
type natsCluster struct {
	t     testing.TB
	bin   string
	nodes []*natsNode
}

type natsNode struct {
	name                     string
	store, log               string
	port, clusterPort, mport int
	mu                       sync.Mutex
	p                        *proc // nil while down
}

// startNATSCluster starts n nodes (routes to each other, JetStream on, a
// monitoring port each) and waits until JetStream is ready on all of them.
func startNATSCluster(t testing.TB, n int) *natsCluster {
	t.Helper()
	bin, err := natsServerBin()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := cluster.FreePorts(3 * n)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &natsCluster{t: t, bin: bin}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("n%d", i+1)
		c.nodes = append(c.nodes, &natsNode{name: name, store: filepath.Join(dir, name), log: filepath.Join(dir, name+".log"),
			port: ports[3*i], clusterPort: ports[3*i+1], mport: ports[3*i+2]})
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.waitReady(60 * time.Second)
	return c
}

// urls is the client URLs of every node, comma-separated (jsd --nats).
func (c *natsCluster) urls() string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, "nats://127.0.0.1:"+strconv.Itoa(n.port))
	}
	return strings.Join(out, ",")
}

// start starts node i (again: same ports, same store dir).
func (c *natsCluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	var routes []string
	for _, o := range c.nodes {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(o.clusterPort))
	}
	p, err := spawn(c.t, os.Environ(), c.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-m", strconv.Itoa(n.mport),
		"-n", n.name, "-js", "-sd", n.store, "--cluster_name", "js",
		"-cluster", "nats://127.0.0.1:"+strconv.Itoa(n.clusterPort), "-routes", strings.Join(routes, ","),
		"-l", n.log)
	if err != nil {
		c.t.Fatalf("start nats-server %s: %v", n.name, err)
	}
	n.mu.Lock()
	n.p = p
	n.mu.Unlock()
}

// kill SIGKILLs node i and waits for it to be gone.
func (c *natsCluster) kill(i int) {
	n := c.nodes[i]
	n.mu.Lock()
	p := n.p
	n.p = nil
	n.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// alive fails the test for every node that exited by itself.
func (c *natsCluster) alive() {
	c.t.Helper()
	for _, n := range c.nodes {
		n.mu.Lock()
		p := n.p
		n.mu.Unlock()
		if p == nil {
			continue
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(n.log)
			c.t.Errorf("nats-server %s exited with status %d; its log ends:\n%s", n.name, p.code, tail(string(b), 3000))
		default:
		}
	}
}

// get reads a monitoring endpoint of node i into v; the HTTP status too.
func (c *natsCluster) get(i int, path string, v any) (int, error) {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://127.0.0.1:" + strconv.Itoa(c.nodes[i].mport) + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if v != nil {
		err = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode, err
}

type jszMeta struct {
	MetaCluster *struct {
		Leader      string `json:"leader"`
		ClusterSize int    `json:"cluster_size"`
		Replicas    []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
		} `json:"replicas"`
	} `json:"meta_cluster"`
}

// ready reports whether JetStream is ready on every node: each answers
// /healthz with 200 (JetStream current with its meta group, streams and
// consumers: a restarted node says 503 until it has caught up), and the meta
// leader sees all the others current.
func (c *natsCluster) ready() (bool, string) {
	leaders := map[string]bool{}
	for i, n := range c.nodes {
		code, err := c.get(i, "/healthz", nil)
		if err != nil || code != http.StatusOK {
			return false, fmt.Sprintf("%s: healthz %d %v", n.name, code, err)
		}
		var j jszMeta
		if _, err := c.get(i, "/jsz", &j); err != nil || j.MetaCluster == nil || j.MetaCluster.Leader == "" {
			return false, fmt.Sprintf("%s: no meta leader (%v)", n.name, err)
		}
		leaders[j.MetaCluster.Leader] = true
		if j.MetaCluster.Leader == n.name {
			if j.MetaCluster.ClusterSize != len(c.nodes) || len(j.MetaCluster.Replicas) != len(c.nodes)-1 {
				return false, fmt.Sprintf("leader %s: cluster size %d, %d followers", n.name, j.MetaCluster.ClusterSize, len(j.MetaCluster.Replicas))
			}
			for _, r := range j.MetaCluster.Replicas {
				if !r.Current || r.Offline {
					return false, fmt.Sprintf("leader %s: follower %s not current", n.name, r.Name)
				}
			}
		}
	}
	if len(leaders) != 1 {
		return false, fmt.Sprintf("the nodes disagree on the meta leader: %v", leaders)
	}
	return true, ""
}

// waitReady waits, at most within, until ready.
func (c *natsCluster) waitReady(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := c.ready()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.alive()
			c.t.Fatalf("NATS JetStream cluster not ready after %v: %s", within, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nodeOf is the index of the node the client named name (nats.Name, e.g.
// "jsd jsd-b") is connected to, -1 if none is.
func (c *natsCluster) nodeOf(name string) int {
	for i := range c.nodes {
		var connz struct {
			Conns []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		if _, err := c.get(i, "/connz?limit=1024", &connz); err != nil {
			continue
		}
		for _, cn := range connz.Conns {
			if cn.Name == name {
				return i
			}
		}
	}
	return -1
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
