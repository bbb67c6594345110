package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/rundir"
	"golang.org/x/sys/unix"
)

// jsrun runs jsrun with args against d and returns what it did.
func (d *daemon) jsrun(t testing.TB, args ...string) result {
	t.Helper()
	return runIn(t, baseEnv(d.dir), "", 10*time.Second, append([]string{bin("jsrun")}, args...)...)
}

// hold starts a jsrun whose command runs until released, and waits until
// the command runs (and jsd knows its pid: the lease is fully set up).
func (d *daemon) hold(t *testing.T, args ...string) (p *bgProc, cmdPID int, release func()) {
	t.Helper()
	script, started, releaseFile := holdScript(t.TempDir())
	argv := append(append([]string{bin("jsrun")}, args...), "--", "sh", "-c", script)
	p = startBg(t, baseEnv(d.dir), argv...)
	cmdPID = readPID(t, started)
	d.waitLeasePID(t, cmdPID)
	return p, cmdPID, func() { os.WriteFile(releaseFile, nil, 0o644) }
}

// waitLeasePID waits until jsd shows a lease run by pid: jsrun has told it
// the command's group ("started"), after it began forwarding signals.
func (d *daemon) waitLeasePID(t testing.TB, pid int) {
	t.Helper()
	waitFor(t, 10*time.Second, "jsd to know the lease's command", func() bool {
		for _, l := range d.status().Leases {
			if l.PID == pid {
				return true
			}
		}
		return false
	})
}

