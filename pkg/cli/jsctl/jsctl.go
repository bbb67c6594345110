// Package jsctl is the jsctl command line: look inside jsd and steer it.
package jsctl

import (
	"errors"
	"fmt"

	"github.com/alecthomas/kong"
	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/kongparse"
	"github.com/js-toolkit/js/pkg/client"
	"github.com/js-toolkit/js/pkg/rundir"
	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/version"
	"github.com/js-toolkit/js/pkg/wire"
)

// Exit codes of jsctl's own conditions.
const (
	ExitOK          = 0
	ExitFailed      = 1  // the request failed (error reply)
	ExitUsage       = 64 // bad flags or arguments
	ExitUnavailable = 69 // no jsd reachable, or it refused us at its open-file limit
	ExitTimeout     = 75 // wait, wait-ready: not before --timeout
)

// Globals are the flags every subcommand takes.
type Globals struct {
	Dir     string           `help:"jsd's runtime directory (default: $JS_DIR, else $XDG_RUNTIME_DIR/js, else /tmp/js-$UID)." placeholder:"DIR"`
	Socket  string           `help:"jsd's unix socket (default: DIR/jsd.sock)." placeholder:"PATH"`
	Color   string           `help:"Colour the output: auto (when stdout is a terminal and NO_COLOR is not set), always, never." enum:"auto,always,never" default:"auto" placeholder:"WHEN"`
	Version kong.VersionFlag `help:"Print the version and exit."`
}

// CLI is jsctl's command tree.
type CLI struct {
	Globals
	Status    StatusCmd    `cmd:"" default:"withargs" help:"Show jsd at a glance: slots, leases, queues, workers, recent jobs (the default command); --watch keeps it live."`
	WaitReady WaitReadyCmd `cmd:"" name:"wait-ready" help:"Wait until jsd's status file says running (for CI scripts and launchers)."`
	Jobs      JobsCmd      `cmd:"" help:"List jobs (queued, running, and the recent ones that ended)."`
	Workers   WorkersCmd   `cmd:"" help:"List the connected workers."`
	Wait      WaitCmd      `cmd:"" help:"Wait for jobs to end, print their output, exit with the first failing job's status."`
	Cancel    CancelCmd    `cmd:"" help:"Cancel queued or running jobs."`
	Metrics   MetricsCmd   `cmd:"" help:"Print jsd's counters."`
	Resize    ResizeCmd    `cmd:"" help:"Change the number of slots at runtime (shrinking never revokes a running lease)."`
	Shutdown  ShutdownCmd  `cmd:"" help:"Stop jsd: it grants nothing new and exits once the leases held now are released."`
}

const description = `jsctl shows what jsd is doing and steers it. Every read command takes
--json (fields: docs/status.md). Colour only on a terminal without NO_COLOR.

Exit codes: 0 ok, 1 the request failed (wait-ready: jsd failed), 64 usage,
69 no jsd reachable (or it is at its open-file limit), 75 not before --timeout (wait, wait-ready); jsctl wait
exits with the job's status (a command line's own, 76 lost, 77 cancelled).`

// env is what every subcommand's Run gets.
type env struct {
	stdio cmdline.Stdio
	g     *Globals
}

func (e *env) paths() rundir.Paths {
	p := rundir.For(rundir.Resolve(e.g.Dir))
	if e.g.Socket != "" {
		p.Socket = e.g.Socket
	}
	return p
}

// dial connects to jsd, with a hint when there is none.
func (e *env) dial() (*client.Conn, error) {
	p := e.paths()
	c, err := client.Dial(p.Socket)
	if err != nil {
		if errors.Is(err, client.ErrNoDaemon) {
			hint := fmt.Sprintf("start one with 'jsd --dir %s &' (or run any 'jsrun -- CMD', which starts one), or point JS_DIR at the directory of a running jsd", p.Dir)
			if d, err := status.Read(p.Status); err == nil {
				switch {
				case d.Status == status.Failed:
					hint = fmt.Sprintf("the last jsd there failed: %s; fix that, then start one with 'jsd --dir %s &'", d.Error, p.Dir)
				case d.Status == status.Running && !procAlive(d.PID, d.StartedAt):
					hint = fmt.Sprintf("%s says pid %d serves it, but that process is gone (killed?); start a new one with 'jsd --dir %s &'", p.Status, d.PID, p.Dir)
				}
			}
			if pid := rundir.LockHolder(p.Lock); pid > 0 {
				hint = fmt.Sprintf("jsd pid %d holds %s but does not answer on %s: is --socket set differently?", pid, p.Dir, p.Socket)
			}
			return nil, cmdline.WithHint(fmt.Errorf("no jsd is running in %s", p.Dir), ExitUnavailable, hint)
		}
		return nil, cmdline.WithHint(err, ExitUnavailable, "")
	}
	return c, nil
}

// Main runs jsctl and returns its exit code.
func Main(args []string, stdio cmdline.Stdio) int {
	var cli CLI
	ctx, code, done := kongparse.Parse("jsctl", &cli, args, stdio, ExitUsage,
		kong.Description(description), kong.Vars{"version": "jsctl " + version.Version})
	if done {
		return code
	}
	e := &env{stdio: stdio, g: &cli.Globals}
	if err := ctx.Run(e); err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			return int(ex)
		}
		if client.IsCode(err, wire.CodeFDLimit) {
			err = cmdline.WithHint(err, ExitUnavailable, client.FDLimitHint)
		}
		return cmdline.Report(stdio.Err, "jsctl", err, ExitFailed)
	}
	return ExitOK
}

// exitError ends jsctl with a code and no message (the output said it all).
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// ShutdownCmd stops jsd.
type ShutdownCmd struct {
	Drain bool `help:"Take no new jobs but finish the queued and running ones first."`
}

// Run implements the command.
func (c *ShutdownCmd) Run(e *env) error {
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Shutdown(c.Drain)
}
