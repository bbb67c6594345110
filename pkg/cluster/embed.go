package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NodeConfig is a NATS server node run inside this process (the tests, and
// `jsd --nats-embed`): JetStream on, optionally clustered with routes.
type NodeConfig struct {
	Name     string // server name, unique in the cluster (required when clustered)
	Host     string // client listener; default 127.0.0.1
	Port     int    // 0: a random free port
	StoreDir string // JetStream's files (required)
	// Token: NATS token auth on the client port, and the route password.
	// Required when Host or ClusterHost is not loopback.
	Token string
	// Cluster: ClusterName with a ClusterPort (or -1: random) forms a
	// cluster with Routes (host:port of the other nodes' cluster ports).
	ClusterName string
	ClusterHost string // default Host
	ClusterPort int
	Routes      []string
	// MaxPayload of a message; default 8 MiB (NATS's 1 MiB is smaller than
	// the jobs jsd accepts; JetStream allows up to 64 MiB).
	MaxPayload int32
	// Logs: the server's own log to Logf (nil: silent).
	Logf func(format string, args ...any)
}

// Node is a running in-process NATS server.
type Node struct{ s *server.Server }

// StartNode starts a node and waits until it accepts connections.
func StartNode(cfg NodeConfig) (*Node, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("cluster: a node needs a StoreDir")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ClusterHost == "" {
		cfg.ClusterHost = cfg.Host
	}
	if cfg.Token == "" && (!loopback(cfg.Host) || (cfg.ClusterName != "" && !loopback(cfg.ClusterHost))) {
		return nil, errors.New("cluster: an embedded NATS node off loopback needs a token")
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 8 << 20
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:         cfg.Name,
		Host:               cfg.Host,
		Port:               port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		MaxPayload:         cfg.MaxPayload,
		NoSigs:             true,
		NoLog:              cfg.Logf == nil,
		Authorization:      cfg.Token,
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.ClusterName != "" {
		opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: cfg.ClusterHost, Port: cfg.ClusterPort}
		if cfg.Token != "" {
			opts.Cluster.Username, opts.Cluster.Password = "js", cfg.Token
		}
		for _, r := range cfg.Routes {
			u := &url.URL{Scheme: "nats-route", Host: r}
			if cfg.Token != "" {
				u.User = url.UserPassword("js", cfg.Token)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: NATS node: %w", err)
	}
	if cfg.Logf != nil {
		s.SetLoggerV2(logger{cfg.Logf}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("cluster: NATS node did not start listening within 30 s")
	}
	return &Node{s: s}, nil
}

// ClientURL is the node's client URL (nats://host:port).
func (n *Node) ClientURL() string { return n.s.ClientURL() }

// ClusterAddr is the node's route listener ("" unclustered).
func (n *Node) ClusterAddr() string {
	if a := n.s.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Shutdown stops the node.
func (n *Node) Shutdown() {
	n.s.Shutdown()
	n.s.WaitForShutdown()
}

// Server is the nats-server itself.
func (n *Node) Server() *server.Server { return n.s }

// WaitJetStream waits until the nodes' JetStream is ready: a meta leader
// among them that sees at least peers peers online, and every node current
// with it. It polls the nodes' own state (no network).
func WaitJetStream(ctx context.Context, nodes []*Node, peers int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		leader, current := false, true
		for _, n := range nodes {
			if !n.s.JetStreamEnabled() {
				current = false
				continue
			}
			if !n.s.JetStreamIsClustered() {
				leader = leader || peers <= 1 // a lone server is its own leader
				continue
			}
			if n.s.JetStreamIsLeader() && len(n.s.JetStreamClusterPeers()) >= peers {
				leader = true
			}
			if !n.s.JetStreamIsCurrent() {
				current = false
			}
		}
		if leader && current {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: no JetStream leader with %d peers: %w", peers, ctx.Err())
		case <-tick.C:
		}
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// FreePorts reserves n free loopback TCP ports by listening and closing
// (for a test cluster whose routes must be known before any node starts).
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		_, p, _ := net.SplitHostPort(l.Addr().String())
		port, _ := strconv.Atoi(p)
		out = append(out, port)
	}
	return out, nil
}

type logger struct{ f func(string, ...any) }

func (l logger) Noticef(format string, v ...any) { l.f("nats: "+format, v...) }
func (l logger) Warnf(format string, v ...any)   { l.f("nats warning: "+format, v...) }
func (l logger) Fatalf(format string, v ...any)  { l.f("nats fatal: "+format, v...) }
func (l logger) Errorf(format string, v ...any)  { l.f("nats error: "+format, v...) }
func (l logger) Debugf(format string, v ...any)  {}
func (l logger) Tracef(format string, v ...any)  {}