// The command's status passes through; jsrun's own conditions have their
// own codes, and then nothing runs.
func TestJsrunExitCodes(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "2")
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	writeFile(t, notExec, "#!/bin/sh\ntouch "+filepath.Join(dir, "ran")+"\n")
	os.Chmod(notExec, 0o644)
	marker := filepath.Join(dir, "marker")
	touch := []string{"--", "touch", marker}
	cases := []struct {
		name string
		args []string
		code int
		err  string // in stderr
	}{
		{"success", []string{"--", "true"}, 0, ""},
		{"exit status", []string{"--", "sh", "-c", "exit 3"}, 3, ""},
		{"killed by SIGKILL", []string{"--", "sh", "-c", "kill -9 $$"}, 128 + 9, ""},
		{"killed by SIGTERM", []string{"--", "sh", "-c", "kill -TERM $$"}, 128 + 15, ""},
		{"not found", []string{"--", "js-no-such-command"}, 127, "jsrun: error:"},
		{"not found by path", []string{"--", filepath.Join(dir, "missing")}, 127, "jsrun: error:"},
		{"not executable", []string{"--", notExec}, 126, "jsrun: error:"},
		{"a directory", []string{"--", dir}, 126, "jsrun: error:"},
		{"no command", []string{}, 64, "jsrun: hint:"},
		{"no command after --", []string{"--"}, 64, "jsrun: hint:"},
		{"bad --env name", append([]string{"--env", "1X=y"}, touch...), 64, "--env"},
		{"--env without =", append([]string{"--env", "X"}, touch...), 64, "--env"},
		{"--env empty name", append([]string{"--env=" + "=y"}, touch...), 64, "--env"},
		{"bad --unset name", append([]string{"--unset", "A=B"}, touch...), 64, "--unset"},
		{"bad --unset dash", append([]string{"--unset=A-B"}, touch...), 64, "--unset"},
		{"unknown flag", append([]string{"--bogus"}, touch...), 64, "jsrun: hint:"},
		{"--slots 0", append([]string{"--slots", "0"}, touch...), 64, "--slots"},
		{"more slots than the pool", append([]string{"--slots", "3"}, touch...), 64, "jsrun: hint:"},
		{"bad --pdeathsig", append([]string{"--pdeathsig", "NOPE"}, touch...), 64, "--pdeathsig"},
		{"bad --jobserver-style", append([]string{"--jobserver-style", "socket"}, touch...), 64, "jsrun: error:"},
		{"bad --min-free-mem", append([]string{"--min-free-mem", "lots"}, touch...), 64, "--min-free-mem"},
		{"bad --max-load", append([]string{"--max-load=-1"}, touch...), 64, "--max-load"},
	}
	for _, tc := range cases {
		r := d.jsrun(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.err) {
			t.Errorf("%s: jsrun %q: exit %d, stderr %q; want %d with %q", tc.name, tc.args, r.code, r.stderr, tc.code, tc.err)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("%s: the command ran although jsrun refused", tc.name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Fatal("the non-executable script ran")
	}
	d.waitWhole(10 * time.Second)
}

// Everything after the command is the command's, --env and --unset
// included, with or without "--".
func TestJsrunCommandArgsAreNotJsruns(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "1")
	for _, args := range [][]string{
		{"sh", "-c", `echo "[${JS_T-unset}] $0 $1"`, "--env=JS_T=x", "--unset"},
		{"--", "sh", "-c", `echo "[${JS_T-unset}] $0 $1"`, "--env=JS_T=x", "--unset"},
	} {
		r := d.jsrun(t, args...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != "[unset] --env=JS_T=x --unset" {
			t.Errorf("jsrun %q: exit %d, stdout %q; want the arguments passed to the command untouched\n%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// --env and --unset apply in the order given.
func TestJsrunEnvInOrder(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "1")
	show := `printf '%s|%s|%s|%s|%s' "${A-unset}" "${B-unset}" "${C-unset}" "${JS_KEEP-unset}" "${HOME-unset}"`
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--env", "A=1", "--unset", "A", "--env", "B=2", "--env", "B=3", "--env=C=x=y", "--unset=HOME"}, "unset|3|x=y|kept|unset"},
		{[]string{"--unset", "A", "--env", "A=1"}, "1|unset|unset|kept|home"},
		{[]string{"--env", "A=1", "--unset", "A", "--env", "A=2", "--env", "A="}, "|unset|unset|kept|home"},
		{[]string{"--unset", "JS_KEEP", "--unset", "NOT_SET_ANYWHERE"}, "unset|unset|unset|unset|home"},
	}
	env := append(baseEnv(d.dir), "JS_KEEP=kept", "HOME=home")
	for _, tc := range cases {
		args := append(append([]string{bin("jsrun")}, tc.args...), "--", "sh", "-c", show)
		r := runIn(t, env, "", 10*time.Second, args...)
		if r.code != 0 || r.stdout != tc.want {
			t.Errorf("jsrun %q: exit %d, got %q, want %q\n%s", tc.args, r.code, r.stdout, tc.want, r.stderr)
		}
	}
}

// --timeout 0 on a full pool: exit 75 at once and nothing runs; a short
// timeout waits, then gives up the same way.
func TestJsrunTimeoutOnFullPool(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "1")
	holder, _, release := d.hold(t)
	marker := filepath.Join(t.TempDir(), "ran")
	for _, timeout := range []string{"0", "0.3"} {
		r := d.jsrun(t, "--timeout", timeout, "--", "touch", marker)
		if r.code != 75 || !strings.Contains(r.stderr, "jsrun: error:") {
			t.Errorf("--timeout %s on a full pool: exit %d %q, want 75", timeout, r.code, r.stderr)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("--timeout %s: the command ran without a slot", timeout)
		}
	}
	if s := d.status().Slots; s.Waiting != 0 || s.Leased != 1 {
		t.Fatalf("after the timeouts: %+v, want only the holder's lease and nobody waiting", s)
	}
	release()
	if code := holder.wait(t, "the holder"); code != 0 {
		t.Fatalf("holder exit %d", code)
	}
	if r := d.jsrun(t, "--timeout", "0", "--", "touch", marker); r.code != 0 {
		t.Fatalf("--timeout 0 on a free pool: exit %d %s", r.code, r.stderr)
	}
	d.waitWhole(10 * time.Second)
}

// No jsd, autostart off: 69 with a hint, and no jsd appears.
func TestJsrunNoAutostart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "js")
	marker := filepath.Join(t.TempDir(), "ran")
	r := runIn(t, baseEnv(dir), "", 10*time.Second, bin("jsrun"), "--no-autostart", "--", "touch", marker)
	if r.code != 69 || !strings.Contains(r.stderr, "jsrun: error:") || !strings.Contains(r.stderr, "jsrun: hint:") {
		t.Fatalf("exit %d, stderr %q; want 69 with an error and a hint", r.code, r.stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command ran without a jobserver")
	}
	if _, err := os.Stat(filepath.Join(dir, "jsd.sock")); err == nil {
		t.Fatal("a jsd was started despite --no-autostart")
	}
}

// No jsd: jsrun starts one for its dir in the background (with an idle
// timeout), which then serves everyone; jsctl shutdown stops it.
func TestJsrunAutostart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "js")
	sf := filepath.Join(dir, "status.json")
	var jsdPID int
	t.Cleanup(func() {
		// Only if the test failed half-way: the jsd is not our child.
		if jsdPID > 0 && rundir.LockHolder(filepath.Join(dir, "jsd.lock")) == jsdPID {
			syscall.Kill(jsdPID, syscall.SIGKILL)
		}
	})
	r := runIn(t, baseEnv(dir), "", 20*time.Second, bin("jsrun"), "--", "sh", "-c", `echo "$MAKEFLAGS"`)
	if r.code != 0 {
		t.Fatalf("jsrun with no jsd: exit %d\n%s", r.code, r.stderr)
	}
	m := waitStatus(t, sf, "running")
	jsdPID = int(num(m, "pid"))
	if jsdPID <= 0 || procGone(jsdPID) {
		t.Fatalf("status file %v: want a live jsd", m)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("-j%d ", int(num(m, "slots", "total")))) {
		t.Errorf("MAKEFLAGS %q does not name the autostarted pool of %v", r.stdout, m["slots"])
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", jsdPID))
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if !strings.HasSuffix(args[0], "jsd") || !strings.Contains(strings.Join(args, " "), "--timeout") {
		t.Errorf("autostarted jsd runs as %q: want jsd with --timeout (it stops when idle)", args)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("runtime dir %v %v, want 0700", fi.Mode(), err)
	}
	// The next jsrun uses it rather than starting another.
	if r := runIn(t, baseEnv(dir), "", 10*time.Second, bin("jsrun"), "--no-autostart", "--", "true"); r.code != 0 {
		t.Fatalf("second jsrun: exit %d\n%s", r.code, r.stderr)
	}
	if m, _ := statusMap(t, sf); int(num(m, "pid")) != jsdPID {
		t.Fatalf("a second jsd replaced the first: %v", m)
	}
	ctl := exec.Command(bin("jsctl"), "shutdown")
	ctl.Env = baseEnv(dir)
	if out, err := ctl.CombinedOutput(); err != nil {
		t.Fatalf("jsctl shutdown: %v\n%s", err, out)
	}
	waitStatus(t, sf, "stopped")
	waitFor(t, 10*time.Second, "the autostarted jsd to release its dir", func() bool {
		return rundir.LockHolder(filepath.Join(dir, "jsd.lock")) == 0
	})
}

