// Package jsrun is the jsrun command line: run a command in a slot of the
// machine's pool, as make -j would, and exit with its status.
package jsrun

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/outcome"
	"github.com/js-toolkit/js/pkg/jobserver"
	"github.com/js-toolkit/js/pkg/launch"
	"github.com/js-toolkit/js/pkg/nesting"
	"github.com/js-toolkit/js/pkg/rundir"
	"github.com/js-toolkit/js/pkg/version"
)

// Exit codes of jsrun's own conditions; otherwise jsrun exits with the
// command's status (128+N when signal N killed it).
const (
	ExitUsage       = 64                    // bad flags or arguments
	ExitRejected    = 65                    // --type: jsd refused the job (duplicate live id, bad id)
	ExitUnavailable = 69                    // no jobserver reachable (no jsd, no MAKEFLAGS pool, autostart off or failed; jsd at its fd limit)
	ExitInternal    = 70                    // an unexpected error in jsrun
	ExitBlocked     = 75                    // no slot before --timeout; nothing was run (--type: not done in time, cancelled)
	ExitLost        = outcome.ExitLost      // --type: the job was lost (its worker died, retries spent)
	ExitCancelled   = outcome.ExitCancelled // --type: the job was cancelled (e.g. jsctl cancel)
	ExitCannotRun   = 126                   // the command exists but could not be run
	ExitNotFound    = 127                   // the command was not found
)

// CLI are jsrun's flags.
type CLI struct {
	Dir            string   `help:"jsd's runtime directory (default: $JS_DIR, else $XDG_RUNTIME_DIR/js, else /tmp/js-$UID)." placeholder:"DIR"`
	Socket         string   `help:"jsd's unix socket, when jsd was started with --socket (default: DIR/jsd.sock)." placeholder:"PATH"`
	Slots          int      `help:"Slots this command needs (a weighted job)." default:"1" placeholder:"K"`
	Timeout        float64  `help:"Seconds to wait for the slots; 0: do not wait; negative: wait forever. On expiry jsrun exits 75 and runs nothing." default:"-1" placeholder:"SECONDS"`
	NoAutostart    bool     `help:"Do not start a jsd when none is reachable."`
	JobserverStyle string   `help:"How the pool is passed in MAKEFLAGS: pipe (--jobserver-auth=R,W: make 4.3, cargo, rustc, gcc) or fifo (--jobserver-auth=fifo:PATH: ninja, make >= 4.4)." enum:"pipe,fifo" default:"pipe"`
	Pdeathsig      string   `help:"Signal the command gets if jsrun dies." default:"KILL" placeholder:"SIG"`
	Exec           bool     `help:"Replace jsrun by the command (exec in place, no fork): the fastest way, for short commands. The slot is held by the command's descriptor on jsd's socket, so it is freed when the command and every descendant that inherited it (a daemon it starts) have exited."`
	MinFreeMem     string   `help:"Admit only while MemAvailable is at least SIZE (e.g. 512M, 2G)." placeholder:"SIZE"`
	MaxLoad        float64  `help:"Admit only while the 1-minute load average is at most LOAD." placeholder:"LOAD"`
	Gate           string   `help:"Admit only while the shell command CMD exits 0." placeholder:"CMD"`
	Env            []string `help:"Set K=V in the command's environment (repeatable, applied in order with --unset)." sep:"none" placeholder:"K=V"`
	Unset          []string `help:"Remove K from the command's environment (repeatable)." sep:"none" placeholder:"K"`
	Version        bool     `help:"Print the version and exit."`

	Type     string `help:"Ship the command to a worker serving this job type instead of running it here; jsrun prints its output and exits with its status." placeholder:"T" group:"Remote jobs (--type)"`
	Priority int    `help:"Job priority: higher runs first." group:"Remote jobs (--type)" placeholder:"P"`
	ID       string `help:"Job id (default: assigned by jsd)." group:"Remote jobs (--type)" placeholder:"ID"`
	Retries  int    `help:"Run the job again up to R times if its worker dies mid-job." group:"Remote jobs (--type)" placeholder:"R"`
	Detach   bool   `help:"Print the job's id and exit 0 at once; fetch the result with 'jsctl wait ID'." group:"Remote jobs (--type)"`

	Command []string `arg:"" optional:"" passthrough:"partial" help:"The command and its arguments (after --)."`
}

