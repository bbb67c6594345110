package launch

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a helper process (LAUNCH_HELPER set): it
// starts a command with launch and waits for it, so the tests can kill the
// helper or signal it without touching the test process itself.
func TestMain(m *testing.M) {
	mode := os.Getenv("LAUNCH_HELPER")
	if mode == "" {
		os.Exit(m.Run())
	}
	sig, _ := ParseSignal(os.Getenv("LAUNCH_PDEATHSIG"))
	var fwd *Forwarder
	if mode == "forwarder" || mode == "forwarder-hold" {
		fwd = NewForwarder()
		<-fwd.ready
		if mode == "forwarder-hold" {
			// Armed, no command yet: wait for the test's signal (or a line).
			fmt.Println("armed")
			bufio.NewReader(os.Stdin).ReadString('\n')
		}
	}
	p, err := Start(Spec{Argv: []string{"sh", "-c", os.Getenv("LAUNCH_SCRIPT")}, Pdeathsig: sig, Forwarder: fwd})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(100)
	}
	if mode == "forward" {
		p.Forward()
	}
	fmt.Println("started", p.PID())
	os.Exit(p.Wait())
}

// devnull is a quiet stdio for commands the tests run in-process.
func devnull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func run(t *testing.T, argv ...string) (int, error) {
	t.Helper()
	null := devnull(t)
	p, err := Start(Spec{Argv: argv, Stdin: null, Stdout: null, Stderr: null})
	if err != nil {
		return 0, err
	}
	return p.Wait(), nil
}

func TestExitStatus(t *testing.T) {
	cases := []struct {
		argv []string
		want int
	}{
		{[]string{"true"}, 0},
		{[]string{"false"}, 1},
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"sh", "-c", "exit 255"}, 255},
		{[]string{"sh", "-c", "kill -9 $$"}, 128 + 9},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
	}
	for _, tc := range cases {
		got, err := run(t, tc.argv...)
		if err != nil || got != tc.want {
			t.Errorf("%q: status %d, %v; want %d", tc.argv, got, err, tc.want)
		}
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	os.WriteFile(notExec, []byte("#!/bin/sh\ntrue\n"), 0o644)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte{0x7f, 'E', 'L', 'F', 0, 0, 0, 0}, 0o755)
	cases := []struct {
		name string
		argv []string
		want int
	}{
		{"no command", nil, ExitNotFound},
		{"not on PATH", []string{"js-no-such-command-here"}, ExitNotFound},
		{"missing path", []string{filepath.Join(dir, "missing")}, ExitNotFound},
		{"not executable", []string{notExec}, ExitCannotRun},
		{"a directory", []string{dir}, ExitCannotRun},
		{"not a program", []string{garbage}, ExitCannotRun},
	}
	for _, tc := range cases {
		_, err := run(t, tc.argv...)
		var se *StartError
		if !errors.As(err, &se) || se.Status != tc.want {
			t.Errorf("%s: %v, want a StartError with status %d", tc.name, err, tc.want)
			continue
		}
		if len(tc.argv) > 0 && !strings.Contains(se.Error(), tc.argv[0]) {
			t.Errorf("%s: error %q does not name the command", tc.name, se)
		}
		if se.Unwrap() == nil {
			t.Errorf("%s: no underlying error", tc.name)
		}
	}
}

// gone reports whether pid has exited (a zombie nobody reaps counts).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The command leads a process group of its own, and Signal reaches all of
// it, a background grandchild included.
func TestProcessGroup(t *testing.T) {
	bg := filepath.Join(t.TempDir(), "bg")
	null := devnull(t)
	p, err := Start(Spec{Argv: []string{"sh", "-c", "sleep 60 & echo $! > " + bg + "; wait"}, Stdin: null, Stdout: null, Stderr: null})
	if err != nil {
		t.Fatal(err)
	}
	pgid, err := syscall.Getpgid(p.PID())
	if err != nil || pgid != p.PID() || pgid == syscall.Getpgrp() {
		p.Signal(syscall.SIGKILL)
		p.Wait()
		t.Fatalf("command pgid %d (%v), pid %d, ours %d: want a group of its own", pgid, err, p.PID(), syscall.Getpgrp())
	}
	var sleepPID int
	waitUntil(t, "the background sleep to start", func() bool {
		b, _ := os.ReadFile(bg)
		_, err := fmt.Sscan(string(b), &sleepPID)
		return err == nil && sleepPID > 0
	})
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st := p.Wait(); st != 128+int(syscall.SIGTERM) {
		t.Errorf("status %d, want %d", st, 128+int(syscall.SIGTERM))
	}
	waitUntil(t, "the grandchild to get the signal too", func() bool { return gone(sleepPID) })
}

