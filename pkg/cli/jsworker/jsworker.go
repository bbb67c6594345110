// Package jsworker is the jsworker command line: serve job types from jsd.
package jsworker

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/kongparse"
	"github.com/js-toolkit/js/pkg/client"
	"github.com/js-toolkit/js/pkg/rundir"
	"github.com/js-toolkit/js/pkg/version"
	"github.com/js-toolkit/js/pkg/worker"
)

// Exit codes of jsworker.
const (
	ExitOK     = 0  // drained after SIGTERM/SIGINT
	ExitFailed = 1  // refused by jsd (e.g. wrong token)
	ExitUsage  = 64 // bad flags
)

// CLI are jsworker's flags.
type CLI struct {
	Type          []string         `required:"" help:"Job type to serve (repeatable)." placeholder:"T"`
	Concurrency   int              `help:"Jobs run at once." default:"1" placeholder:"N"`
	Dir           string           `help:"jsd's runtime directory (default: $JS_DIR, else $XDG_RUNTIME_DIR/js, else /tmp/js-$UID)." placeholder:"DIR"`
	Socket        string           `help:"jsd's unix socket, when jsd was started with --socket (default: DIR/jsd.sock)." placeholder:"PATH"`
	Connect       string           `help:"Connect to jsd's TCP port instead of its unix socket." placeholder:"HOST:PORT"`
	AuthTokenFile string           `help:"Token file for --connect, when jsd asks for one." placeholder:"FILE"`
	Grace         float64          `help:"On cancel: SIGTERM to the handler's process group, then SIGKILL after this many seconds." default:"10" placeholder:"SECONDS"`
	Version       kong.VersionFlag `help:"Print the version and exit."`

	Handler []string `arg:"" optional:"" passthrough:"" help:"The handler run per job (after --). Without one, each job's own command line (from jsrun --type) is run."`
}

const description = `jsworker serves job types from jsd: per job it runs HANDLER with the job's
arg on stdin (a JSON string as its raw text, anything else as JSON) and
JS_JOB_ID and JS_JOB_TYPE in its environment; its stdout becomes the result;
a non-zero exit fails the job with stderr's tail as the error.

Jobs made by 'jsrun --type T -- CMD ARGS' carry a command line: with a
HANDLER it runs HANDLER ARGS... CMD ARGS; with none it runs CMD ARGS itself
and returns its exit status, stdout and stderr. A worker without a handler
runs whatever command lines it is sent: that is remote execution for anyone
who may submit jobs to jsd.

It reconnects when jsd restarts; SIGTERM or SIGINT drains it: it finishes the
jobs it runs, takes no new ones, and exits 0.

Exit codes: 0 drained, 1 refused by jsd (e.g. wrong token), 64 usage.`

// Main runs jsworker and returns its exit code.
func Main(args []string, stdio cmdline.Stdio) int {
	var cli CLI
	_, code, done := kongparse.Parse("jsworker", &cli, args, stdio, ExitUsage,
		kong.Description(description), kong.Vars{"version": "jsworker " + version.Version})
	if done {
		return code
	}
	if len(cli.Handler) > 0 && cli.Handler[0] == "--" {
		cli.Handler = cli.Handler[1:]
	}
	for _, t := range cli.Type {
		if strings.TrimSpace(t) == "" {
			return cmdline.Report(stdio.Err, "jsworker", cmdline.Errorf(ExitUsage, "", "--type must not be empty"), ExitUsage)
		}
	}
	if cli.Concurrency < 1 {
		return cmdline.Report(stdio.Err, "jsworker", cmdline.Errorf(ExitUsage, "", "--concurrency %d must be at least 1", cli.Concurrency), ExitUsage)
	}
	token := ""
	if cli.AuthTokenFile != "" {
		b, err := os.ReadFile(cli.AuthTokenFile)
		if err != nil {
			return cmdline.Report(stdio.Err, "jsworker", cmdline.Errorf(ExitUsage, "", "--auth-token-file: %v", err), ExitUsage)
		}
		token = strings.TrimSpace(string(b))
	}
	socket := rundir.For(rundir.Resolve(cli.Dir)).Socket
	if cli.Socket != "" {
		socket = cli.Socket
	}
	dial := func() (*client.Conn, error) {
		if cli.Connect != "" {
			return dialTCP(cli.Connect, token)
		}
		return client.Dial(socket)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := worker.Run(ctx, worker.Config{
		Types: cli.Type, Concurrency: cli.Concurrency, Handler: cli.Handler,
		Grace: time.Duration(cli.Grace * float64(time.Second)), Dial: dial,
		Log: log.New(stdio.Err, "jsworker: ", 0),
	})
	if err != nil {
		return cmdline.Report(stdio.Err, "jsworker", err, ExitFailed)
	}
	return ExitOK
}

// dialTCP connects to jsd's TCP port and, with a token, presents it first.
func dialTCP(addr, token string) (*client.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (tcp %s)", client.ErrNoDaemon, addr)
		}
		return nil, fmt.Errorf("connect to jsd at %s: %w", addr, err)
	}
	return client.NewConn(nc, token)
}