// SIGTERM, SIGINT and SIGHUP to jsrun reach the command, whose status jsrun
// then exits with.
func TestJsrunForwardsSignals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
	}{{syscall.SIGTERM, "TERM"}, {syscall.SIGINT, "INT"}, {syscall.SIGHUP, "HUP"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := startJSD(t, "--slots", "1")
			dir := t.TempDir()
			got, started := filepath.Join(dir, "got"), filepath.Join(dir, "started")
			script := fmt.Sprintf(`for s in TERM INT HUP; do trap "echo $s > %s; exit 7" $s; done
echo $$ > %s
while :; do sleep 0.02; done`, got, started)
			p := startBg(t, baseEnv(d.dir), bin("jsrun"), "--", "sh", "-c", script)
			// jsrun forwards from before it tells jsd the command's pid.
			d.waitLeasePID(t, readPID(t, started))
			p.cmd.Process.Signal(tc.sig)
			if code := p.wait(t, "jsrun"); code != 7 {
				t.Fatalf("jsrun exited %d after SIG%s, want the command's 7\n%s", code, tc.name, p.stderr)
			}
			if b, _ := os.ReadFile(got); strings.TrimSpace(string(b)) != tc.name {
				t.Fatalf("the command got %q, want %s", b, tc.name)
			}
		})
	}
}

