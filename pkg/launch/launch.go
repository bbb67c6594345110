// Package launch starts a command the way jsrun and jsworker run work: in a
// process group of its own, killed when its parent dies (PR_SET_PDEATHSIG),
// signals forwarded, and its end turned into a shell-style exit status.
package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"golang.org/x/sys/unix"
)

// Exit statuses for a command that could not be started, as the shell's.
const (
	ExitCannotRun = 126
	ExitNotFound  = 127
)

// Spec is what to run.
type Spec struct {
	Argv       []string
	Env        []string
	ExtraFiles []*os.File
	Pdeathsig  syscall.Signal
	Stdin      *os.File
	Stdout     *os.File
	Stderr     *os.File
	// Foreground makes the command the terminal's foreground process group
	// when stdin is a terminal we are in the foreground of, so interactive
	// commands keep working in a group of their own.
	Foreground bool
	// Forwarder, when set, relays signals to the command from the moment it
	// starts, until Wait returns (instead of Proc.Forward). Start stops it
	// if the command cannot be started.
	Forwarder *Forwarder
}

// Proc is a started command.
type Proc struct {
	pid   int
	fg    bool
	ttyFd int
	sigs  chan os.Signal
	done  chan struct{}
	fwd   *Forwarder
}

// PID is the command's pid, also its process group id.
func (p *Proc) PID() int { return p.pid }

// StartError is a failure to start; Status is the shell's code for it.
type StartError struct {
	Err    error
	Status int
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Start starts the command. The calling goroutine is locked to its OS
// thread until Wait returns: PR_SET_PDEATHSIG fires when the thread that
// forked exits (golang/go#27505), not the process.
func Start(s Spec) (*Proc, error) {
	if len(s.Argv) == 0 {
		return nil, &StartError{Err: errors.New("no command given"), Status: ExitNotFound}
	}
	path, err := exec.LookPath(s.Argv[0])
	if err != nil {
		st := ExitNotFound
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EISDIR) {
			st = ExitCannotRun // there, but not runnable: the shell's 126
		}
		return nil, &StartError{Err: fmt.Errorf("%s: %w", s.Argv[0], unwrapExec(err)), Status: st}
	}
	env := s.Env
	if env == nil {
		env = os.Environ()
	}
	// As os/exec does: the last of duplicate variables wins, and a NUL in
	// one is refused before anything runs.
	env, err = dedupEnv(env)
	if err != nil {
		return nil, &StartError{Err: fmt.Errorf("%s: %w", s.Argv[0], err), Status: ExitCannotRun}
	}
	stdio := []*os.File{orDefault(s.Stdin, os.Stdin), orDefault(s.Stdout, os.Stdout), orDefault(s.Stderr, os.Stderr)}
	files := make([]uintptr, 0, len(stdio)+len(s.ExtraFiles))
	for _, f := range append(stdio, s.ExtraFiles...) {
		files = append(files, f.Fd()) // a nil *os.File gives ^uintptr(0): closed in the child
	}
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: s.Pdeathsig}
	p := &Proc{ttyFd: -1, done: make(chan struct{})}
	if s.Foreground {
		if fd, ok := foregroundTTY(stdio[0]); ok {
			attr.Foreground = true
			attr.Ctty = fd
			p.fg, p.ttyFd = true, fd
		}
	}
	runtime.LockOSThread()
	if p.fg {
		signal.Ignore(syscall.SIGTTOU) // to take the terminal back afterwards
	}
	if f := s.Forwarder; f != nil {
		// A signal the forwarder takes from now on waits for the fork, and
		// then goes to the command.
		f.mu.Lock()
	}
	// syscall.ForkExec rather than os/exec: the same fork and exec, without
	// os's pidfd probing and bookkeeping on every start (jsrun starts one
	// command per process).
	p.pid, err = syscall.ForkExec(path, s.Argv, &syscall.ProcAttr{Env: env, Files: files, Sys: attr})
	runtime.KeepAlive(stdio)
	runtime.KeepAlive(s.ExtraFiles)
	if f := s.Forwarder; f != nil {
		if err == nil {
			f.pgid = p.pid
			p.fwd = f
		}
		f.mu.Unlock()
		if err == nil {
			f.attached()
		} else {
			f.stop()
		}
	}
	if err != nil {
		runtime.UnlockOSThread()
		st := ExitCannotRun
		if errors.Is(err, os.ErrNotExist) {
			st = ExitNotFound
		}
		return nil, &StartError{Err: fmt.Errorf("%s: %w", s.Argv[0], err), Status: st}
	}
	return p, nil
}

