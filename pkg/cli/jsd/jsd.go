// Package jsd is the jsd command line: flags, signals, exit codes.
package jsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/kongparse"
	"github.com/js-toolkit/js/pkg/cluster"
	"github.com/js-toolkit/js/pkg/rundir"
	"github.com/js-toolkit/js/pkg/server"
	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/version"
)

// Exit codes of jsd.
const (
	ExitOK      = 0
	ExitFailed  = 1  // could not start, or failed while serving
	ExitRunning = 3  // a live jsd already serves that directory
	ExitUsage   = 64 // bad flags
)

// CLI are jsd's flags.
type CLI struct {
	Slots      *int             `help:"Number of slots in the pool (1..65535). Default: the CPUs this process may run on." placeholder:"N"`
	Dir        string           `help:"Runtime directory (default: $JS_DIR, else $XDG_RUNTIME_DIR/js, else /tmp/js-$UID)." placeholder:"DIR"`
	Socket     string           `help:"Unix socket path (default: DIR/jsd.sock)." placeholder:"PATH"`
	Fifo       string           `help:"Jobserver FIFO path (default: DIR/jobserver.fifo)." placeholder:"PATH"`
	StatusFile string           `help:"Status file path (default: DIR/status.json). Keys a launcher wrote there are kept." placeholder:"PATH"`
	Timeout    *float64         `help:"Stop after this many seconds with no lease held or awaited, no job queued or running and no client connected (workers do not count). Must be > 0 when given." placeholder:"SECONDS"`
	Verbose    bool             `short:"v" help:"Print the metrics to stderr every 5 s (deputy's -v)."`
	Version    kong.VersionFlag `help:"Print the version and exit."`

	Host                 string `help:"Address of the TCP listener (native JSON lines, gloom frames and HTTP on one port). A non-loopback address needs --auth-token-file." default:"127.0.0.1" placeholder:"ADDR"`
	Port                 int    `help:"TCP port to listen on (e.g. 11746 for deputy's clients, 5533 for seamless'). Default: no TCP listener." placeholder:"PORT"`
	PortRange            []int  `help:"Listen on a random free TCP port in START..END (written to the status file as \"port\")." placeholder:"START END"`
	AuthTokenFile        string `help:"File holding the token every TCP connection and HTTP request must present (native: {\"cmd\":\"auth\",\"token\":...} first; HTTP: Authorization: Bearer)." placeholder:"FILE"`
	AllowUnauthenticated string `help:"Serve these legacy protocols, which cannot present a token, on a listener that needs one or is not on loopback: any of deputy,gloom,seamless." placeholder:"LIST"`
	GloomPorts           string `help:"Open two more TCP listeners speaking only gloom frames: submitters (masters) on the first port, workers (slaves) on the second, e.g. 9998,9999." placeholder:"MASTER,SLAVE"`
	TransformationType   string `help:"Job type of seamless-jobserver's /run-transformation." default:"transformation" placeholder:"TYPE"`

	Workers       *int    `help:"Start and supervise N (> 0) jsworker processes serving --worker-type with HANDLER (seamless-jobserver's --workers)." placeholder:"N"`
	WorkerType    string  `help:"Job type the --workers serve." placeholder:"TYPE"`
	DeputyRetries int     `help:"Requeues of a plain deputy job whose worker died (-1: unbounded, as deputy)." default:"-1" placeholder:"N"`
	ResultTTL     float64 `help:"Seconds a detached job's result is kept for 'jsctl wait' (with --nats: in the cluster, at least 1)." default:"3600" placeholder:"SECONDS"`
	Journal       string  `help:"Keep queued jobs and detached results in this file (bbolt, group-committed) so they survive a crash or restart of jsd. Default: in memory only." placeholder:"PATH"`

	Nats          string  `help:"Share the typed job queues with other jsds through NATS JetStream at these servers (comma-separated nats://host:port). Slots stay per host. Default: the queues are in this jsd's memory." placeholder:"URLS" group:"Multi-host (docs/scale.md)"`
	NatsEmbed     bool    `help:"Run a NATS server node (JetStream on) inside this jsd and use it; with --nats-routes the jsds form the NATS cluster themselves." group:"Multi-host (docs/scale.md)"`
	NatsListen    string  `help:"Client address of the embedded node." default:"127.0.0.1:0" placeholder:"HOST:PORT" group:"Multi-host (docs/scale.md)"`
	NatsCluster   string  `help:"Route address of the embedded node, where the other nodes connect (needed with --nats-routes; off loopback it needs a token)." placeholder:"HOST:PORT" group:"Multi-host (docs/scale.md)"`
	NatsRoutes    string  `help:"Route addresses of the other embedded nodes (comma-separated host:port)." placeholder:"LIST" group:"Multi-host (docs/scale.md)"`
	NatsStore     string  `help:"Directory of the embedded node's JetStream files (default: DIR/nats)." placeholder:"DIR" group:"Multi-host (docs/scale.md)"`
	NatsName      string  `help:"This jsd's name in the cluster: where its submitters' outcomes are routed, the embedded node's name. Unique per jsd (default: the host name)." placeholder:"NAME" group:"Multi-host (docs/scale.md)"`
	NatsTokenFile string  `help:"File holding the NATS token (client auth, and the routes' password of the embedded nodes). Default: the --auth-token-file token, if any." placeholder:"FILE" group:"Multi-host (docs/scale.md)"`
	NatsAckWait   float64 `help:"Seconds a job handed to a worker may go without news before another jsd may run it (a dead jsd); running jobs are renewed every third of it." default:"30" placeholder:"SECONDS" group:"Multi-host (docs/scale.md)"`

	Handler []string `arg:"" optional:"" passthrough:"partial" help:"With --workers: the handler command each worker runs per job (after --)."`
}

