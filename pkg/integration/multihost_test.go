package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// twoJSD starts jsd "a" with an embedded NATS node and jsd "b" using it:
// two hosts' jsds sharing their queues (each with its own slots).
func twoJSD(t *testing.T, args ...string) (a, b *daemon) {
	t.Helper()
	port := freeTCPPort(t)
	a = startJSD(t, append([]string{"--slots", "2", "--nats-embed", "--nats-name", "a", "--nats-listen", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
	b = startJSD(t, append([]string{"--slots", "3", "--nats", fmt.Sprintf("nats://127.0.0.1:%d", port), "--nats-name", "b"}, args...)...)
	return a, b
}

// A job submitted on one jsd runs on a worker of the other and its outcome
// comes back to its submitter; ids are unique across both; priorities hold
// across hosts; a detached job is waited for on the other jsd; a running
// job is cancelled from the jsd that does not run it.
func TestTwoJSDShareQueues(t *testing.T) {
	t.Parallel()
	a, b := twoJSD(t)

	// Queued on b with nobody serving; the worker comes on a.
	sub := dialLines(t, b.dir)
	for i, p := range []int{0, 7, 3, 7, 9} {
		sub.sendJSON(map[string]any{"cmd": "do", "id": fmt.Sprintf("p%d", i), "type": "x", "priority": p, "arg": i, "req": i})
		sub.expect(fmt.Sprintf(`{"cmd":"queued","req":%d,"id":"p%d"}`, i, i))
	}
	// The same id on the other jsd is taken.
	other := dialLines(t, a.dir)
	other.send(`{"cmd":"do","id":"p1","type":"x","req":"dup"}` + "\r\n")
	if m := other.msg(); m["cmd"] != "error" || m["code"] != "id_exists" {
		t.Fatalf("duplicate id across jsds: %v", m)
	}
	w := dialLines(t, a.dir)
	w.send(`{"cmd":"can_do","types":["x"]}` + "\r\n")
	var order []string
	for range 5 {
		m := w.msg()
		if m["cmd"] != "do" {
			t.Fatalf("worker got %v", m)
		}
		order = append(order, m["id"].(string))
		w.sendJSON(map[string]any{"cmd": "did", "id": m["id"], "res": "ran on a"})
	}
	if got := strings.Join(order, " "); got != "p4 p1 p3 p2 p0" {
		t.Errorf("order across hosts %q, want p4 p1 p3 p2 p0", got)
	}
	got := map[string]bool{}
	for range 5 {
		m := sub.msg()
		if m["cmd"] != "did" || m["res"] != "ran on a" || got[m["id"].(string)] {
			t.Fatalf("outcome %v (seen %v)", m, got)
		}
		got[m["id"].(string)] = true
	}

	// Detached on a, fetched on b, once.
	r := runIn(t, baseEnv(a.dir), "", 20*time.Second, bin("jsrun"), "--type", "x", "--detach", "--id", "det", "--", "true")
	if r.code != 0 {
		t.Fatalf("detach: %d %s", r.code, r.stderr)
	}
	m := w.msg()
	w.sendJSON(map[string]any{"cmd": "did", "id": m["id"], "res": "kept"})
	wt := dialLines(t, b.dir)
	wt.send(`{"cmd":"wait","id":"det","req":1}` + "\r\n")
	wt.expect(`{"cmd":"did","req":1,"id":"det","res":"kept"}`)
	wt.send(`{"cmd":"wait","id":"det","req":2}` + "\r\n")
	if m := wt.msg(); m["cmd"] != "error" || m["code"] != "not_found" {
		t.Fatalf("second wait: %v", m)
	}

	// A running job on a's worker, cancelled with jsctl on b: the worker
	// (jsworker obeys cancel) kills its handler; the submitter on a hears
	// "cancelled".
	w.nc.Close()
	marker := filepath.Join(t.TempDir(), "pid")
	startWorker(t, a, "--type", "slow", "--", "sh", "-c", "echo $$ > "+marker+"; exec sleep 60")
	s2 := dialLines(t, a.dir)
	s2.send(`{"cmd":"do","id":"long","type":"slow","req":1}` + "\r\n")
	s2.expect(`{"cmd":"queued","req":1,"id":"long"}`)
	waitFor(t, 20*time.Second, "the job to run", func() bool { b, _ := os.ReadFile(marker); return len(b) > 0 })
	bs, _ := os.ReadFile(marker)
	var pid int
	fmt.Sscan(string(bs), &pid)
	if out, err := b.jsctl("cancel", "long"); err != nil {
		t.Fatalf("cancel from b: %v %s", err, out)
	}
	s2.expect(`{"cmd":"cancelled","id":"long","error":"cancelled"}`)
	waitFor(t, 20*time.Second, "the handler to be stopped", func() bool { return syscall.Kill(pid, 0) != nil })

	// Both jsds see each other and the cluster's queues; each keeps its
	// own slots.
	waitFor(t, 20*time.Second, "the peers to show", func() bool {
		s := b.status()
		return s.Cluster != nil && len(s.Cluster.Peers) == 2 && s.Slots.Total == 3
	})
	s := a.status()
	if s.Cluster == nil || s.Cluster.Name != "a" || s.Slots.Total != 2 {
		t.Fatalf("a's status: %+v", s.Cluster)
	}
}

// A worker's jsd disconnecting it mid-job gives the job back at once: it
// runs on the other host's worker (retries), and the submitter gets one
// outcome.
func TestTwoJSDWorkerDiesJobMoves(t *testing.T) {
	t.Parallel()
	a, b := twoJSD(t)
	sub := dialLines(t, a.dir)
	sub.send(`{"cmd":"do","id":"mv","type":"m","retries":1,"arg":"x","req":1}` + "\r\n")
	sub.expect(`{"cmd":"queued","req":1,"id":"mv"}`)
	w1 := dialLines(t, a.dir)
	w1.send(`{"cmd":"can_do","types":["m"]}` + "\r\n")
	w1.expect(`{"cmd":"do","id":"mv","type":"m","arg":"x"}`)
	w2 := dialLines(t, b.dir)
	w2.send(`{"cmd":"can_do","types":["m"]}` + "\r\n")
	w1.nc.Close() // dies mid-job
	w2.expect(`{"cmd":"do","id":"mv","type":"m","arg":"x"}`)
	w2.send(`{"cmd":"did","id":"mv","res":"second"}` + "\r\n")
	sub.expect(`{"cmd":"did","id":"mv","res":"second"}`)
	// A submitter that goes away: its queued job is cancelled everywhere.
	gone := dialLines(t, b.dir)
	gone.send(`{"cmd":"do","id":"orphan","type":"nobody","req":1}` + "\r\n")
	gone.expect(`{"cmd":"queued","req":1,"id":"orphan"}`)
	gone.nc.Close()
	waitFor(t, 20*time.Second, "the orphan to be cancelled", func() bool {
		out, _ := a.jsctl("cancel", "orphan")
		return strings.Contains(out, "no job") || strings.Contains(out, "ended")
	})
	again := dialLines(t, a.dir)
	again.send(`{"cmd":"do","id":"orphan","type":"nobody","req":2}` + "\r\n")
	again.expect(`{"cmd":"queued","req":2,"id":"orphan"}`)
}

// The multi-host flags: a clear error and a hint for each misuse, and a
// NATS server that is not there fails the start at once (exit 1, the status
// file says why) instead of hanging.
func TestJsdNatsFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-routes", "h:6222"}, "need --nats or --nats-embed"},
		{[]string{"--nats-embed", "--journal", filepath.Join(dir, "j.db")}, "do not go together"},
		{[]string{"--nats-embed", "--nats-listen", "0.0.0.0:0"}, "needs a token"},
		{[]string{"--nats-embed", "--nats-cluster", "127.0.0.1:x"}, "is not HOST:PORT"},
		{[]string{"--nats-embed", "--nats-routes", "h:6222"}, "--nats-routes needs --nats-cluster"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--nats-listen", "127.0.0.1:4222"}, "configure the embedded NATS node"},
		{[]string{"--nats-embed", "--nats-ack-wait", "0.5"}, "at least 1 second"},
		{[]string{"--nats-embed", "--result-ttl", "0.5"}, "--result-ttl must be at least 1"},
	} {
		r := runIn(t, baseEnv(dir), "", 20*time.Second, append([]string{bin("jsd")}, tc.args...)...)
		if r.code != 64 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "jsd: hint:") {
			t.Errorf("jsd %v: exit %d %q; want 64, %q and a hint", tc.args, r.code, r.stderr, tc.want)
		}
	}
	port := freeTCPPort(t)
	r := runIn(t, baseEnv(dir), "", 20*time.Second, bin("jsd"), "--nats", fmt.Sprintf("nats://127.0.0.1:%d", port), "--nats-name", "x")
	if r.code != 1 || !strings.Contains(r.stderr, "no servers available") || !strings.Contains(r.stderr, "--nats-embed") {
		t.Errorf("unreachable NATS: exit %d %q", r.code, r.stderr)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "status.json"))
	if !strings.Contains(string(b), `"failed"`) || !strings.Contains(string(b), "no servers available") {
		t.Errorf("status file after the failed start: %s", b)
	}
}

// Ids jsd assigns under --nats are unique across its restarts: a detached
// result of the previous run may still hold "name-...-j1".
func TestTwoJSDAssignedIDsSurviveRestart(t *testing.T) {
	t.Parallel()
	_, b := twoJSD(t)
	run := func(d *daemon) string {
		r := runIn(t, baseEnv(d.dir), "", 20*time.Second, bin("jsrun"), "--type", "idle", "--detach", "--", "true")
		if r.code != 0 {
			t.Fatalf("detach: %d %s", r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	first := run(b)
	if !strings.HasPrefix(first, "b-") || !strings.HasSuffix(first, "-j1") {
		t.Fatalf("assigned id %q, want b-BOOT-j1", first)
	}
	args := b.cmd.Args[1:]
	b.stop()
	b2 := startJSDIn(t, b.dir, args[2:]...) // the same flags after --dir DIR
	second := run(b2)
	if second == first || !strings.HasSuffix(second, "-j1") {
		t.Fatalf("after a restart: %q (before %q)", second, first)
	}
}
