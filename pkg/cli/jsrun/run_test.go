package jsrun

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

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/jobserver"
)

// The test binary doubles as jsrun (JSRUN_TEST_MAIN set), so that these
// tests run jsrun's slot path against a fake jsd without building binaries.
func TestMain(m *testing.M) {
	if os.Getenv("JSRUN_TEST_MAIN") != "" {
		os.Exit(Main(os.Args[1:], cmdline.OS()))
	}
	os.Exit(m.Run())
}

// fakeSlotJSD is a jsd that grants every acquire at once and records each
// connection's lines, and when the connection ended, on conns.
type fakeSlotJSD struct {
	dir, fifo string
	conns     chan fakeConn
}

type fakeConn struct {
	lines []string
	ended time.Time
}

func startFakeSlotJSD(t *testing.T) *fakeSlotJSD {
	t.Helper()
	dir := t.TempDir()
	d := &fakeSlotJSD{dir: dir, fifo: filepath.Join(dir, "jobserver.fifo"), conns: make(chan fakeConn, 4)}
	if err := jobserver.CreateFIFO(d.fifo); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "jsd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var fc fakeConn
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						break
					}
					fc.lines = append(fc.lines, strings.TrimRight(line, "\r\n"))
					if strings.Contains(line, `"cmd":"acquire"`) {
						fmt.Fprintf(c, `{"cmd":"lease","slots":1,"lease":7,"fifo":%q,"total":3}`+"\r\n", d.fifo)
					}
				}
				fc.ended = time.Now()
				d.conns <- fc
			}()
		}
	}()
	return d
}

func (d *fakeSlotJSD) conn(t *testing.T) fakeConn {
	t.Helper()
	select {
	case c := <-d.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("jsrun's connection to jsd did not end in 10 s")
	}
	return fakeConn{}
}

// jsrunCmd runs this test binary as jsrun against d.
func (d *fakeSlotJSD) jsrunCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "JS_DIR", "JS_SLOT", "JS_FIFO", "JS_SLOTS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "JSRUN_TEST_MAIN=1", "JS_DIR="+d.dir, "GORACE=atexit_sleep_ms=0")
	return cmd
}

// The default path: acquire, then started with the command's pid, then
// release; the command's status is jsrun's.
func TestSlotMessages(t *testing.T) {
	d := startFakeSlotJSD(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := d.jsrunCmd("--", "sh", "-c", "echo $$ > "+pidFile+"; exit 3")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("jsrun: %v, want the command's status 3\n%s", err, out)
	}
	c := d.conn(t)
	b, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(b))
	want := []string{
		fmt.Sprintf(`{"cmd":"acquire","slots":1,"pid":%d,"command":"sh -c echo $$ \u003e %s; exit 3"}`, cmd.Process.Pid, pidFile),
		fmt.Sprintf(`{"cmd":"started","lease":7,"pid":%s,"command":"sh -c echo $$ \u003e %s; exit 3"}`, pid, pidFile),
		`{"cmd":"release","lease":7}`,
	}
	if strings.Join(c.lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("jsd got\n%s\nwant\n%s", strings.Join(c.lines, "\n"), strings.Join(want, "\n"))
	}
}

// --exec: the command replaces jsrun and holds the lease's connection (jsd
// sees it end only when the command exits), and MAKEFLAGS names the pool's
// FIFO on descriptors the command has.
func TestExecHoldsLease(t *testing.T) {
	d := startFakeSlotJSD(t)
	dir := t.TempDir()
	done, out := filepath.Join(dir, "done"), filepath.Join(dir, "out")
	script := `echo "$MAKEFLAGS" > ` + out + `; for fd in $(ls /proc/$$/fd); do echo "$fd $(readlink /proc/$$/fd/$fd)" >> ` + out + `; done; sleep 0.2; touch ` + done
	cmd := d.jsrunCmd("--exec", "--", "sh", "-c", script)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("jsrun --exec: %v\n%s", err, b)
	}
	c := d.conn(t)
	st, err := os.Stat(done)
	if err != nil {
		t.Fatalf("the command did not finish: %v", err)
	}
	if c.ended.Before(st.ModTime()) {
		t.Errorf("jsd saw the connection end at %v, before the command ended (%v)", c.ended, st.ModTime())
	}
	if len(c.lines) != 1 || !strings.HasPrefix(c.lines[0], `{"cmd":"acquire","slots":1,"pid":`+strconv.Itoa(cmd.Process.Pid)+",") {
		t.Errorf("jsd got %q, want one acquire", c.lines)
	}
	b, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	mf := strings.Fields(lines[0])
	var auth string
	for _, w := range mf {
		if a, ok := strings.CutPrefix(w, "--jobserver-auth="); ok {
			auth = a
		}
	}
	r, w, ok := strings.Cut(auth, ",")
	if !ok || len(mf) < 2 || mf[0] != "-j3" {
		t.Fatalf("MAKEFLAGS %q, want -j3 and --jobserver-auth=R,W", lines[0])
	}
	fds := map[string]string{}
	for _, l := range lines[1:] {
		if fd, target, ok := strings.Cut(l, " "); ok {
			fds[fd] = target
		}
	}
	if fds[r] != d.fifo || fds[w] != d.fifo {
		t.Errorf("MAKEFLAGS names fds %s,%s; the command has %v (want the FIFO %s)", r, w, fds, d.fifo)
	}
	sockets := 0
	for _, target := range fds {
		if strings.HasPrefix(target, "socket:") {
			sockets++
		}
	}
	if sockets != 1 {
		t.Errorf("the command has %d sockets open, want the lease's one: %v", sockets, fds)
	}
}

// A signal to jsrun while it waits for its slot ends it by that signal
// (nothing runs), as it did before jsrun caught signals that early.
func TestSignalWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "jsd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // never answered
		}
	}()
	d := &fakeSlotJSD{dir: dir}
	ran := filepath.Join(t.TempDir(), "ran")
	cmd := d.jsrunCmd("--", "touch", ran)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var c net.Conn
	select {
	case c = <-accepted:
		defer c.Close()
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("jsrun did not connect in 10 s")
	}
	// Its acquire: jsrun waits now, and its forwarder has most likely caught
	// SIGTERM (NewForwarder runs before the acquire; the Go runtime catches
	// SIGTERM either way, so /proc cannot tell). Either path must end jsrun
	// by the signal without running anything.
	c.Read(make([]byte, 256))
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("jsrun: %v, want killed by SIGTERM", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("jsrun: %v, want killed by SIGTERM", err)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the command ran")
	}
}