const description = `jsd owns this machine's slots and job queues: a GNU-make-compatible jobserver
FIFO that make, cargo, rustc, gcc and ninja share, slot leases for jsrun, and
typed priority queues that workers serve. It speaks a JSON-line protocol on
its unix socket and, with --port or --port-range, on TCP (native/deputy JSON
lines, gloom frames and HTTP on the same port).

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT or idle --timeout), 1 failed
(the status file says "failed" with the error), 3 another jsd already serves
the directory, 64 bad flags.`

// Main runs jsd and returns its exit code.
func Main(args []string, stdio cmdline.Stdio) int {
	var cli CLI
	_, code, done := kongparse.Parse("jsd", &cli, joinPortRange(args), stdio, ExitUsage,
		kong.Description(description), kong.Vars{"version": "jsd " + version.Version})
	if done {
		if code == ExitUsage {
			failStatusFile(args, "bad flags: run 'jsd --help'")
		}
		return code
	}
	cfg, err := cli.config(stdio)
	if err != nil {
		failStatusFile(args, err.Error())
		return cmdline.Report(stdio.Err, "jsd", err, ExitUsage)
	}
	return run(cfg, stdio)
}

// failStatusFile tells a launcher that jsd will not start: when the flags
// name a --status-file and no live jsd serves that directory, the file says
// "failed" with the error (keeping the launcher's keys), as it does for any
// other start-up failure.
func failStatusFile(args []string, why string) {
	path, dir := "", ""
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, f := range []struct {
			name string
			dst  *string
		}{{"--status-file", &path}, {"--dir", &dir}} {
			if a == f.name && i+1 < len(args) {
				*f.dst = args[i+1]
			} else if v, ok := strings.CutPrefix(a, f.name+"="); ok {
				*f.dst = v
			}
		}
	}
	if path == "" || rundir.LockHolder(rundir.For(rundir.Resolve(dir)).Lock) != 0 {
		return
	}
	sf, _ := status.OpenFile(path)
	sf.Write(map[string]any{"status": status.Failed, "error": why, "pid": os.Getpid()})
}