// Killing jsrun with SIGKILL kills its command and the command's children:
// nothing runs on a slot nobody holds.
func TestJsrunKilledKillsCommand(t *testing.T) {
	t.Parallel()
	t.Run("with jsd", func(t *testing.T) {
		t.Parallel()
		d := startJSD(t, "--slots", "1")
		bg := filepath.Join(t.TempDir(), "bg")
		script, started, _ := holdScript(t.TempDir())
		p := startBg(t, baseEnv(d.dir), bin("jsrun"), "--", "sh", "-c",
			"sleep 60 </dev/null >/dev/null 2>&1 & echo $! > "+bg+"; "+script)
		cmdPID := readPID(t, started)
		bgPID := readPID(t, bg)
		// Once jsd knows the command's group (jsrun's "started"), it kills
		// the group when jsrun's connection drops.
		d.waitLeasePID(t, cmdPID)
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		p.wait(t, "jsrun")
		waitFor(t, 10*time.Second, "the command and its child to be killed", func() bool {
			return procGone(cmdPID) && procGone(bgPID)
		})
		d.waitWhole(10 * time.Second)
	})
	// With no jsd (make's pool only), PR_SET_PDEATHSIG alone does it, with
	// the signal --pdeathsig names.
	t.Run("pdeathsig", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fifo := makePool(t, dir, 2)
		got, started := filepath.Join(dir, "got"), filepath.Join(dir, "started")
		env := append(baseEnv(filepath.Join(dir, "nojsd")), "MAKEFLAGS= -j3 --jobserver-auth=fifo:"+fifo)
		p := startBg(t, env, bin("jsrun"), "--no-autostart", "--pdeathsig", "TERM", "--", "sh", "-c",
			fmt.Sprintf(`trap "echo TERM > %s; exit 0" TERM; echo $$ > %s; while :; do sleep 0.02; done`, got, started))
		readPID(t, started)
		if n := fifoTokens(t, fifo); n != 1 {
			t.Fatalf("jsrun took %d tokens from make's pool of 2, want 1", 2-n)
		}
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		p.wait(t, "jsrun")
		waitFor(t, 10*time.Second, "the command to get SIGTERM", func() bool {
			b, _ := os.ReadFile(got)
			return strings.TrimSpace(string(b)) == "TERM"
		})
	})
}

// makePool is a make-style pool: a FIFO holding n tokens, held open by the
// test so it keeps them.
func makePool(t *testing.T, dir string, n int) string {
	t.Helper()
	fifo := filepath.Join(dir, "make.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(fifo, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.Write(fd, []byte(strings.Repeat("+", n))); err != nil {
		t.Fatal(err)
	}
	return fifo
}

// A weighted job's lease shows in jsctl status --json with its slots.
func TestJsrunWeightedLease(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "3")
	holder, pid, release := d.hold(t, "--slots", "2")
	s := d.status()
	if len(s.Leases) != 1 || s.Leases[0].Slots != 2 || s.Leases[0].PID != pid || !strings.HasPrefix(s.Leases[0].Command, "sh -c ") {
		t.Fatalf("leases %+v: want one of 2 slots run by pid %d", s.Leases, pid)
	}
	if s.Slots.Free != 1 || s.Slots.InUse != 2 || s.Slots.Leased != 1 {
		t.Fatalf("slots %+v: want 2 in use, 1 free", s.Slots)
	}
	if r := d.jsrun(t, "--slots", "2", "--timeout", "0", "--", "true"); r.code != 75 {
		t.Fatalf("a second 2-slot job with 1 free: exit %d, want 75\n%s", r.code, r.stderr)
	}
	if r := d.jsrun(t, "--timeout", "0", "--", "true"); r.code != 0 {
		t.Fatalf("a 1-slot job with 1 free: exit %d\n%s", r.code, r.stderr)
	}
	release()
	holder.wait(t, "the weighted job")
	d.waitWhole(10 * time.Second)
}

