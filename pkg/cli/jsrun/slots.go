package jsrun

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/client"
	"github.com/js-toolkit/js/pkg/jobserver"
	"github.com/js-toolkit/js/pkg/nesting"
	"github.com/js-toolkit/js/pkg/wire"
)

// Environment an enclosing jsrun leaves for nested ones (besides JS_DIR,
// JS_SLOT and MAKEFLAGS): the jsd pool's FIFO and size, so a nested jsrun
// that borrows its parent's slot hands its own command the same pool.
const (
	envFifo  = "JS_FIFO"
	envTotal = "JS_SLOTS"
)

// held is what a jsrun holds while its command runs.
type held struct {
	borrow *nesting.Borrow   // the enclosing slot, lent to us
	conn   *client.Conn      // jsd, for a lease
	lease  *client.Lease     // jsd's lease
	mk     *jobserver.Client // tokens from make's own pool
	mkAuth jobserver.Auth
	fifo   string // jsd's FIFO for the command, "" when unknown
	total  int
	stderr func(format string, args ...any)
}

func (r *run) warnf(format string, args ...any) {
	fmt.Fprintf(r.stdio.Err, "jsrun: warning: "+format+"\n", args...)
}

// getSlots gets the command's slots: a borrow of the slot we already run in
// (if any), then tokens for the rest from jsd, make's pool, or a jsd it
// starts. Admission gates are checked before and after taking them.
func (r *run) getSlots() (*held, error) {
	var deadline time.Time
	if r.timeout >= 0 {
		deadline = time.Now().Add(r.timeout)
	}
	for {
		if err := r.gates.wait(deadline); err != nil {
			return nil, err
		}
		h, err := r.takeSlots(deadline)
		if err != nil {
			return nil, err
		}
		if r.gates.none() {
			return h, nil
		}
		if ok, _ := r.gates.admit(); ok {
			return h, nil
		}
		// Conditions changed while we waited: give the slots back and wait
		// for the gates again.
		h.release()
	}
}

// borrowPoll is how often a jsrun waiting for a token tries again to
// borrow the slot it runs in (another descendant may have given it back:
// make's implicit slot works the same way).
const borrowPoll = 20 * time.Millisecond

// lender is the enclosing slot we may borrow, if any.
type lender struct {
	holder nesting.Holder
	ok     bool
}

// try borrows the slot for h if it is free now.
func (l lender) try(h *held) bool {
	if !l.ok || h.borrow != nil {
		return false
	}
	b, err := nesting.TryBorrow(l.holder)
	if err != nil {
		return false
	}
	h.borrow = b
	return true
}

func (r *run) takeSlots(deadline time.Time) (*held, error) {
	h := &held{stderr: r.warnf}
	need := r.cli.Slots
	mkAuth, inMake := jobserver.ParseMakeflags(os.Getenv("MAKEFLAGS"))
	var lend lender
	lend.holder, lend.ok = nesting.Find(os.Getenv(nesting.EnvSlot), inMake)
	if lend.try(h) {
		need--
	}
	// Waiting for one token, we keep trying the borrow too: whichever
	// comes first. (A weighted job waits for its tokens only.)
	canBorrow := lend.ok && h.borrow == nil && need == 1
	h.fifo = os.Getenv(envFifo)
	h.total = envInt(os.Getenv(envTotal))
	if need == 0 {
		if h.fifo == "" && inMake {
			h.mkAuth = mkAuth // the command inherits make's pool as it is
		}
		return h, nil
	}
	err := r.fromJSD(h, need, deadline, false, canBorrow, lend)
	if errors.Is(err, client.ErrNoDaemon) && inMake {
		mk, merr := jobserver.OpenClient(mkAuth)
		if merr == nil {
			h.mk, h.mkAuth, h.fifo = mk, mkAuth, ""
			if err := r.fromMake(h, need, deadline, canBorrow, lend); err != nil {
				h.release()
				return nil, err
			}
			return h, nil
		}
		r.warnf("%v; using a jsd instead", merr)
	}
	if errors.Is(err, client.ErrNoDaemon) && !r.cli.NoAutostart {
		if serr := r.autostart(); serr != nil {
			h.release()
			return nil, serr
		}
		err = r.fromJSD(h, need, deadline, true, canBorrow, lend)
	}
	if err != nil {
		h.release()
		if errors.Is(err, client.ErrNoDaemon) {
			return nil, cmdline.WithHint(err, ExitUnavailable,
				fmt.Sprintf("start one with 'jsd --dir %s &', or drop --no-autostart", r.paths.Dir))
		}
		if client.IsCode(err, wire.CodeBlocked) {
			return nil, blocked()
		}
		if client.IsCode(err, wire.CodeFDLimit) {
			return nil, cmdline.WithHint(err, ExitUnavailable, client.FDLimitHint+"; nothing was run")
		}
		if client.IsCode(err, wire.CodeStopping) {
			return nil, cmdline.WithHint(err, ExitUnavailable, "jsd is stopping; run again once it has stopped, and a new one serves")
		}
		if client.IsCode(err, wire.CodeBadRequest) && r.cli.Slots > 1 {
			// More slots than the pool has: the caller's mistake.
			return nil, cmdline.WithHint(err, ExitUsage, "ask for at most the pool's size (jsctl status shows it)")
		}
		return nil, err
	}
	return h, nil
}