// joinPortRange turns seamless-jobserver's "--port-range START END" into
// one kong value "--port-range=START,END".
func joinPortRange(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			return append(out, args[i:]...)
		}
		if args[i] == "--port-range" && i+2 < len(args) {
			out = append(out, "--port-range="+args[i+1]+","+args[i+2])
			i += 2
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func usage(hint, format string, a ...any) error { return cmdline.Errorf(ExitUsage, hint, format, a...) }

func (cli *CLI) config(stdio cmdline.Stdio) (server.Config, error) {
	var cfg server.Config
	if len(cli.Handler) > 0 && cli.Handler[0] == "--" {
		cli.Handler = cli.Handler[1:]
	}
	// Pointers: an explicit --slots 0 or --timeout 0 is an error, not the
	// default.
	slots := runtime.NumCPU() // the affinity mask's CPUs on Linux
	if cli.Slots != nil {
		slots = *cli.Slots
	}
	if slots < 1 || slots > 65535 {
		return cfg, usage("the pool holds 1 to 65535 slots", "--slots %d is out of range", slots)
	}
	var timeout float64
	if cli.Timeout != nil {
		if timeout = *cli.Timeout; !(timeout > 0) {
			return cfg, usage("use a number of seconds > 0; leave it out to never stop", "--timeout %v must be > 0", timeout)
		}
	}
	if cli.Port != 0 && len(cli.PortRange) > 0 {
		return cfg, usage("give one of them", "--port and --port-range are mutually exclusive")
	}
	if cli.Port < 0 || cli.Port > 65535 {
		return cfg, usage("", "--port %d is outside 0..65535", cli.Port)
	}
	if len(cli.PortRange) > 0 {
		if len(cli.PortRange) != 2 {
			return cfg, usage("write --port-range START END", "--port-range needs two ports")
		}
		a, b := cli.PortRange[0], cli.PortRange[1]
		if a < 1 || b > 65535 || a > b {
			return cfg, usage("START <= END, both in 1..65535", "--port-range %d %d is invalid", a, b)
		}
		cfg.PortRange = [2]int{a, b}
	}
	cfg.Host, cfg.Port = cli.Host, cli.Port
	if cli.AuthTokenFile != "" {
		b, err := os.ReadFile(cli.AuthTokenFile)
		if err != nil {
			return cfg, usage("", "--auth-token-file: %v", err)
		}
		cfg.AuthToken = strings.TrimSpace(string(b))
		if cfg.AuthToken == "" {
			return cfg, usage("put a long random token in the file, e.g. head -c 32 /dev/urandom | base64", "--auth-token-file %s is empty", cli.AuthTokenFile)
		}
	}
	if cli.AllowUnauthenticated != "" {
		cfg.AllowUnauth = map[string]bool{}
		for _, p := range strings.Split(cli.AllowUnauthenticated, ",") {
			p = strings.TrimSpace(p)
			switch p {
			case "deputy", "gloom", "seamless":
				cfg.AllowUnauth[p] = true
			default:
				return cfg, usage("name any of deputy, gloom, seamless, separated by commas", "--allow-unauthenticated: unknown protocol %q", p)
			}
		}
	}
	if cli.GloomPorts != "" {
		m, s, ok := strings.Cut(cli.GloomPorts, ",")
		mp, err1 := strconv.Atoi(strings.TrimSpace(m))
		sp, err2 := strconv.Atoi(strings.TrimSpace(s))
		if !ok || err1 != nil || err2 != nil || mp < 1 || mp > 65535 || sp < 1 || sp > 65535 || mp == sp {
			return cfg, usage("write --gloom-ports MASTER,SLAVE, e.g. 9998,9999", "--gloom-ports %q is invalid", cli.GloomPorts)
		}
		cfg.GloomPorts = [2]int{mp, sp}
	}
	if cli.TransformationType == "" {
		return cfg, usage("", "--transformation-type must not be empty")
	}
	cfg.TransformationType = cli.TransformationType
	workers := 0
	if cli.Workers != nil {
		workers = *cli.Workers
		if workers <= 0 {
			return cfg, usage("leave --workers out to start none", "--workers %d must be > 0", workers)
		}
	}
	if workers > 0 && cli.WorkerType == "" {
		return cfg, usage("e.g. jsd --workers 4 --worker-type thumb -- ./thumb.sh", "--workers needs --worker-type")
	}
	if workers == 0 && (cli.WorkerType != "" || len(cli.Handler) > 0) {
		return cfg, usage("add --workers N to start workers", "--worker-type and a handler need --workers")
	}
	cfg.Workers, cfg.WorkerType, cfg.WorkerHandler = workers, cli.WorkerType, cli.Handler
	if cli.ResultTTL <= 0 {
		return cfg, usage("", "--result-ttl must be > 0")
	}
	cfg.ResultTTL = time.Duration(cli.ResultTTL * float64(time.Second))
	cfg.DeputyRetries = cli.DeputyRetries
	cfg.Journal = cli.Journal
	cfg.Verbose = cli.Verbose

	paths := rundir.For(rundir.Resolve(cli.Dir))
	sh, err := cli.shared(paths.Dir, cfg.AuthToken)
	if err != nil {
		return cfg, err
	}
	if sh != nil {
		if cfg.ResultTTL < time.Second {
			return cfg, usage("JetStream's shortest message TTL is 1 s", "--result-ttl must be at least 1 with --nats or --nats-embed")
		}
		sh.ResultTTL = cfg.ResultTTL // detached results wait in the cluster as long
	}
	cfg.Shared = sh
	if cli.Socket != "" {
		paths.Socket = cli.Socket
	}
	if cli.Fifo != "" {
		paths.FIFO = cli.Fifo
	}
	if cli.StatusFile != "" {
		paths.Status = cli.StatusFile
	}
	cfg.Paths = paths
	cfg.Slots = slots
	cfg.IdleTimeout = time.Duration(timeout * float64(time.Second))
	cfg.Version = version.Version
	cfg.Log = stdio.Err
	return cfg, nil
}

// shared reads the multi-host flags: nil when the queues stay in memory.
func (cli *CLI) shared(dir, authToken string) (*server.SharedConfig, error) {
	embedOnly := cli.NatsCluster != "" || cli.NatsRoutes != "" || cli.NatsStore != "" || cli.NatsListen != "127.0.0.1:0"
	if cli.Nats == "" && !cli.NatsEmbed {
		if embedOnly || cli.NatsName != "" || cli.NatsTokenFile != "" {
			return nil, usage("add --nats URLS to use a NATS cluster, or --nats-embed to run a node in jsd", "the --nats-* flags need --nats or --nats-embed")
		}
		return nil, nil
	}
	if !cli.NatsEmbed && embedOnly {
		return nil, usage("add --nats-embed, or leave out the --nats-listen/--nats-cluster/--nats-routes/--nats-store flags", "those flags configure the embedded NATS node")
	}
	if cli.Journal != "" {
		return nil, usage("leave out --journal: JetStream keeps the queued jobs (replicated) and the detached results", "--journal and --nats/--nats-embed do not go together")
	}
	if !(cli.NatsAckWait >= 1) {
		return nil, usage("e.g. --nats-ack-wait 30 (a dead jsd's running jobs come back after it)", "--nats-ack-wait must be at least 1 second")
	}
	sc := &server.SharedConfig{Name: cli.NatsName, Token: authToken, AckWait: time.Duration(cli.NatsAckWait * float64(time.Second))}
	if cli.NatsTokenFile != "" {
		b, err := os.ReadFile(cli.NatsTokenFile)
		if err != nil {
			return nil, usage("", "--nats-token-file: %v", err)
		}
		if sc.Token = strings.TrimSpace(string(b)); sc.Token == "" {
			return nil, usage("put a long random token in the file", "--nats-token-file %s is empty", cli.NatsTokenFile)
		}
	}
	for _, u := range strings.Split(cli.Nats, ",") {
		if u = strings.TrimSpace(u); u != "" {
			sc.URLs = append(sc.URLs, u)
		}
	}
	if sc.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, usage("name this jsd with --nats-name", "no host name: %v", err)
		}
		sc.Name = h
	}
	if !cli.NatsEmbed {
		return sc, nil
	}
	host, port, err := splitHostPort(cli.NatsListen, "--nats-listen")
	if err != nil {
		return nil, err
	}
	node := &cluster.NodeConfig{Name: sc.Name, Host: host, Port: port, Token: sc.Token, StoreDir: cli.NatsStore}
	if node.StoreDir == "" {
		node.StoreDir = filepath.Join(dir, "nats")
	}
	if port == 0 {
		node.Port = -1 // a random free port
	}
	if cli.NatsRoutes != "" && cli.NatsCluster == "" {
		return nil, usage("e.g. --nats-cluster 0.0.0.0:6222 --nats-routes h2:6222,h3:6222", "--nats-routes needs --nats-cluster")
	}
	if cli.NatsCluster != "" {
		ch, cp, err := splitHostPort(cli.NatsCluster, "--nats-cluster")
		if err != nil {
			return nil, err
		}
		if cp == 0 {
			return nil, usage("the other nodes' --nats-routes name it", "--nats-cluster needs a port")
		}
		node.ClusterName, node.ClusterHost, node.ClusterPort = "js", ch, cp
		for _, r := range strings.Split(cli.NatsRoutes, ",") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			if _, _, err := splitHostPort(r, "--nats-routes"); err != nil {
				return nil, err
			}
			node.Routes = append(node.Routes, r)
		}
	}
	if sc.Token == "" && (!isLoopback(node.Host) || (node.ClusterName != "" && !isLoopback(node.ClusterHost))) {
		return nil, usage("add --auth-token-file or --nats-token-file: the nodes and jsds authenticate with it", "an embedded NATS node off loopback needs a token")
	}
	sc.Embed = node
	return sc, nil
}