func TestEnvAndExtraFiles(t *testing.T) {
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	extra, err := os.Create(filepath.Join(dir, "extra"))
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	null := devnull(t)
	p, err := Start(Spec{
		Argv:       []string{"sh", "-c", `echo "$JS_X" ; echo via3 >&3`},
		Env:        []string{"PATH=" + os.Getenv("PATH"), "JS_X=hello"},
		ExtraFiles: []*os.File{extra},
		Stdin:      null, Stdout: out, Stderr: null,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Wait(); st != 0 {
		t.Fatalf("status %d", st)
	}
	if b, _ := os.ReadFile(out.Name()); string(b) != "hello\n" {
		t.Errorf("stdout %q, want the environment given", b)
	}
	if b, _ := os.ReadFile(extra.Name()); string(b) != "via3\n" {
		t.Errorf("fd 3 got %q, want the extra file", b)
	}
}

// The environment is deduplicated as os/exec does it (the last one wins),
// and a NUL in it refuses the start.
func TestEnvAsOSExec(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	null := devnull(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "JS_A=1", "JS_B=x", "JS_A=2", "novalue", "", "=odd", "JS_B=y"}
	p, err := Start(Spec{Argv: []string{"sh", "-c", `echo "$JS_A $JS_B" > ` + out}, Env: env, Stdin: null, Stdout: null, Stderr: null})
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Wait(); st != 0 {
		t.Fatalf("status %d", st)
	}
	if b, _ := os.ReadFile(out); string(b) != "2 y\n" {
		t.Errorf("the command saw %q, want the last values", b)
	}
	got, err := dedupEnv(env)
	cmd := exec.Command("true")
	cmd.Env = env
	if wantEnv := cmd.Environ(); err != nil || !slices.Equal(got, wantEnv) {
		t.Errorf("dedupEnv = %q, %v; os/exec's %q", got, err, wantEnv)
	}
	_, err = Start(Spec{Argv: []string{"true"}, Env: []string{"A=1\x00"}, Stdin: null, Stdout: null, Stderr: null})
	var se *StartError
	if !errors.As(err, &se) || se.Status != ExitCannotRun || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("a NUL in the environment: %v, want a StartError with status %d", err, ExitCannotRun)
	}
}

// startHelper runs this test binary as a helper that launches script.
func startHelper(t *testing.T, mode, pdeathsig, script string) (*exec.Cmd, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LAUNCH_HELPER="+mode, "LAUNCH_PDEATHSIG="+pdeathsig, "LAUNCH_SCRIPT="+script, "GORACE=atexit_sleep_ms=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
	}()
	var pid int
	select {
	case l := <-line:
		if _, err := fmt.Sscanf(l, "started %d", &pid); err != nil {
			t.Fatalf("helper said %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the helper did not start its command in 10 s")
	}
	return cmd, pid
}

// trapScript records the signal that ends it in file out, once it has
// written ready.
func trapScript(ready, out string) string {
	return fmt.Sprintf(`for s in TERM INT HUP; do trap "echo $s > %[2]s; exit 5" $s; done
echo ready > %[1]s
while :; do sleep 0.05; done`, ready, out)
}

// If the process that launched the command dies (SIGKILL), the command
// gets its pdeathsig.
func TestPdeathsig(t *testing.T) {
	dir := t.TempDir()
	ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "out")
	helper, _ := startHelper(t, "wait", "TERM", trapScript(ready, out))
	waitUntil(t, "the command to trap its signals", func() bool { _, err := os.Stat(ready); return err == nil })
	helper.Process.Kill()
	helper.Wait()
	waitUntil(t, "the command to get SIGTERM", func() bool {
		b, _ := os.ReadFile(out)
		return strings.TrimSpace(string(b)) == "TERM"
	})
}