// The command gets the pool in MAKEFLAGS: as two descriptors (default) or
// as the FIFO's path.
func TestJsrunJobserverStyles(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "2")
	fifo := filepath.Join(d.dir, "jobserver.fifo")

	r := d.jsrun(t, "--jobserver-style", "fifo", "--", "sh", "-c", `echo "$MAKEFLAGS"`)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "-j2 --jobserver-auth=fifo:"+fifo {
		t.Fatalf("fifo style: exit %d, MAKEFLAGS %q\n%s", r.code, r.stdout, r.stderr)
	}

	// Pipe style: fds 3 and 4 are the FIFO, blocking descriptions of the
	// command's own, and a token taken on 3 goes back on 4.
	script := `echo "$MAKEFLAGS"
readlink /proc/$$/fd/3 /proc/$$/fd/4
grep '^flags' /proc/$$/fdinfo/3 /proc/$$/fdinfo/4 | sed 's/.*://'
dd bs=1 count=1 <&3 2>/dev/null >&4 && echo token-ok`
	for _, args := range [][]string{{"--", "sh", "-c", script}, {"--jobserver-style", "pipe", "--", "sh", "-c", script}} {
		r := d.jsrun(t, args...)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 6 {
			t.Fatalf("pipe style: exit %d, output %q\n%s", r.code, r.stdout, r.stderr)
		}
		if strings.TrimSpace(lines[0]) != "-j2 --jobserver-auth=3,4" {
			t.Errorf("pipe style MAKEFLAGS %q", lines[0])
		}
		if lines[1] != fifo || lines[2] != fifo {
			t.Errorf("fds 3 and 4 are %q and %q, want the fifo %s", lines[1], lines[2], fifo)
		}
		for _, fl := range lines[3:5] {
			flags, err := strconv.ParseInt(strings.TrimSpace(fl), 8, 64)
			if err != nil || flags&unix.O_NONBLOCK != 0 || flags&unix.O_ACCMODE != unix.O_RDWR {
				t.Errorf("fd flags %q: want blocking and read-write", fl)
			}
		}
		if lines[5] != "token-ok" {
			t.Errorf("no token through fds 3 and 4: %q", lines[5])
		}
	}

	// make's own flags in MAKEFLAGS are kept; its pool is replaced.
	env := append(baseEnv(d.dir), "MAKEFLAGS=k")
	r = runIn(t, env, "", 10*time.Second, bin("jsrun"), "--", "sh", "-c", `echo "$MAKEFLAGS"`)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "k -j2 --jobserver-auth=3,4" {
		t.Fatalf("MAKEFLAGS=k: exit %d, MAKEFLAGS %q\n%s", r.code, r.stdout, r.stderr)
	}
	d.waitWhole(10 * time.Second)
}

// Admission: --gate, --min-free-mem and --max-load hold the command back
// until they pass; with --timeout, 75 and nothing run.
func TestJsrunAdmission(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "2")
	t.Run("gate opens", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		tried, open, ran := filepath.Join(dir, "tried"), filepath.Join(dir, "open"), filepath.Join(dir, "ran")
		gate := fmt.Sprintf("touch %s; test -e %s", tried, open)
		p := startBg(t, baseEnv(d.dir), bin("jsrun"), "--gate", gate, "--", "touch", ran)
		waitFor(t, 10*time.Second, "the gate to be tried", func() bool { _, err := os.Stat(tried); return err == nil })
		if _, err := os.Stat(ran); err == nil || p.exited() {
			t.Fatal("the command ran while its gate was closed")
		}
		os.WriteFile(open, nil, 0o644)
		if code := p.wait(t, "jsrun behind the gate"); code != 0 {
			t.Fatalf("exit %d: %s", code, p.stderr)
		}
		if _, err := os.Stat(ran); err != nil {
			t.Fatal("the command did not run once the gate opened")
		}
	})
	t.Run("gate stays closed", func(t *testing.T) {
		t.Parallel()
		ran := filepath.Join(t.TempDir(), "ran")
		r := d.jsrun(t, "--gate", "false", "--timeout", "0.5", "--", "touch", ran)
		if r.code != 75 || !strings.Contains(r.stderr, "jsrun: error:") {
			t.Fatalf("closed gate: exit %d %q, want 75", r.code, r.stderr)
		}
		if _, err := os.Stat(ran); err == nil {
			t.Fatal("the command ran although its gate never opened")
		}
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		ran := filepath.Join(t.TempDir(), "ran")
		if r := d.jsrun(t, "--min-free-mem", "1000T", "--timeout", "0.3", "--", "touch", ran); r.code != 75 {
			t.Fatalf("--min-free-mem 1000T: exit %d %q, want 75", r.code, r.stderr)
		}
		if _, err := os.Stat(ran); err == nil {
			t.Fatal("the command ran without the memory it asked for")
		}
		if r := d.jsrun(t, "--min-free-mem", "1K", "--timeout", "0.3", "--", "touch", ran); r.code != 0 {
			t.Fatalf("--min-free-mem 1K: exit %d %q", r.code, r.stderr)
		}
	})
	t.Run("load", func(t *testing.T) {
		t.Parallel()
		ran := filepath.Join(t.TempDir(), "ran")
		if r := d.jsrun(t, "--max-load", "100000", "--timeout", "0.3", "--", "touch", ran); r.code != 0 {
			t.Fatalf("--max-load 100000: exit %d %q", r.code, r.stderr)
		}
		b, _ := os.ReadFile("/proc/loadavg")
		var load float64
		fmt.Sscan(string(b), &load)
		if load <= 0.02 {
			t.Skipf("load %.2f is too low to test a closed --max-load", load)
		}
		os.Remove(ran)
		if r := d.jsrun(t, "--max-load", "0.01", "--timeout", "0.3", "--", "touch", ran); r.code != 75 {
			t.Fatalf("--max-load 0.01 at load %.2f: exit %d %q, want 75", load, r.code, r.stderr)
		}
		if _, err := os.Stat(ran); err == nil {
			t.Fatal("the command ran above its load limit")
		}
	})
}