// envInt reads a number jsrun wrote (plain digits) without fmt's scanner;
// anything else is read by fmt.Sscan, as before; 0 when unset or unreadable.
func envInt(s string) int {
	if s == "" {
		return 0
	}
	if n, err := strconv.Atoi(s); err == nil && (s == "0" || s[0] >= '1' && s[0] <= '9') {
		return n // no sign, no leading 0 (fmt would read octal)
	}
	var n int
	fmt.Sscan(s, &n)
	return n
}

// fromMake takes need tokens from make's pool (the client in h.mk).
func (r *run) fromMake(h *held, need int, deadline time.Time, canBorrow bool, lend lender) error {
	for got := 0; got < need; {
		slice := deadline
		if canBorrow {
			slice = time.Now().Add(borrowPoll)
			if !deadline.IsZero() && deadline.Before(slice) {
				slice = deadline
			}
		}
		err := h.mk.Take(slice)
		switch {
		case err == nil:
			got++
		case errors.Is(err, jobserver.ErrTimeout):
			if canBorrow && lend.try(h) {
				return nil
			}
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				return blocked()
			}
		default:
			return err
		}
	}
	return nil
}

func blocked() error {
	return cmdline.Errorf(ExitBlocked, "", "no free slot before the timeout; nothing was run")
}

// deadlineGrace is how long after its deadline jsrun still waits for
// jsd's own answer to an acquire.
const deadlineGrace = 2 * time.Second

// fromJSD takes a lease of need slots from the jsd of our directory.
func (r *run) fromJSD(h *held, need int, deadline time.Time, retry, canBorrow bool, lend lender) error {
	var c *client.Conn
	var err error
	for {
		c, err = client.DialDirect(r.paths.Socket)
		if err == nil || !retry || !errors.Is(err, client.ErrNoDaemon) || time.Now().After(r.autostartDeadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // jsd is starting: its socket appears within milliseconds
	}
	if err != nil {
		return err
	}
	timeout := time.Duration(-1)
	if !deadline.IsZero() {
		timeout = max(time.Until(deadline), 0)
	}
	if err := c.SendAcquire(need, timeout, os.Getpid(), commandLine(r.cli.Command)); err != nil {
		c.Close()
		return err
	}
	// jsd answers "blocked" at the deadline; should that answer not come,
	// jsrun still never waits much past --timeout.
	var giveUp time.Time
	if !deadline.IsZero() {
		giveUp = deadline.Add(deadlineGrace)
	}
	for {
		until := giveUp
		if canBorrow {
			if poll := time.Now().Add(borrowPoll); until.IsZero() || poll.Before(until) {
				until = poll
			}
		}
		lease, err := c.AwaitLease(until)
		if errors.Is(err, client.ErrNotYet) {
			if lend.try(h) {
				c.Close() // jsd drops our place in the queue
				return nil
			}
			if !giveUp.IsZero() && !time.Now().Before(giveUp) {
				c.Close()
				return &client.Error{Code: wire.CodeBlocked, Message: "no answer from jsd by the deadline"}
			}
			continue
		}
		if err != nil {
			c.Close()
			var ce *client.Error
			if !errors.As(err, &ce) {
				return cmdline.WithHint(fmt.Errorf("lost jsd while waiting for a slot: %w", err), ExitUnavailable,
					"jsd stopped or was restarted; nothing was run: run the command again")
			}
			return err
		}
		h.conn, h.lease = c, lease
		h.fifo, h.total = lease.Fifo, lease.Total
		return nil
	}
}

// autostart starts a jsd for our directory in the background; it stops by
// itself after 300 idle seconds. Racing jsruns each try; the losers' jsd
// exits "already running" and everyone connects to the winner.
func (r *run) autostart() error {
	bin, err := jsdBinary()
	if err != nil {
		return cmdline.WithHint(err, ExitUnavailable, "install jsd next to jsrun or on PATH, or start one yourself")
	}
	if err := os.MkdirAll(r.paths.Dir, 0o700); err != nil {
		return cmdline.WithHint(err, ExitUnavailable, "")
	}
	logf, err := os.OpenFile(r.paths.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return cmdline.WithHint(fmt.Errorf("open jsd log: %w", err), ExitUnavailable, "")
	}
	defer logf.Close()
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	cmd := exec.Command(bin, "--dir", r.paths.Dir, "--timeout", "300")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		return cmdline.WithHint(fmt.Errorf("start jsd: %w", err), ExitUnavailable, "")
	}
	go cmd.Wait() // reap it if it exits while we run (e.g. it lost a start race)
	r.autostartDeadline = time.Now().Add(10 * time.Second)
	return nil
}