// SIGINT, SIGTERM and SIGHUP sent to the launcher reach the command, whose
// status the launcher then exits with: with Proc.Forward ("forward") and with
// a Forwarder set up before Start ("forwarder").
func TestForward(t *testing.T) {
	for _, mode := range []string{"forward", "forwarder"} {
		for _, tc := range []struct {
			sig  syscall.Signal
			name string
		}{{syscall.SIGTERM, "TERM"}, {syscall.SIGINT, "INT"}, {syscall.SIGHUP, "HUP"}} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				ready, out := filepath.Join(dir, "ready"), filepath.Join(dir, "out")
				helper, _ := startHelper(t, mode, "KILL", trapScript(ready, out))
				waitUntil(t, "the command to trap its signals", func() bool { _, err := os.Stat(ready); return err == nil })
				helper.Process.Signal(tc.sig)
				err := helper.Wait()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 5 {
					t.Fatalf("helper ended with %v, want the command's status 5", err)
				}
				if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != tc.name {
					t.Fatalf("the command got %q, want %s", b, tc.name)
				}
			})
		}
	}
}

// Before the command starts, a signal the Forwarder has caught ends the
// process by that signal, as it would have without a Forwarder, and the
// command never runs.
func TestForwarderBeforeStart(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			ran := filepath.Join(t.TempDir(), "ran")
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "LAUNCH_HELPER=forwarder-hold", "LAUNCH_SCRIPT=touch "+ran, "GORACE=atexit_sleep_ms=0")
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
			if l, _ := bufio.NewReader(stdout).ReadString('\n'); l != "armed\n" {
				t.Fatalf("helper said %q", l)
			}
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("helper ended with %v, want killed by %v", err, sig)
			}
			if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != sig {
				t.Fatalf("helper ended with %v, want killed by %v", err, sig)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Fatal("the command ran")
			}
		})
	}
}

// A signal ignored when the process started stays ignored for the command
// (it inherits the disposition the Forwarder found), and is relayed once the
// command runs.
func TestForwarderKeepsIgnored(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := `grep SigIgn /proc/self/status > ` + out + `; echo ready >> ` + out + `; while :; do sleep 0.05; done`
	cmd := exec.Command("sh", "-c", `trap "" INT; exec "$0"`, os.Args[0])
	cmd.Env = append(os.Environ(), "LAUNCH_HELPER=forwarder", "LAUNCH_PDEATHSIG=KILL", "LAUNCH_SCRIPT="+script, "GORACE=atexit_sleep_ms=0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var ign uint64
	waitUntil(t, "the command to report its ignored signals", func() bool {
		b, _ := os.ReadFile(out)
		f := strings.Fields(string(b))
		if len(f) < 3 || f[2] != "ready" {
			return false
		}
		ign, _ = strconv.ParseUint(f[1], 16, 64)
		return true
	})
	if ign&(1<<(syscall.SIGINT-1)) == 0 {
		t.Fatalf("SigIgn %x: SIGINT is not ignored in the command", ign)
	}
	if ign&(1<<(syscall.SIGTERM-1)) != 0 {
		t.Fatalf("SigIgn %x: SIGTERM is ignored in the command", ign)
	}
	// SIGTERM reaches the command (its default action ends it).
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Fatalf("helper ended with %v, want the command's status %d", err, 128+int(syscall.SIGTERM))
	}
}

func TestExitStatusWithoutProcess(t *testing.T) {
	if st := ExitStatus(nil, nil); st != 0 {
		t.Errorf("ExitStatus(nil, nil) = %d", st)
	}
	if st := ExitStatus(nil, errors.New("x")); st != ExitCannotRun {
		t.Errorf("ExitStatus(nil, err) = %d", st)
	}
}

func TestParseSignal(t *testing.T) {
	good := map[string]syscall.Signal{
		"KILL": syscall.SIGKILL, "SIGKILL": syscall.SIGKILL, "kill": syscall.SIGKILL, "9": syscall.SIGKILL,
		"TERM": syscall.SIGTERM, "sigterm": syscall.SIGTERM, " hup ": syscall.SIGHUP, "INT": syscall.SIGINT,
		"USR1": syscall.SIGUSR1, "1": syscall.SIGHUP, "64": syscall.Signal(64),
	}
	for in, want := range good {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	// The names read without x/sys/unix's table agree with it.
	for _, name := range []string{"KILL", "TERM", "INT", "HUP"} {
		if got, _ := ParseSignal(name); got != unix.SignalNum("SIG"+name) {
			t.Errorf("ParseSignal(%q) = %v, x/sys/unix says %v", name, got, unix.SignalNum("SIG"+name))
		}
	}
	for _, in := range []string{"", "0", "65", "99999999999999999999", "-9", "SIG", "bogus", "KILL9", "9x"} {
		if got, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %v, want an error", in, got)
		}
	}
}