// A waiter whose timeout_ms passes gets "blocked" at its deadline, with no
// other activity on jsd.
//
// Known bug in pkg/server (not ours to change here): Server.loop's timer
// paths (the "locked" helper: waiter expiry, the idle tick, beginStop on
// SIGTERM) queue replies with conn.sendRaw but never call s.flushDirty(),
// so the reply sits in the connection's pending buffer until some other
// request on any connection flushes it. jsrun no longer hangs on it (it
// gives up by itself shortly after its --timeout); other clients do. Set
func TestJsdAnswersBlockedAtTheDeadline(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "1")
	d.hold(t)
	c, err := net.Dial("unix", filepath.Join(d.dir, "jsd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(`{"cmd":"acquire","slots":1,"timeout_ms":200}` + "\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, `"blocked"`) {
		t.Fatalf("reply %q, %v: want a blocked error soon after 200 ms", line, err)
	}
}

// jsctl against no jsd or a dead one: 69, an error and a hint.
func TestJsctlStatusWithoutJsd(t *testing.T) {
	t.Parallel()
	check := func(what, dir string) {
		t.Helper()
		r := runIn(t, baseEnv(dir), "", 10*time.Second, bin("jsctl"), "status")
		if r.code != 69 || !strings.Contains(r.stderr, "jsctl: error:") || !strings.Contains(r.stderr, "jsctl: hint:") {
			t.Errorf("%s: exit %d, stderr %q; want 69 with an error and a hint", what, r.code, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("%s: stdout %q, want nothing", what, r.stdout)
		}
	}
	check("no such dir", filepath.Join(t.TempDir(), "nothing-here"))
	d := startJSD(t, "--slots", "1")
	d.kill() // leaves its socket and a "running" status file behind
	check("a SIGKILLed jsd", d.dir)
}

// cargo is a jobserver client of the pool jsrun hands it; the pool is
// whole afterwards.
func TestCargoUnderJsrun(t *testing.T) {
	t.Parallel()
	cargo, err := exec.LookPath("cargo")
	if err != nil {
		t.Skip("cargo is not installed")
	}
	crate := t.TempDir()
	writeFile(t, filepath.Join(crate, "Cargo.toml"), "[package]\nname = \"jsprobe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n")
	os.Mkdir(filepath.Join(crate, "src"), 0o755)
	writeFile(t, filepath.Join(crate, "src", "main.rs"), "fn main() { println!(\"hi\"); }\n")
	d := startJSD(t, "--slots", "2")
	for _, k := range []string{"1", "2"} {
		env := append(baseEnv(d.dir), "CARGO_TARGET_DIR="+t.TempDir(), "CARGO_TERM_COLOR=never")
		r := runIn(t, env, crate, 120*time.Second, bin("jsrun"), "--slots", k, "--", cargo, "build", "--offline")
		if r.code != 0 {
			t.Fatalf("jsrun --slots %s -- cargo build: exit %d\n%s", k, r.code, r.stderr)
		}
		d.waitWhole(10 * time.Second)
	}
}