const description = `jsrun runs COMMAND in a slot of the machine's pool, like make -j runs a
recipe: it waits for a slot, runs the command with stdio passed through,
gives the slot back and exits with the command's status (128+N when killed
by signal N). Nested jsruns, make, cargo and ninja share the same slots.

Where the slots come from: the jsd of the runtime directory; else, inside
make -jN, make's own jobserver (MAKEFLAGS); else a jsd started in the
background (--timeout 300), unless --no-autostart.

With --type T the command is shipped to a worker serving T (see jsworker)
and jsrun behaves as if it ran here: the command's output, its exit status.
--timeout then bounds the whole job (it is cancelled on expiry).

Exit codes of jsrun itself: 64 usage, 65 job refused by jsd (--type: its id
is in use), 69 no jobserver reachable (or jsd at its open-file limit), 70
internal error, 75 no slot before
--timeout (nothing run; with --type: the job did not end in time and was
cancelled), 76 the job was lost (its worker died; --type), 77 the job was
cancelled (--type), 126 command not runnable, 127 command not found.`

// Main runs jsrun and returns its exit code.
func Main(args []string, stdio cmdline.Stdio) int {
	cli, act, err := parseArgs(args)
	switch {
	case err != nil:
		fmt.Fprintf(stdio.Err, "jsrun: error: %v\n", err)
		fmt.Fprintf(stdio.Err, "jsrun: hint: run 'jsrun --help' for usage\n")
		return ExitUsage
	case act == actHelp:
		fmt.Fprint(stdio.Out, helpText)
		return 0
	case act == actVersion:
		fmt.Fprintf(stdio.Out, "jsrun %s\n", version.Version)
		return 0
	}
	r, err := newRun(&cli, args, stdio)
	if err != nil {
		return cmdline.Report(stdio.Err, "jsrun", err, ExitUsage)
	}
	var code int
	if cli.Type != "" {
		code, err = r.remote()
	} else {
		code, err = r.run()
	}
	if err != nil {
		return cmdline.Report(stdio.Err, "jsrun", err, ExitInternal)
	}
	return code
}

// run is one jsrun invocation.
type run struct {
	cli       *CLI
	stdio     cmdline.Stdio
	paths     rundir.Paths
	env       []string
	pdeathsig syscall.Signal
	timeout   time.Duration // < 0: forever
	gates     gates

	autostartDeadline time.Time // while a jsd we started comes up
}

func usage(hint, format string, args ...any) error {
	return cmdline.Errorf(ExitUsage, hint, format, args...)
}

func newRun(cli *CLI, args []string, stdio cmdline.Stdio) (*run, error) {
	// The command is the tail of args: what follows it is its own, never
	// jsrun's --env or --unset (jsrun ls --env x is ls's --env).
	ours := args[:len(args)-min(len(cli.Command), len(args))]
	if len(cli.Command) > 0 && cli.Command[0] == "--" {
		cli.Command = cli.Command[1:]
	}
	if len(cli.Command) == 0 {
		return nil, usage("put the command after --, e.g. jsrun -- make -C src", "no command given")
	}
	if cli.Type == "" && (cli.Detach || cli.ID != "" || cli.Priority != 0 || cli.Retries != 0) {
		return nil, usage("add --type T to ship the command to a worker", "--detach, --id, --priority and --retries need --type")
	}
	if cli.Type != "" {
		// These shape how a command runs here; a worker runs it its own way.
		var local []string
		for _, f := range []struct {
			name string
			set  bool
		}{{"--slots", cli.Slots != 1}, {"--exec", cli.Exec}, {"--min-free-mem", cli.MinFreeMem != ""},
			{"--max-load", cli.MaxLoad != 0}, {"--gate", cli.Gate != ""}, {"--env/--unset", len(envOps(args)) > 0},
			{"--jobserver-style", cli.JobserverStyle != "pipe"}, {"--pdeathsig", !strings.EqualFold(strings.TrimPrefix(strings.ToUpper(cli.Pdeathsig), "SIG"), "KILL")}} {
			if f.set {
				local = append(local, f.name)
			}
		}
		if len(local) > 0 {
			return nil, usage("these shape how a command runs on this machine; a worker runs jobs in its own environment", "%s cannot be used with --type", strings.Join(local, ", "))
		}
	}
	if cli.Retries < 0 {
		return nil, usage("", "--retries %d must be >= 0", cli.Retries)
	}
	if cli.Slots < 1 {
		return nil, usage("", "--slots %d must be at least 1", cli.Slots)
	}
	sig, err := launch.ParseSignal(cli.Pdeathsig)
	if err != nil {
		return nil, usage("", "--pdeathsig: %v", err)
	}
	r := &run{cli: cli, stdio: stdio, pdeathsig: sig, paths: rundir.For(rundir.Resolve(cli.Dir))}
	if cli.Socket != "" {
		r.paths.Socket = cli.Socket
	}
	r.timeout = -1
	if cli.Timeout >= 0 {
		r.timeout = time.Duration(cli.Timeout * float64(time.Second))
	}
	if r.env, err = applyEnv(os.Environ(), envOps(ours)); err != nil {
		return nil, err
	}
	if r.gates, err = parseGates(cli); err != nil {
		return nil, err
	}
	return r, nil
}

