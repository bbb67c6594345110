package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/wire"
)

// jsd at its open-file limit refuses new connections at once with an
// fd_limit error (instead of leaving them in the accept queue), logs it once
// for the whole stretch, keeps serving the connections it has, and serves
// new ones again once descriptors free up. jsrun and jsctl say what is
// wrong and exit 69.
func TestJsdAtItsOpenFileLimit(t *testing.T) {
	t.Parallel()
	const limit = 64
	dir := t.TempDir()
	// Go raises the soft limit to the hard one at start: set both.
	jsd := startJSDAs(t, []string{"sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$@"`, limit), "sh"}, dir, "--slots", "2")
	pid := jsd.cmd.Process.Pid
	if lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err != nil || !strings.Contains(string(lim), fmt.Sprintf("Max open files            %d                   %d", limit, limit)) {
		t.Fatalf("jsd does not run with RLIMIT_NOFILE %d: %v\n%s", limit, err, lim)
	}
	sock := filepath.Join(dir, "jsd.sock")

	type held struct {
		c  net.Conn
		br *bufio.Reader
	}
	// ping sends a ping and reads the one reply, both bounded by a deadline.
	// A refused connection may find its write failing (jsd closed first):
	// its reply is still there to read.
	ping := func(c net.Conn, br *bufio.Reader) (*wire.Msg, error) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		defer c.SetDeadline(time.Time{})
		c.Write([]byte(`{"cmd":"ping"}` + "\n"))
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		var m wire.Msg
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return nil, fmt.Errorf("%v: %q", err, line)
		}
		return &m, nil
	}
	var conns []held
	defer func() {
		for _, h := range conns {
			h.c.Close()
		}
	}()
	// Open connections until jsd runs out: each one is answered, served
	// (pong) or refused (fd_limit), never left hanging.
	var refusal *wire.Msg
	for i := 0; refusal == nil; i++ {
		if i > limit {
			t.Fatalf("%d connections served under RLIMIT_NOFILE %d: no refusal", i, limit)
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		br := bufio.NewReader(c)
		m, err := ping(c, br)
		if err != nil {
			t.Fatalf("connection %d: no answer: %v\njsd's log:\n%s", i, err, jsd.stderr)
		}
		switch {
		case m.Cmd == wire.CmdPong:
			conns = append(conns, held{c, br})
		case m.Cmd == wire.CmdError && m.Code == wire.CodeFDLimit:
			refusal = m
			// Then jsd closes it.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("a refused connection stays open")
			}
			c.Close()
		default:
			t.Fatalf("connection %d: unexpected reply %+v", i, m)
		}
	}
	t.Logf("%d connections served, then: %s", len(conns), refusal.Message)
	if len(conns) < 10 {
		t.Fatalf("only %d connections before the limit", len(conns))
	}
	if !strings.Contains(refusal.Message, "open-file limit") {
		t.Errorf("refusal message: %q", refusal.Message)
	}

	env := baseEnv(dir)
	// jsrun and jsctl are refused too, and say so, with 69.
	r := runIn(t, env, dir, 30*time.Second, bin("jsrun"), "--no-autostart", "--", "true")
	if r.code != 69 || !strings.Contains(r.stderr, "open-file limit") || !strings.Contains(r.stderr, "ulimit -n") {
		t.Errorf("jsrun at jsd's limit: exit %d, want 69 and the hint\nstderr: %s", r.code, r.stderr)
	}
	t.Logf("jsrun at the limit: exit %d\n%s", r.code, r.stderr)
	r = runIn(t, env, dir, 30*time.Second, bin("jsrun"), "--no-autostart", "--type", "t", "--", "true")
	if r.code != 69 || !strings.Contains(r.stderr, "open-file limit") || !strings.Contains(r.stderr, "not submitted") {
		t.Errorf("jsrun --type at jsd's limit: exit %d, want 69 and the hint\nstderr: %s", r.code, r.stderr)
	}
	r = runIn(t, env, dir, 30*time.Second, bin("jsctl"), "status")
	if r.code != 69 || !strings.Contains(r.stderr, "fd_limit") || !strings.Contains(r.stderr, "jsctl: hint: ") {
		t.Errorf("jsctl status at jsd's limit: exit %d, want 69 and the hint\nstderr: %s", r.code, r.stderr)
	}
	t.Logf("jsctl status at the limit: exit %d\n%s", r.code, r.stderr)

	// The connections jsd has are served throughout.
	for _, h := range []held{conns[0], conns[len(conns)-1]} {
		if m, err := ping(h.c, h.br); err != nil || m.Cmd != wire.CmdPong {
			t.Fatalf("a connection open before the limit: %v %+v", err, m)
		}
	}
	// One log line for the stretch, not one per refusal.
	if n := strings.Count(jsd.stderr.String(), "refusing new connections"); n != 1 {
		t.Errorf("jsd logged the limit %d times, want once:\n%s", n, jsd.stderr)
	}

	// Descriptors free up: jsd serves new connections again.
	for _, h := range conns[len(conns)-5:] {
		h.c.Close()
	}
	conns = conns[:len(conns)-5]
	waitFor(t, 20*time.Second, "jsrun to be served again", func() bool {
		r := runIn(t, env, dir, 30*time.Second, bin("jsrun"), "--no-autostart", "--", "true")
		if r.code != 0 && r.code != 69 {
			t.Fatalf("jsrun after the close: exit %d\nstderr: %s", r.code, r.stderr)
		}
		return r.code == 0
	})
	if m, err := ping(conns[0].c, conns[0].br); err != nil || m.Cmd != wire.CmdPong {
		t.Fatalf("a connection open before the limit, after it: %v %+v", err, m)
	}
	if !strings.Contains(jsd.stderr.String(), "descriptors free again") {
		t.Errorf("jsd did not log the end of the stretch:\n%s", jsd.stderr)
	}
	// The refusals are counted (metrics connections_refused): at least the
	// ping, jsrun's, jsrun --type's and jsctl's connections above.
	r = runIn(t, env, dir, 30*time.Second, bin("jsctl"), "metrics", "--json")
	var mt map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &mt); err != nil || r.code != 0 {
		t.Fatalf("jsctl metrics --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if n, _ := mt["connections_refused"].(float64); n < 4 {
		t.Errorf("metrics connections_refused = %v, want at least 4", mt["connections_refused"])
	}
	for _, h := range conns {
		h.c.Close()
	}
	conns = nil
	jsd.cmd.Process.Signal(syscall.SIGTERM)
	if code := jsd.wait(t, "jsd after SIGTERM"); code != 0 {
		t.Errorf("jsd exited %d after SIGTERM; its log:\n%s", code, jsd.stderr)
	}
	t.Logf("jsd's log:\n%s", jsd.stderr)
}
