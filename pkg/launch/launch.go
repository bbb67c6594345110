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
	"syscall"

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
}

// Proc is a started command.
type Proc struct {
	cmd   *exec.Cmd
	fg    bool
	ttyFd int
	sigs  chan os.Signal
	done  chan struct{}
}

// PID is the command's pid, also its process group id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

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
	cmd := &exec.Cmd{Path: path, Args: s.Argv, Env: s.Env, ExtraFiles: s.ExtraFiles,
		Stdin: orDefault(s.Stdin, os.Stdin), Stdout: orDefault(s.Stdout, os.Stdout), Stderr: orDefault(s.Stderr, os.Stderr)}
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: s.Pdeathsig}
	p := &Proc{cmd: cmd, ttyFd: -1, done: make(chan struct{})}
	if s.Foreground {
		if fd, ok := foregroundTTY(orDefault(s.Stdin, os.Stdin)); ok {
			attr.Foreground = true
			attr.Ctty = fd
			p.fg, p.ttyFd = true, fd
		}
	}
	cmd.SysProcAttr = attr
	runtime.LockOSThread()
	if p.fg {
		signal.Ignore(syscall.SIGTTOU) // to take the terminal back afterwards
	}
	if err := cmd.Start(); err != nil {
		runtime.UnlockOSThread()
		st := ExitCannotRun
		if errors.Is(err, os.ErrNotExist) {
			st = ExitNotFound
		}
		return nil, &StartError{Err: fmt.Errorf("%s: %w", s.Argv[0], unwrapExec(err)), Status: st}
	}
	return p, nil
}

// Forward relays SIGINT, SIGTERM and SIGHUP sent to us to the command's
// process group until Wait returns.
func (p *Proc) Forward() {
	p.sigs = make(chan os.Signal, 4)
	signal.Notify(p.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
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

// Signal sends sig to the command's process group.
func (p *Proc) Signal(sig syscall.Signal) error { return syscall.Kill(-p.PID(), sig) }

// Wait waits for the command and returns its shell-style exit status:
// its exit code, or 128+N when signal N killed it.
func (p *Proc) Wait() int {
	err := p.cmd.Wait()
	runtime.UnlockOSThread()
	close(p.done)
	if p.sigs != nil {
		signal.Stop(p.sigs)
	}
	if p.fg {
		// Take the terminal back for our own process group.
		_ = unix.IoctlSetPointerInt(p.ttyFd, unix.TIOCSPGRP, unix.Getpgrp())
	}
	return ExitStatus(p.cmd.ProcessState, err)
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
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
	return ps.ExitCode()
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