// validEnvName reports whether s is letters, digits and _, not starting
// with a digit (no regexp: compiling one would cost every jsrun at start).
func validEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return s != ""
}

type envOp struct {
	unset bool
	kv    string
}

// envOps lists --env and --unset in the order given (kong keeps two lists).
func envOps(args []string) []envOp {
	var ops []envOp
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, f := range []string{"--env", "--unset"} {
			switch {
			case a == f && i+1 < len(args):
				ops = append(ops, envOp{unset: f == "--unset", kv: args[i+1]})
				i++
			case strings.HasPrefix(a, f+"="):
				ops = append(ops, envOp{unset: f == "--unset", kv: a[len(f)+1:]})
			}
		}
	}
	return ops
}

func applyEnv(env []string, ops []envOp) ([]string, error) {
	for _, op := range ops {
		name, val, hasEq := strings.Cut(op.kv, "=")
		if op.unset {
			if !validEnvName(op.kv) {
				return nil, usage("a name is letters, digits and _, not starting with a digit", "--unset %q: invalid variable name", op.kv)
			}
			env = setEnv(env, op.kv, "", true)
			continue
		}
		if !hasEq || !validEnvName(name) {
			return nil, usage("write --env NAME=VALUE; a name is letters, digits and _, not starting with a digit", "--env %q: invalid, want NAME=VALUE", op.kv)
		}
		env = setEnv(env, name, val, false)
	}
	return env, nil
}

// setEnv sets or removes name in env, in place: env's array is reused,
// so the caller must own it (os.Environ's copy, childEnvBase's).
func setEnv(env []string, name, val string, remove bool) []string {
	out := env[:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != name {
			out = append(out, kv)
		}
	}
	clear(env[len(out):])
	if !remove {
		out = append(out, name+"="+val)
	}
	return out
}

func getEnv(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(env[i], "="); k == name {
			return v
		}
	}
	return ""
}

// run gets the slots, runs the command, gives the slots back.
func (r *run) run() (int, error) {
	var fwd *launch.Forwarder
	if !r.cli.Exec {
		// Catch the signals to relay while we wait for the slot, not after
		// the command has started (a signal before then still ends jsrun).
		fwd = launch.NewForwarder()
	}
	s, err := r.getSlots()
	if err != nil {
		return 0, err
	}
	defer s.release()
	env, files, err := s.childEnv(r)
	if err != nil {
		return 0, err
	}
	if r.cli.Exec && s.mk == nil {
		return r.execInPlace(s, env, files)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	p, err := launch.Start(launch.Spec{
		Argv: r.cli.Command, Env: env, ExtraFiles: files, Pdeathsig: r.pdeathsig,
		Stdin: r.stdio.In, Foreground: true, Forwarder: fwd,
	})
	if err != nil {
		var se *launch.StartError
		if errors.As(err, &se) {
			fmt.Fprintf(r.stdio.Err, "jsrun: error: %v\n", err)
			return se.Status, nil
		}
		return 0, err
	}
	for _, f := range files {
		f.Close()
	}
	files = nil
	if fwd == nil {
		p.Forward() // --exec inside make's pool: a command run the usual way
	}
	s.started(p.PID(), strings.Join(r.cli.Command, " "))
	return p.Wait(), nil
}

// childEnvBase sets what every child gets: the directory nested jsruns use
// and the slot holder they may borrow from (this jsrun).
func childEnvBase(env []string, dir string) []string {
	// A copy of our own, with room for what jsrun adds.
	env = append(make([]string, 0, len(env)+6), env...)
	env = setEnv(env, rundir.EnvDir, dir, false)
	if h, ok := selfHolder(); ok {
		env = setEnv(env, "JS_SLOT", h, false)
	}
	return env
}

// makeflagsFor gives the child the pool of the FIFO at path with n slots.
func makeflagsFor(env []string, style jobserver.Style, path string, n int) ([]string, []*os.File, error) {
	old := getEnv(env, "MAKEFLAGS")
	if style == jobserver.StyleFifo {
		return setEnv(env, "MAKEFLAGS", jobserver.WithAuth(old, n, "fifo:"+path), false), nil, nil
	}
	rf, err := jobserver.OpenForChild(path)
	if err != nil {
		return nil, nil, err
	}
	wf, err := jobserver.OpenForChild(path)
	if err != nil {
		rf.Close()
		return nil, nil, err
	}
	return setEnv(env, "MAKEFLAGS", jobserver.WithAuth(old, n, "3,4"), false), []*os.File{rf, wf}, nil
}

func itoa(n int) string { return strconv.Itoa(n) }

func selfHolder() (string, bool) {
	h, ok := nesting.Self()
	return h.String(), ok
}