func splitHostPort(v, flag string) (string, int, error) {
	h, p, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil || n < 0 || n > 65535 {
		return "", 0, usage("write HOST:PORT, e.g. 127.0.0.1:4222", "%s %q is not HOST:PORT", flag, v)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return h, n, nil
}

func isLoopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// gcPercent is jsd's garbage-collector target unless $GOGC says otherwise:
// a daemon that may hold a million queued jobs trades a little CPU for a
// heap that grows half as much past its live data (README: Performance).
const gcPercent = 50

func run(cfg server.Config, stdio cmdline.Stdio) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)

	srv, err := server.Start(cfg)
	if err != nil {
		var locked *rundir.ErrLocked
		if errors.As(err, &locked) {
			return cmdline.Report(stdio.Err, "jsd", cmdline.WithHint(err, ExitRunning,
				fmt.Sprintf("use that jsd (JS_DIR=%s), stop it with 'jsctl shutdown', or pick another --dir", cfg.Paths.Dir)), ExitRunning)
		}
		var ue *server.UsageError
		if errors.As(err, &ue) {
			return cmdline.Report(stdio.Err, "jsd", cmdline.WithHint(err, ExitUsage, ue.Hint), ExitUsage)
		}
		return cmdline.Report(stdio.Err, "jsd", err, ExitFailed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintln(stdio.Err, "jsd: stopping: no new slots or jobs; waiting for the leases held now (signal again to stop at once)")
				cancel()
				continue
			}
			srv.Abort()
		}
	}()
	if err := srv.Run(ctx); err != nil {
		return cmdline.Report(stdio.Err, "jsd", err, ExitFailed)
	}
	return ExitOK
}