// dedupEnv is os/exec's: later duplicates win, order is kept, an entry
// without '=' stays as it is, and a NUL in any entry is an error.
func dedupEnv(env []string) ([]string, error) {
	var err error
	out := make([]string, 0, len(env))
	saw := make(map[string]bool, len(env))
	for n := len(env); n > 0; n-- {
		kv := env[n-1]
		if strings.IndexByte(kv, 0) != -1 {
			err = errors.New("exec: environment variable contains NUL")
			continue
		}
		i := strings.Index(kv, "=")
		if i == 0 {
			i = strings.Index(kv[1:], "=") + 1
		}
		if i < 0 {
			if kv != "" {
				out = append(out, kv)
			}
			continue
		}
		if k := kv[:i]; !saw[k] {
			saw[k] = true
			out = append(out, kv)
		}
	}
	for i := 0; i < len(out)/2; i++ {
		j := len(out) - i - 1
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// Forward relays SIGINT, SIGTERM and SIGHUP sent to us to the command's
// process group until Wait returns.
func (p *Proc) Forward() {
	p.sigs = make(chan os.Signal, 4)
	signal.Notify(p.sigs, forwarded...)
	go func() {
		for {
			select {
			case sig := <-p.sigs:
				_ = syscall.Kill(-p.PID(), sig.(syscall.Signal))
			case <-p.done:
				return
			}
		}
	}()
}

// forwarded are the signals Forward and a Forwarder relay.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// Forwarder relays SIGINT, SIGTERM and SIGHUP to the process group of a
// command that Start starts later (Spec.Forwarder), as Proc.Forward does,
// but is set up ahead: os/signal's first Notify costs a few hundred
// microseconds (two threads, a round trip to the runtime's signal-mask
// thread per signal), which a short-lived caller such as jsrun spends while
// it waits for its slot instead of after the command has started.
//
// Until the command runs, a signal ends this process as it would have ended
// without the forwarder: by the signal's default action. A signal that was
// ignored when this process started (nohup, a background job of a script)
// is only caught once the command has started, as with Proc.Forward, so
// that the command still inherits it ignored.
type Forwarder struct {
	mu    sync.Mutex
	pgid  int // the command's process group; 0 before Start
	sigs  chan os.Signal
	late  []os.Signal   // ignored at start: caught once the command runs
	ready chan struct{} // closed once the early signals are caught
	done  chan struct{}
	once  sync.Once
}

// NewForwarder starts catching the signals (in the background: it returns
// at once).
func NewForwarder() *Forwarder {
	f := &Forwarder{sigs: make(chan os.Signal, 4), ready: make(chan struct{}), done: make(chan struct{})}
	var early []os.Signal
	for _, sig := range forwarded {
		if signal.Ignored(sig) {
			f.late = append(f.late, sig)
		} else {
			early = append(early, sig)
		}
	}
	go func() {
		if len(early) > 0 {
			signal.Notify(f.sigs, early...)
		}
		close(f.ready)
		for {
			select {
			case sig := <-f.sigs:
				f.relay(sig.(syscall.Signal))
			case <-f.done:
				return
			}
		}
	}()
	return f
}

// relay sends sig to the command's group; before there is a command, it
// ends this process by sig's default action, holding mu so that no
// command starts meanwhile.
func (f *Forwarder) relay(sig syscall.Signal) {
	f.mu.Lock()
	if f.pgid > 0 {
		pgid := f.pgid
		f.mu.Unlock()
		_ = syscall.Kill(-pgid, sig)
		return
	}
	signal.Reset(sig)
	_ = syscall.Kill(syscall.Getpid(), sig)
	for {
		time.Sleep(time.Second) // the signal is on its way; mu stays held
	}
}

// attached catches the signals left for later, now that the command runs.
func (f *Forwarder) attached() {
	if len(f.late) > 0 {
		signal.Notify(f.sigs, f.late...)
	}
}

// stop ends the forwarding (idempotent).
func (f *Forwarder) stop() {
	f.once.Do(func() {
		<-f.ready
		close(f.done)
		signal.Stop(f.sigs)
	})
}

// Signal sends sig to the command's process group.
func (p *Proc) Signal(sig syscall.Signal) error { return syscall.Kill(-p.PID(), sig) }

// Wait waits for the command and returns its shell-style exit status:
// its exit code, or 128+N when signal N killed it.
func (p *Proc) Wait() int {
	var ws syscall.WaitStatus
	var err error
	for {
		_, err = syscall.Wait4(p.pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	runtime.UnlockOSThread()
	close(p.done)
	if p.sigs != nil {
		signal.Stop(p.sigs)
	}
	if p.fwd != nil {
		p.fwd.stop()
	}
	if p.fg {
		// Take the terminal back for our own process group.
		_ = unix.IoctlSetPointerInt(p.ttyFd, unix.TIOCSPGRP, unix.Getpgrp())
	}
	if err != nil {
		return ExitCannotRun
	}
	return waitStatus(ws)
}

// ExitStatus turns a finished process into a shell-style status.
func ExitStatus(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return ExitCannotRun
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		return waitStatus(ws)
	}
	return ps.ExitCode()
}

func waitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// ParseSignal reads a signal name or number: KILL, SIGKILL, 9, TERM, ...
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimPrefix(t, "SIG")
	if n, err := parseUint(t); err == nil {
		if n > 0 && n < 65 {
			return syscall.Signal(n), nil
		}
		return 0, fmt.Errorf("signal number %d is out of range", n)
	}
	// The usual names without x/sys/unix's table: building it costs a
	// jsrun (which reads --pdeathsig, KILL by default, every time) a map
	// and a stack twice the size.
	switch t {
	case "KILL":
		return syscall.SIGKILL, nil
	case "TERM":
		return syscall.SIGTERM, nil
	case "INT":
		return syscall.SIGINT, nil
	case "HUP":
		return syscall.SIGHUP, nil
	}
	if sig := unix.SignalNum("SIG" + t); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q (try KILL, TERM, INT, HUP or a number)", s)
}

func parseUint(s string) (int, error) {
	n := 0
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + int(c-'0')
		if n > 1000 {
			return n, nil
		}
	}
	return n, nil
}

// foregroundTTY returns the terminal's fd (in the child: its stdin, 0) when
// stdin is a terminal whose foreground group is ours.
func foregroundTTY(stdin *os.File) (int, bool) {
	fd := int(stdin.Fd())
	if !isatty.IsTerminal(uintptr(fd)) {
		return 0, false
	}
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || fg != unix.Getpgrp() {
		return 0, false
	}
	return 0, true // Ctty is the child's fd number: stdin is 0 there
}

func orDefault(f, d *os.File) *os.File {
	if f != nil {
		return f
	}
	return d
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
