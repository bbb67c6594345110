package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/status"
)

// binDir holds jsd, jsrun, jsctl and jsworker, built once per test run
// (with -race when the tests run with it).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "js-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := []string{"build", "-o", dir + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "../../cmd/...")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bin is the path of one of our binaries.
func bin(name string) string { return filepath.Join(binDir, name) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// daemon is a jsd started for one test.
type daemon struct {
	t      testing.TB
	dir    string
	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{}
}

// lockedBuffer is a bytes.Buffer a child process writes to while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// baseEnv is the environment every process of a test gets: our binaries
// first on PATH, JS_DIR at the test's dir, no MAKEFLAGS from outside.
func baseEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "JS_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "JS_SLOT", "JS_FIFO", "JS_SLOTS":
			continue
		}
		env = append(env, kv)
	}
	// Race-built binaries sleep 1 s at exit by default; a race in them
	// ends them with status 66, which the tests then see.
	return append(env, "PATH="+binDir+":"+os.Getenv("PATH"), "JS_DIR="+dir, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
}

// startJSD starts jsd with args in a fresh dir and waits until it answers.
func startJSD(t testing.TB, args ...string) *daemon {
	t.Helper()
	return startJSDIn(t, t.TempDir(), args...)
}

func startJSDIn(t testing.TB, dir string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, dir: dir, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin("jsd"), append([]string{"--dir", dir}, args...)...)
	d.cmd.Env = baseEnv(dir)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(d.stop)
	waitFor(t, 30*time.Second, "jsd to answer on its socket", func() bool {
		select {
		case <-d.exited:
			t.Fatalf("jsd exited early: %s", d.stderr)
		default:
		}
		c, err := net.Dial("unix", filepath.Join(dir, "jsd.sock"))
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return d
}

// stop sends SIGTERM and waits for jsd to exit.
func (d *daemon) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine: the reason.
		d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
		d.t.Errorf("jsd did not stop on SIGTERM within 15s; stderr (with goroutines):\n%s", d.stderr)
	}
}

// status asks jsd for its status document with jsctl.
func (d *daemon) status() status.Doc {
	d.t.Helper()
	out, err := d.jsctl("status", "--json")
	if err != nil {
		d.t.Fatalf("jsctl status: %v\n%s", err, out)
	}
	var doc status.Doc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		d.t.Fatalf("jsctl status --json: %v\n%s", err, out)
	}
	return doc
}

func (d *daemon) jsctl(args ...string) (string, error) {
	cmd := exec.Command(bin("jsctl"), args...)
	cmd.Env = baseEnv(d.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitWhole waits until the pool holds all its tokens again.
func (d *daemon) waitWhole(within time.Duration) {
	d.t.Helper()
	var last status.Doc
	deadline := time.Now().Add(within)
	for {
		last = d.status()
		if last.Slots.Free == last.Slots.Total && last.Slots.Leased == 0 && last.Slots.Waiting == 0 {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("pool not whole after %v: %+v", within, last.Slots)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result is a finished command.
type result struct {
	code           int
	stdout, stderr string
}

// runIn runs argv with env and dir, bounded by a deadline, and returns its
// exit code and output.
func runIn(t testing.TB, env []string, wd string, within time.Duration, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, wd
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v did not finish within %v\nstdout:\n%s\nstderr:\n%s", argv, within, out.String(), errb.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%v: %v", argv, err)
		}
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// probe is a shell script that records how many probes run at once: each
// run creates a marker file while it runs, counts the markers, and appends
// the count to a log. A count never exceeds the real concurrency.
type probe struct {
	dir, log, script string
}

func newProbe(t testing.TB) *probe {
	t.Helper()
	base := t.TempDir()
	p := &probe{dir: filepath.Join(base, "running"), log: filepath.Join(base, "counts"), script: filepath.Join(base, "probe")}
	os.Mkdir(p.dir, 0o755)
	script := fmt.Sprintf(`#!/bin/sh
m=%[1]s/run.$$
: > "$m"
ls %[1]s | grep -c '^run\.' >> %[2]s
sleep "${1:-0.3}"
ls %[1]s | grep -c '^run\.' >> %[2]s
rm -f "$m"
`, p.dir, p.log)
	if err := os.WriteFile(p.script, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// counts returns the number of runs logged and the largest concurrency seen.
func (p *probe) counts(t testing.TB) (runs, maxSeen int) {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatalf("probe log: %v", err)
	}
	lines := strings.Fields(string(b))
	for _, l := range lines {
		n, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("probe log line %q", l)
		}
		maxSeen = max(maxSeen, n)
	}
	return len(lines) / 2, maxSeen
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// metrics asks jsd for its counters with jsctl.
func (d *daemon) metrics() map[string]any {
	d.t.Helper()
	out, err := d.jsctl("metrics", "--json")
	if err != nil {
		d.t.Fatalf("jsctl metrics: %v\n%s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		d.t.Fatalf("jsctl metrics --json: %v\n%s", err, out)
	}
	return m
}

// ---- helpers for the fault, hostile-client and soak tests ----

// pid is jsd's process id.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// kill SIGKILLs jsd and waits until it is gone (its dir, FIFO and socket
// file stay behind, as after a crash).
func (d *daemon) kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// tcpAddr is jsd's TCP listener (started with --port or --port-range), read
// from its status file.
func (d *daemon) tcpAddr() string {
	d.t.Helper()
	var addr string
	waitFor(d.t, 10*time.Second, "the TCP port in the status file", func() bool {
		doc, err := status.Read(filepath.Join(d.dir, "status.json"))
		if err != nil || doc.Port == 0 || doc.PID != d.pid() {
			return false
		}
		host := doc.Host
		if host == "" {
			host = "127.0.0.1"
		}
		addr = net.JoinHostPort(host, strconv.Itoa(doc.Port))
		return true
	})
	return addr
}

// rssKB is a process's resident set (VmRSS) in KiB, 0 when it is gone.
func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// markedProcs lists the live processes whose environment holds
// JS_TEST_MARK=mark: what is left of the commands a test started with that
// mark (pids are reused; a mark is not).
func markedProcs(mark string) []int {
	want := []byte("JS_TEST_MARK=" + mark + "\x00")
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err == nil && bytes.Contains(append([]byte{0}, b...), append([]byte{0}, want...)) {
			out = append(out, pid)
		}
	}
	return out
}