func jsdBinary() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "jsd")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("jsd")
	if err != nil {
		return "", errors.New("no jsd binary found next to jsrun or on PATH")
	}
	return p, nil
}

// childEnv is the command's environment and inherited files: the pool in
// MAKEFLAGS, and what nested jsruns need to find it.
func (h *held) childEnv(r *run) ([]string, []*os.File, error) {
	env := childEnvBase(r.env, r.paths.Dir)
	switch {
	case h.fifo != "":
		env = setEnv(env, envFifo, h.fifo, false)
		env = setEnv(env, envTotal, itoa(h.total), false)
		style, _ := jobserver.ParseStyle(r.cli.JobserverStyle)
		return makeflagsFor(env, style, h.fifo, h.total)
	case h.mkAuth.IsFifo():
		return env, nil, nil // MAKEFLAGS names the FIFO path: inherited as is
	case h.mkAuth.R >= 0:
		// make's pipe: hand the command descriptions of its own as 3,4.
		rf, err1 := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", h.mkAuth.R), os.O_RDONLY, 0)
		wf, err2 := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", h.mkAuth.W), os.O_WRONLY, 0)
		if err1 != nil || err2 != nil {
			if rf != nil {
				rf.Close()
			}
			if wf != nil {
				wf.Close()
			}
			return env, nil, nil // make closed them (no '+'): pass MAKEFLAGS as is
		}
		old := getEnv(env, "MAKEFLAGS")
		return setEnv(env, "MAKEFLAGS", jobserver.WithAuth(old, max(h.mkAuth.Jobs, 1), "3,4"), false), []*os.File{rf, wf}, nil
	}
	return env, nil, nil
}

// started tells jsd which process group runs on the lease, so it can kill
// it if this jsrun dies.
func (h *held) started(pid int, command string) {
	if h.conn != nil {
		if err := h.conn.Started(h.lease.ID, pid, command); err != nil {
			h.stderr("lost jsd (%v); the command keeps running on its slot", err)
		}
	}
}

// release gives everything back.
func (h *held) release() {
	if h.conn != nil {
		// No need to wait for "released": jsd handles a connection's
		// messages in order, so the release comes before the close (and a
		// lost connection releases the lease anyway).
		h.conn.SendRelease(h.lease.ID)
		h.conn.Close()
		h.conn = nil
	}
	if h.mk != nil {
		if err := h.mk.Close(); err != nil {
			h.stderr("give tokens back to make: %v", err)
		}
		h.mk = nil
	}
	h.borrow.Close()
	h.borrow = nil
}

func commandLine(argv []string) string {
	s := ""
	for i, a := range argv {
		if i > 0 {
			s += " "
		}
		s += a
		if len(s) > 200 {
			return s[:200] + "..."
		}
	}
	return s
}
