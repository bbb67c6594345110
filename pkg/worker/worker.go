// Package worker is what jsworker does: connect to jsd, serve job types,
// run a handler (or the job's own command line) per job, report results,
// obey cancel, reconnect when jsd restarts, drain on SIGTERM.
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/js-toolkit/js/pkg/client"
	"github.com/js-toolkit/js/pkg/launch"
	"github.com/js-toolkit/js/pkg/wire"
)

// Limits on what a job's handler may produce.
const (
	MaxResult  = 8 << 20 // stdout bytes kept as the result
	StderrTail = 4 << 10 // stderr bytes kept as the error of a failed job
)

// Config is a worker's setup.
type Config struct {
	Types       []string
	Concurrency int
	Handler     []string      // nil: run each job's own command line
	Grace       time.Duration // SIGTERM, then SIGKILL after this on cancel
	Dial        func() (*client.Conn, error)
	Log         *log.Logger
}

// Command is the arg of a job made by `jsrun --type`: a command line.
type Command struct {
	Argv []string `json:"argv"`
}

// CommandResult is the result of a command-line job.
type CommandResult struct {
	Exit   int    `json:"exit"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	// Enc is "base64" when stdout/stderr were not UTF-8 and are base64.
	Enc string `json:"enc,omitempty"`
}

// ParseCommand reports whether arg is a command line: an object whose only
// key is "argv", a non-empty list of strings.
func ParseCommand(arg json.RawMessage) (Command, bool) {
	var raw map[string]json.RawMessage
	if len(arg) == 0 || arg[0] != '{' || json.Unmarshal(arg, &raw) != nil || len(raw) != 1 || raw["argv"] == nil {
		return Command{}, false
	}
	var c Command
	if json.Unmarshal(raw["argv"], &c.Argv) != nil || len(c.Argv) == 0 {
		return Command{}, false
	}
	return c, true
}

// Run serves jobs until ctx is done (then it drains: finishes the jobs it
// runs, takes no new ones) and returns nil. Losing jsd, it kills its running
// jobs (jsd has lost them too) and reconnects with backoff.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	backoff := 100 * time.Millisecond
	for {
		c, err := cfg.Dial()
		if err != nil {
			if client.IsCode(err, wire.CodeAuth) {
				return err
			}
			cfg.Log.Printf("cannot reach jsd (%v); retrying in %v", err, backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s := &session{cfg: cfg, c: c, jobs: map[string]*running{}}
		drained, err := s.serve(ctx)
		c.Close()
		if drained {
			return nil
		}
		cfg.Log.Printf("lost jsd (%v); reconnecting", err)
	}
}

// session is one connection to jsd.
type session struct {
	cfg  Config
	c    *client.Conn
	mu   sync.Mutex // guards writes on c and jobs
	jobs map[string]*running
	wg   sync.WaitGroup
}

type running struct {
	proc      *launch.Proc
	cancelled bool
}

func (s *session) send(m *wire.Msg) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.Send(m)
}

// serve registers and runs jobs. It reports drained=true when ctx ended and
// every job finished.
func (s *session) serve(ctx context.Context) (drained bool, err error) {
	host, _ := os.Hostname()
	if err := s.send(&wire.Msg{Cmd: wire.CmdCanDo, Types: s.cfg.Types, Concurrency: s.cfg.Concurrency,
		CanCancel: true, Host: host, PID: os.Getpid()}); err != nil {
		return false, err
	}
	msgs := make(chan *wire.Msg, 64)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := s.c.Recv()
			if err != nil {
				errc <- err
				return
			}
			msgs <- m
		}
	}()
	draining := false
	idle := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			if !draining {
				draining = true
				s.send(&wire.Msg{Cmd: wire.CmdDrain})
				s.cfg.Log.Printf("draining: finishing %d running job(s), taking no new ones", s.count())
			}
			ctx = context.Background()
			if s.count() == 0 {
				return true, nil
			}
		case <-idle:
			if draining && s.count() == 0 {
				return true, nil
			}
		case err := <-errc:
			s.killAll()
			s.wg.Wait()
			return false, err
		case m := <-msgs:
			switch m.Cmd {
			case wire.CmdDo:
				s.start(m, idle)
			case wire.CmdCancel:
				s.cancel(client.IDString(m.ID), m.Signal)
			case wire.CmdError:
				s.cfg.Log.Printf("jsd: %s (%s)", m.Message, m.Code)
			}
		}
	}
}

func (s *session) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

// start runs one job in its own goroutine.
func (s *session) start(m *wire.Msg, idle chan struct{}) {
	id := client.IDString(m.ID)
	r := &running{}
	s.mu.Lock()
	s.jobs[id] = r
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		reply := fitLine(s.run(m, id, r))
		s.mu.Lock()
		delete(s.jobs, id)
		err := s.c.Send(reply)
		s.mu.Unlock()
		if err != nil {
			s.cfg.Log.Printf("report job %s: %v", id, err)
		}
		select {
		case idle <- struct{}{}:
		default:
		}
	}()
}

// run runs the job's handler and returns the did/fail message.
func (s *session) run(m *wire.Msg, id string, r *running) *wire.Msg {
	fail := func(exit int, msg string) *wire.Msg {
		return &wire.Msg{Cmd: wire.CmdFail, ID: m.ID, Error: msg, Exit: &exit}
	}
	cmd, isCmd := ParseCommand(m.Arg)
	var argv []string
	var stdin []byte
	switch {
	case isCmd && len(s.cfg.Handler) > 0:
		argv = append(append([]string{}, s.cfg.Handler...), cmd.Argv...)
	case isCmd:
		argv = cmd.Argv
	case len(s.cfg.Handler) > 0:
		argv = s.cfg.Handler
		stdin = argText(m.Arg)
	default:
		return fail(launch.ExitCannotRun, "this worker has no handler and the job is not a command line ({\"argv\":[...]})")
	}
	env := append(os.Environ(), "JS_JOB_ID="+id, "JS_JOB_TYPE="+m.Type)
	stdout := &capped{max: MaxResult}
	stderr := &capped{max: MaxResult, tail: !isCmd}
	if !isCmd {
		stderr.max = StderrTail
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return fail(launch.ExitCannotRun, err.Error())
	}
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	p, err := launch.Start(launch.Spec{Argv: argv, Env: env, Pdeathsig: syscall.SIGKILL, Stdin: inR, Stdout: outW, Stderr: errW})
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		var se *launch.StartError
		code := launch.ExitCannotRun
		if errors.As(err, &se) {
			code = se.Status
		}
		if isCmd {
			return resultMsg(m.ID, CommandResult{Exit: code, Stderr: err.Error() + "\n"})
		}
		return fail(code, err.Error())
	}
	s.mu.Lock()
	r.proc = p
	cancelled := r.cancelled
	s.mu.Unlock()
	if cancelled {
		p.Signal(syscall.SIGTERM)
	}
	var copies sync.WaitGroup
	copies.Add(3)
	go func() { defer copies.Done(); inW.Write(stdin); inW.Close() }()
	go func() { defer copies.Done(); io.Copy(stdout, outR); outR.Close() }()
	go func() { defer copies.Done(); io.Copy(stderr, errR); errR.Close() }()
	status := p.Wait()
	copies.Wait()
	if isCmd {
		r := CommandResult{Exit: status, Stdout: stdout.String(), Stderr: stderr.String()}
		if stdout.over || stderr.over {
			r.Stderr += fmt.Sprintf("\njsworker: the output was cut at %d bytes\n", MaxResult)
		}
		return resultMsg(m.ID, r)
	}
	if stdout.over {
		return fail(status, fmt.Sprintf("result over %d bytes", MaxResult))
	}
	if status != 0 {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = fmt.Sprintf("handler exited with status %d", status)
		}
		res, enc := resultOf(stdout.Bytes())
		return &wire.Msg{Cmd: wire.CmdFail, ID: m.ID, Res: res, Enc: enc, Error: msg, Exit: &status}
	}
	res, enc := resultOf(stdout.Bytes())
	return &wire.Msg{Cmd: wire.CmdDid, ID: m.ID, Res: res, Enc: enc}
}

// fitLine makes sure a reply fits in one protocol line: a result too large
// to send fails the job with that reason instead of breaking the
// connection (jsd would close it, and lose every job on it).
func fitLine(m *wire.Msg) *wire.Msg {
	b, err := json.Marshal(m)
	if err == nil && len(b) < wire.MaxLine-64 {
		return m
	}
	exit := 1
	if m.Exit != nil {
		exit = *m.Exit
	}
	return &wire.Msg{Cmd: wire.CmdFail, ID: m.ID, Exit: &exit,
		Error: fmt.Sprintf("the result is %d bytes encoded, over the protocol's %d-byte line limit", len(b), wire.MaxLine)}
}

// resultMsg reports a command-line job: done when it exited 0.
func resultMsg(id json.RawMessage, r CommandResult) *wire.Msg {
	if !utf8.ValidString(r.Stdout) || !utf8.ValidString(r.Stderr) {
		r.Enc = "base64"
		r.Stdout, r.Stderr = b64(r.Stdout), b64(r.Stderr)
	}
	res, _ := json.Marshal(r)
	if r.Exit == 0 {
		return &wire.Msg{Cmd: wire.CmdDid, ID: id, Res: res}
	}
	exit := r.Exit
	tail := r.Stderr
	if len(tail) > 512 {
		tail = tail[len(tail)-512:]
	}
	msg := strings.TrimSpace(tail)
	if msg == "" || r.Enc != "" {
		msg = fmt.Sprintf("exit status %d", exit)
	}
	return &wire.Msg{Cmd: wire.CmdFail, ID: id, Res: res, Error: msg, Exit: &exit}
}

// argText is what a handler reads on stdin: a JSON string's raw text, any
// other value as JSON.
func argText(arg json.RawMessage) []byte {
	var s string
	if len(arg) > 0 && arg[0] == '"' && json.Unmarshal(arg, &s) == nil {
		return []byte(s)
	}
	return arg
}

func (s *session) cancel(id, sig string) {
	signal, err := launch.ParseSignal(sig)
	if err != nil {
		signal = syscall.SIGTERM
	}
	s.mu.Lock()
	r := s.jobs[id]
	var proc *launch.Proc
	if r != nil {
		r.cancelled = true // a job not started yet gets SIGTERM when it starts
		proc = r.proc
	}
	s.mu.Unlock()
	if proc == nil {
		return
	}
	proc.Signal(signal)
	grace := s.cfg.Grace
	go func() {
		time.Sleep(grace)
		s.mu.Lock()
		still := s.jobs[id] == r
		s.mu.Unlock()
		if still {
			proc.Signal(syscall.SIGKILL)
		}
	}()
}

func (s *session) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.jobs {
		r.cancelled = true
		if r.proc != nil {
			r.proc.Signal(syscall.SIGKILL)
		}
	}
}

// capped keeps at most max bytes: the head (stdout), or the tail (stderr).
// It is only an io.Writer (no ReadFrom), so io.Copy cannot bypass the cap.
type capped struct {
	buf  bytes.Buffer
	max  int
	tail bool
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	if c.tail {
		c.buf.Write(p)
		if c.buf.Len() > c.max {
			keep := append([]byte(nil), c.buf.Bytes()[c.buf.Len()-c.max:]...)
			c.buf.Reset()
			c.buf.Write(keep)
		}
		return n, nil
	}
	if room := c.max - c.buf.Len(); room < len(p) {
		c.over = true
		if room > 0 {
			c.buf.Write(p[:room])
		}
		return n, nil
	}
	c.buf.Write(p)
	return n, nil
}

func (c *capped) Bytes() []byte  { return c.buf.Bytes() }
func (c *capped) String() string { return c.buf.String() }
