// Package jsd is the jsd command line: flags, signals, exit codes.
package jsd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/rundir"
	"github.com/js-toolkit/js/pkg/server"
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
	Slots      int              `help:"Number of slots in the pool (1..65535). Default: the CPUs this process may run on." placeholder:"N"`
	Dir        string           `help:"Runtime directory (default: $JS_DIR, else $XDG_RUNTIME_DIR/js, else /tmp/js-$UID)." placeholder:"DIR"`
	Socket     string           `help:"Unix socket path (default: DIR/jsd.sock)." placeholder:"PATH"`
	Fifo       string           `help:"Jobserver FIFO path (default: DIR/jobserver.fifo)." placeholder:"PATH"`
	StatusFile string           `help:"Status file path (default: DIR/status.json). Keys a launcher wrote there are kept." placeholder:"PATH"`
	Timeout    float64          `help:"Stop after this many seconds with no lease held or awaited and no client connected (0: never)." placeholder:"SECONDS"`
	Version    kong.VersionFlag `help:"Print the version and exit."`
}

const description = `jsd owns this machine's slots: a GNU-make-compatible jobserver FIFO that
make, cargo, rustc, gcc and ninja share, and slot leases for jsrun.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT or idle --timeout), 1 failed,
3 another jsd already serves the directory, 64 bad flags.`

// Main runs jsd and returns its exit code.
func Main(args []string, stdio cmdline.Stdio) int {
	var cli CLI
	_, code, done := cmdline.Parse("jsd", &cli, args, stdio, ExitUsage,
		kong.Description(description), kong.Vars{"version": "jsd " + version.Version})
	if done {
		return code
	}
	if cli.Slots == 0 {
		cli.Slots = runtime.NumCPU() // the affinity mask's CPUs on Linux
	}
	if cli.Slots < 1 || cli.Slots > 65535 {
		return cmdline.Report(stdio.Err, "jsd", cmdline.Errorf(ExitUsage, "the pool holds 1 to 65535 slots", "--slots %d is out of range", cli.Slots), ExitUsage)
	}
	if cli.Timeout < 0 {
		return cmdline.Report(stdio.Err, "jsd", cmdline.Errorf(ExitUsage, "use a number of seconds > 0, or 0 to never stop", "--timeout %v must not be negative", cli.Timeout), ExitUsage)
	}
	paths := rundir.For(rundir.Resolve(cli.Dir))
	if cli.Socket != "" {
		paths.Socket = cli.Socket
	}
	if cli.Fifo != "" {
		paths.FIFO = cli.Fifo
	}
	if cli.StatusFile != "" {
		paths.Status = cli.StatusFile
	}
	cfg := server.Config{
		Paths:       paths,
		Slots:       cli.Slots,
		IdleTimeout: time.Duration(cli.Timeout * float64(time.Second)),
		Version:     version.Version,
		Log:         stdio.Err,
	}
	return run(cfg, stdio)
}

func run(cfg server.Config, stdio cmdline.Stdio) int {
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
		return cmdline.Report(stdio.Err, "jsd", err, ExitFailed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintln(stdio.Err, "jsd: stopping: no new slots; waiting for the leases held now (signal again to stop at once)")
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
