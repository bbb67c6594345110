package integration

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dialTCPLines connects a line client to jsd's TCP port.
func dialTCPLines(t *testing.T, d *daemon) *lineClient {
	t.Helper()
	s := d.status()
	nc, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &lineClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// Native clients on TCP with a token: they present it first; a wrong or
// missing token gets unauthorized and a close; jsworker --connect with the
// token file serves jobs; deputy's commands pass without a token only when
// --allow-unauthenticated names deputy.
func TestTCPTokenForNativeClients(t *testing.T) {
	t.Parallel()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startJSD(t, "--port-range", "20000", "60000", "--auth-token-file", tok)

	none := dialTCPLines(t, d)
	none.send(`{"cmd":"ping"}` + "\r\n")
	if m := none.msg(); m["code"] != "unauthorized" {
		t.Fatalf("no token: %v", m)
	}
	if !none.closed() {
		t.Fatal("connection without a token stayed open")
	}
	wrong := dialTCPLines(t, d)
	wrong.send(`{"cmd":"auth","token":"guess"}` + "\r\n")
	if m := wrong.msg(); m["code"] != "unauthorized" {
		t.Fatalf("wrong token: %v", m)
	}
	right := dialTCPLines(t, d)
	right.send(`{"cmd":"auth","token":"s3cret-token"}` + "\r\n" + `{"cmd":"ping"}` + "\r\n")
	right.expect(`{"cmd":"ok"}`)
	right.expect(`{"cmd":"pong"}`)

	// A worker on another machine's footing: TCP and the token file.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(d.status().Port))
	startWorker(t, d, "--connect", addr, "--auth-token-file", tok, "--type", "up", "--", "tr", "a-z", "A-Z")
	right.send(`{"cmd":"do","id":"t1","type":"up","arg":"tcp","req":1}` + "\r\n")
	right.expect(`{"cmd":"queued","req":1,"id":"t1"}`)
	right.expect(`{"cmd":"did","id":"t1","res":"TCP"}`)
	// deputy clients cannot present a token: refused here.
	dep := dialTCPLines(t, d)
	dep.send(`{"cmd":"do","id":"d1","type":"up","arg":"x"}` + "\r\n")
	if m := dep.msg(); m["code"] != "unauthorized" {
		t.Fatalf("deputy client on a token listener: %v", m)
	}
}

// --allow-unauthenticated deputy: deputy's own commands pass without a
// token, nothing else does, and jsd says so in its status.
func TestTCPAllowUnauthenticatedDeputy(t *testing.T) {
	t.Parallel()
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("t0ken"), 0o600)
	d := startJSD(t, "--port-range", "20000", "60000", "--auth-token-file", tok, "--allow-unauthenticated", "deputy")
	if s := d.status(); len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "deputy") {
		t.Fatalf("warnings: %q", s.Warnings)
	}
	w := dialTCPLines(t, d)
	w.send(`{"cmd":"can_do","types":["echo"]}` + "\r\n")
	c := dialTCPLines(t, d)
	c.send(`{"cmd":"do","id":"d1","type":"echo","arg":"hi"}` + "\r\n")
	w.expect(`{"cmd":"do","id":"d1","type":"echo","arg":"hi"}`)
	w.send(`{"cmd":"did","id":"d1","res":"hi"}` + "\r\n")
	c.expect(`{"cmd":"did","id":"d1","res":"hi"}`)
	c.send(`{"cmd":"status"}` + "\r\n")
	if m := c.msg(); m["code"] != "unauthorized" {
		t.Fatalf("status without a token: %v", m)
	}
}

// A non-loopback host without a token file, and without legacy protocols
// named, refuses to start (exit 64) and says why.
func TestTCPNonLoopbackNeedsToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := runIn(t, baseEnv(dir), "", 10*time.Second, bin("jsd"), "--dir", dir, "--host", "0.0.0.0", "--port-range", "20000", "60000")
	if r.code != 64 || !strings.Contains(r.stderr, "auth-token-file") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}
