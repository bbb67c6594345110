package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/js-toolkit/js/pkg/status"
)

// The documented JSON of every read command (docs/status.md): each object
// has exactly these keys (those marked ? may be left out), and no job's
// arg, result or environment shows anywhere.
func TestJsctlJSONFields(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "3")
	env := baseEnv(d.dir)
	startWorker(t, d, "--type", "echo") // runs the command lines it is sent
	startHolder(t, d, "sleep", "300")
	const secret = "s3cret-arg-7f3a"
	r := runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "echo", "--", "printf", secret)
	if r.code != 0 {
		t.Fatalf("jsrun --type echo: exit %d %s", r.code, r.stderr)
	}
	r = runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "nobody", "--detach", "--id", "waits", "--priority", "4", "--", "echo", secret)
	if r.code != 0 {
		t.Fatalf("jsrun --detach: exit %d %s", r.code, r.stderr)
	}

	out := jsctlOK(t, d, "status", "--json")
	if strings.Contains(out, secret) {
		t.Errorf("status --json shows a job's arg or result:\n%s", out)
	}
	var doc map[string]any
	mustJSON(t, out, &doc)
	checkKeys(t, "status", doc, "pid status error? version started_at socket fifo host? port? slots leases queues workers jobs warnings?")
	checkKeys(t, "status.slots", doc["slots"], "total in_use free waiting leased reclaimed")
	leases := doc["leases"].([]any)
	if len(leases) != 1 {
		t.Fatalf("want the holder's lease, got %v", leases)
	}
	checkKeys(t, "status.leases[]", leases[0], "id pid slots command since")
	if l := leases[0].(map[string]any); l["command"] != "sleep 300" || l["pid"] == nil || l["slots"] != float64(1) {
		t.Errorf("lease %v: want one slot running sleep 300", l)
	}
	queues := doc["queues"].([]any)
	if len(queues) == 0 {
		t.Fatalf("no queues in %s", out)
	}
	for _, q := range queues {
		checkKeys(t, "status.queues[]", q, "type queued running workers next_waiting_ms")
	}
	for _, w := range doc["workers"].([]any) {
		checkKeys(t, "status.workers[]", w, "id types host? pid? busy capacity done since")
	}
	jobs := doc["jobs"].([]any)
	if len(jobs) != 1 {
		t.Fatalf("want the one ended job in status, got %v", jobs)
	}
	checkKeys(t, "status.jobs[]", jobs[0], "id type state priority attempts submitted runtime_ms? exit? error?")
	var typed status.Doc
	mustJSON(t, out, &typed)
	if typed.Status != status.Running || typed.Slots.Total != 3 || typed.Slots.Leased != 1 || typed.PID != d.cmd.Process.Pid {
		t.Errorf("status: %+v", typed)
	}

	out = jsctlOK(t, d, "jobs", "--json")
	if strings.Contains(out, secret) {
		t.Errorf("jobs --json shows a job's arg or result:\n%s", out)
	}
	var list []map[string]any
	mustJSON(t, out, &list)
	if len(list) != 2 {
		t.Fatalf("jobs --json: want 2 jobs, got %s", out)
	}
	for _, j := range list {
		checkKeys(t, "jobs[]", j, "id type state priority attempts submitted runtime_ms? exit? error?")
	}
	if list[0]["id"] != "waits" || list[0]["state"] != "queued" || list[0]["priority"] != float64(4) {
		t.Errorf("jobs --json: newest first, the queued one with priority 4: %s", out)
	}
	out = jsctlOK(t, d, "jobs", "--state", "queued", "--json")
	var queued []map[string]any
	mustJSON(t, out, &queued)
	if len(queued) != 1 || queued[0]["id"] != "waits" {
		t.Errorf("jobs --state queued --json: %s", out)
	}

	out = jsctlOK(t, d, "workers", "--json")
	var workers []map[string]any
	mustJSON(t, out, &workers)
	if len(workers) != 1 {
		t.Fatalf("workers --json: %s", out)
	}
	checkKeys(t, "workers[]", workers[0], "id types host? pid? busy capacity done since")
	if workers[0]["done"] != float64(1) || workers[0]["capacity"] != float64(1) {
		t.Errorf("workers --json: want 1 done of capacity 1: %s", out)
	}

	out = jsctlOK(t, d, "metrics", "--json")
	var m map[string]any
	mustJSON(t, out, &m)
	checkKeys(t, "metrics", m, "up_since connections workers_added jobs_added jobs_dispatched jobs_done jobs_reassigned "+
		"jobs_failed jobs_cancelled jobs_lost results_expired leases_granted tokens_reclaimed protocol_errors connections_refused "+
		"connections_open jobs_queued jobs_running workers slots_total slots_in_use histograms")
	if m["jobs_added"] != float64(2) || m["jobs_done"] != float64(1) || m["leases_granted"] != float64(1) || m["slots_total"] != float64(3) {
		t.Errorf("metrics: %s", out)
	}
	h, _ := m["histograms"].(map[string]any)
	sw, _ := h["slot_wait_seconds"].(map[string]any)
	pool, _ := sw[""].(map[string]any)
	if pool == nil || pool["count"] != float64(1) {
		t.Fatalf("metrics: want slot_wait_seconds{\"\"} with one observation: %s", out)
	}
	checkKeys(t, "metrics.histograms[][]", pool, "counts sum count")

	// The human forms carry the same data.
	out = jsctlOK(t, d)
	for _, want := range []string{"jsd ", "slots 1/3 in use", "Leases (1)", "sleep 300", "Queues (", "nobody", "Workers (1)", "Recent jobs (1)", "done"} {
		if !strings.Contains(out, want) {
			t.Errorf("plain jsctl lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour on a pipe without --color always:\n%q", out)
	}
	if out := jsctlOK(t, d, "--color", "always", "jobs"); !strings.Contains(out, "\x1b[33mqueued\x1b[0m") {
		t.Errorf("jobs --color always: want queued in yellow:\n%q", out)
	}
}

// jsctl wait exits with the job's status (75 on --timeout, 77 cancelled,
// 1 unknown); jsctl cancel exits 0 when all were cancelled, 1 otherwise.
func TestJsctlWaitCancelExitCodes(t *testing.T) {
	t.Parallel()
	d := startJSD(t)
	env := baseEnv(d.dir)
	startWorker(t, d, "--type", "sh")
	submit := func(id, typ string, cmd ...string) {
		t.Helper()
		r := runIn(t, env, "", 20*time.Second, append([]string{bin("jsrun"), "--type", typ, "--detach", "--id", id, "--"}, cmd...)...)
		if r.code != 0 {
			t.Fatalf("submit %s: exit %d %s", id, r.code, r.stderr)
		}
	}
	jsctl := func(args ...string) result {
		return runIn(t, env, "", 20*time.Second, append([]string{bin("jsctl")}, args...)...)
	}
	submit("ok", "sh", "sh", "-c", "echo fine")
	submit("three", "sh", "sh", "-c", "echo bad >&2; exit 3")
	submit("json", "sh", "sh", "-c", "exit 5")
	submit("stuck", "nobody", "true")
	submit("victim", "nobody", "true")

	if r := jsctl("wait", "ok"); r.code != 0 || r.stdout != "fine\n" {
		t.Errorf("wait ok: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := jsctl("wait", "three"); r.code != 3 || r.stderr != "bad\n" {
		t.Errorf("wait three: exit %d (want 3) stderr %q", r.code, r.stderr)
	}
	r := jsctl("wait", "--json", "json")
	var o map[string]any
	mustJSON(t, r.stdout, &o)
	if r.code != 5 || o["id"] != "json" || o["state"] == nil {
		t.Errorf("wait --json: exit %d (want 5) %s", r.code, r.stdout)
	}
	checkKeys(t, "wait --json", o, "id state res? enc? error? exit?")
	if r := jsctl("wait", "--timeout", "0.3", "stuck"); r.code != 75 || !strings.Contains(r.stderr, "jsctl: error: job stuck did not end within 0.3s") {
		t.Errorf("wait --timeout: exit %d (want 75) %q", r.code, r.stderr)
	}
	if r := jsctl("wait", "no-such-job"); r.code != 1 || !strings.Contains(r.stderr, "jsctl: hint: ") {
		t.Errorf("wait unknown: exit %d (want 1 and a hint) %q", r.code, r.stderr)
	}

	// A waiter hears the cancellation: exit 77.
	waiter := exec.Command(bin("jsctl"), "wait", "victim")
	waiter.Env = env
	var werr strings.Builder
	waiter.Stderr = &werr
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan int, 1)
	go func() { waiter.Wait(); waited <- waiter.ProcessState.ExitCode() }()
	// Whether the cancel comes before its wait or after, the waiter gets
	// "cancelled" (a detached job's outcome is kept for jsctl wait).
	if r := jsctl("cancel", "victim", "stuck"); r.code != 0 {
		t.Errorf("cancel two queued jobs: exit %d %s", r.code, r.stderr)
	}
	select {
	case code := <-waited:
		if code != 77 || !strings.Contains(werr.String(), "cancelled") {
			t.Errorf("wait on a cancelled job: exit %d (want 77) %q", code, werr.String())
		}
	case <-time.After(10 * time.Second):
		waiter.Process.Kill()
		t.Fatal("jsctl wait did not end after the cancel")
	}
	if r := jsctl("cancel", "no-such-job"); r.code != 1 || !strings.Contains(r.stderr, "jsctl: error: cancel no-such-job:") {
		t.Errorf("cancel unknown: exit %d (want 1) %q", r.code, r.stderr)
	}
	if r := jsctl("cancel", "--signal", "NOPE", "x"); r.code != 64 {
		t.Errorf("cancel --signal NOPE: exit %d (want 64) %q", r.code, r.stderr)
	}

	// Usage and no jsd.
	if r := jsctl("--color", "sometimes", "status"); r.code != 64 || !strings.Contains(r.stderr, "jsctl: hint:") {
		t.Errorf("--color sometimes: exit %d (want 64) %q", r.code, r.stderr)
	}
	empty := t.TempDir()
	if r := jsctl("--dir", empty, "status", "--json"); r.code != 69 || r.stdout != "" ||
		!strings.Contains(r.stderr, "jsctl: error: no jsd is running in "+empty) || !strings.Contains(r.stderr, "jsctl: hint: start one with 'jsd --dir") {
		t.Errorf("no jsd: exit %d (want 69) stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// jsctl wait-ready returns as soon as a jsd started after it serves, even
// when the runtime directory does not exist yet; it fails at once on a
// failed jsd with its error, and times out (75) on a dead one.
func TestJsctlWaitReady(t *testing.T) {
	t.Parallel()
	t.Run("jsd started later in a dir that does not exist yet", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "not", "yet", "run")
		w := startWaitReady(t, "--dir", dir, "--timeout", "30")
		w.mustBeWatching(t)
		startJSDIn(t, dir)
		if code, stderr := w.result(t, 20*time.Second); code != 0 {
			t.Fatalf("wait-ready: exit %d %s", code, stderr)
		}
	})
	t.Run("failed status file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "status.json"), `{"pid":1,"status":"failed","error":"listen on 127.0.0.1:9: boom"}`+"\n")
		r := runIn(t, baseEnv(dir), "", 20*time.Second, bin("jsctl"), "wait-ready", "--timeout", "30")
		if r.code != 1 || !strings.Contains(r.stderr, "jsctl: error: jsd failed: listen on 127.0.0.1:9: boom") || !strings.Contains(r.stderr, "jsctl: hint:") {
			t.Fatalf("wait-ready on a failed file: exit %d %q", r.code, r.stderr)
		}
	})
	t.Run("jsd that fails after wait-ready started", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		dir := filepath.Join(t.TempDir(), "run")
		statusFile := filepath.Join(dir, "custom-status.json")
		w := startWaitReady(t, "--status-file", statusFile, "--timeout", "30")
		w.mustBeWatching(t)
		r := runIn(t, baseEnv(dir), "", 20*time.Second, bin("jsd"), "--dir", dir, "--status-file", statusFile, "--port", port)
		if r.code != 1 {
			t.Fatalf("jsd on a taken port: exit %d (want 1) %s", r.code, r.stderr)
		}
		code, stderr := w.result(t, 20*time.Second)
		if code != 1 || !strings.Contains(stderr, "jsctl: error: jsd failed: ") || !strings.Contains(stderr, port) {
			t.Fatalf("wait-ready: exit %d (want 1 with the error) %q", code, stderr)
		}
	})
	t.Run("timeout with no jsd", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		r := runIn(t, baseEnv(dir), "", 20*time.Second, bin("jsctl"), "wait-ready", "--timeout", "0.3")
		if r.code != 75 || !strings.Contains(r.stderr, "does not exist") || !strings.Contains(r.stderr, "jsctl: hint:") {
			t.Fatalf("wait-ready with nothing: exit %d (want 75) %q", r.code, r.stderr)
		}
	})
	t.Run("a SIGKILLed jsd is not ready, a new one is", func(t *testing.T) {
		t.Parallel()
		d := startJSD(t)
		pid := d.cmd.Process.Pid
		waitFor(t, 10*time.Second, "the status file to say running", func() bool {
			doc, err := status.Read(filepath.Join(d.dir, "status.json"))
			return err == nil && doc.Status == status.Running // the socket answers a moment before
		})
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
		if doc, err := status.Read(filepath.Join(d.dir, "status.json")); err != nil || doc.Status != status.Running {
			t.Fatalf("a killed jsd should leave running behind: %+v %v", doc, err)
		}
		r := runIn(t, baseEnv(d.dir), "", 20*time.Second, bin("jsctl"), "wait-ready", "--timeout", "0.5")
		if r.code != 75 || !strings.Contains(r.stderr, fmt.Sprintf("pid %d is dead", pid)) || !strings.Contains(r.stderr, "SIGKILL") {
			t.Fatalf("wait-ready on a dead jsd's file: exit %d (want 75) %q", r.code, r.stderr)
		}
		w := startWaitReady(t, "--dir", d.dir, "--timeout", "30")
		w.mustBeWatching(t)
		startJSDIn(t, d.dir)
		if code, stderr := w.result(t, 20*time.Second); code != 0 {
			t.Fatalf("wait-ready for the new jsd: exit %d %s", code, stderr)
		}
	})
}

// jsctl status --watch on a non-terminal prints the status document as one
// JSON line now and one more per change, reading the status file (even one
// that appears later), and ends with 0 on SIGINT and SIGTERM.
func TestJsctlWatchJSON(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "run")
			w := startWatch(t, dir)
			w.proc.mustBeWatching(t)
			d := startJSDIn(t, dir)
			doc := w.nextUntil(t, "the running jsd", func(doc status.Doc) bool { return doc.Status == status.Running })
			if doc.PID != d.cmd.Process.Pid || len(doc.Leases) != 0 {
				t.Fatalf("first document: %+v", doc)
			}
			h := startHolder(t, d, "sleep", "300")
			w.nextUntil(t, "a line with the lease", func(doc status.Doc) bool {
				return len(doc.Leases) == 1 && doc.Leases[0].Command == "sleep 300"
			})
			h.release(t)
			w.nextUntil(t, "a line without the lease", func(doc status.Doc) bool { return len(doc.Leases) == 0 })
			w.proc.cmd.Process.Signal(sig)
			if code, stderr := w.proc.result(t, 10*time.Second); code != 0 {
				t.Fatalf("watch after %v: exit %d %s", sig, code, stderr)
			}
		})
	}
}

// jsctl resize under load: growing grants waiting requests at once;
// shrinking while leases are held revokes none of them, grants nothing
// until the pool is below its new size, and the pool ends at that size.
func TestJsctlResize(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "2")
	env := baseEnv(d.dir)
	var holders []*holder
	for range 2 {
		holders = append(holders, startHolder(t, d, "sleep", "300"))
	}
	// Two more wait for slots; growing to 4 lets them in.
	for range 2 {
		holders = append(holders, startHolderNoWait(t, d, "sleep", "301"))
	}
	waitFor(t, 10*time.Second, "two waiting", func() bool { return d.status().Slots.Waiting == 2 })
	jsctlOK(t, d, "resize", "4")
	waitFor(t, 10*time.Second, "4 leases on 4 slots", func() bool {
		s := d.status().Slots
		return s.Total == 4 && s.Leased == 4 && s.Waiting == 0 && s.Free == 0
	})
	if m := d.metrics(); m["slots_total"] != float64(4) {
		t.Errorf("metrics slots_total after resize 4: %v", m["slots_total"])
	}

	// Shrink to 1 while all four are held: none is revoked.
	jsctlOK(t, d, "resize", "1")
	s := d.status()
	if s.Slots.Total != 1 || s.Slots.Leased != 4 {
		t.Fatalf("after resize 1 with 4 leases: %+v", s.Slots)
	}
	for _, h := range holders {
		if err := syscall.Kill(h.cmd.Process.Pid, 0); err != nil {
			t.Fatalf("a lease's command died on shrink: pid %d: %v", h.cmd.Process.Pid, err)
		}
	}
	if r := runIn(t, env, "", 20*time.Second, bin("jsrun"), "--timeout", "0", "--", "true"); r.code != 75 {
		t.Fatalf("a slot was granted over the new size: exit %d %s", r.code, r.stderr)
	}
	for i, h := range holders {
		h.release(t)
		if i < len(holders)-1 {
			if r := runIn(t, env, "", 20*time.Second, bin("jsrun"), "--timeout", "0", "--", "true"); r.code != 75 {
				t.Fatalf("granted with %d of 4 leases still held on 1 slot: exit %d", len(holders)-1-i, r.code)
			}
		}
	}
	waitFor(t, 10*time.Second, "the pool at its new size", func() bool {
		s := d.status().Slots
		return s.Total == 1 && s.Free == 1 && s.Leased == 0 && s.InUse == 0
	})

	// Under load at the new size: never more than one at a time.
	p := newProbe(t)
	done := make(chan result, 4)
	for range 4 {
		go func() { done <- runIn(t, env, "", 30*time.Second, bin("jsrun"), "--", p.script, "0.1") }()
	}
	for range 4 {
		if r := <-done; r.code != 0 {
			t.Fatalf("probe: exit %d %s", r.code, r.stderr)
		}
	}
	if runs, most := p.counts(t); runs != 4 || most != 1 {
		t.Fatalf("after shrinking to 1: %d runs, up to %d at once", runs, most)
	}
	d.waitWhole(10 * time.Second)
	if r := runIn(t, env, "", 20*time.Second, bin("jsctl"), "resize", "0"); r.code != 64 || !strings.Contains(r.stderr, "out of range") {
		t.Errorf("resize 0: exit %d (want 64) %q", r.code, r.stderr)
	}
}

// In an 80-column terminal (tmux), jsctl status with colour fits: no line
// wraps, long commands are cut with "…", the tables and colours are there;
// NO_COLOR turns colour off. The live view redraws on a change and gives
// the terminal back on Ctrl-C.
func TestJsctlTmux(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (scripts/setup should install it): skipping the terminal test")
	}
	d := startJSD(t, "--slots", "3")
	startWorker(t, d, "--type", "render", "--concurrency", "2", "--", "sh", "-c", "cat >/dev/null; exec sleep 300")
	env := baseEnv(d.dir)
	ids := []string{"f0", "f1", "f2", "f3"}
	for _, id := range ids {
		if r := runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "render", "--detach", "--id", id, "--", "frame", id); r.code != 0 {
			t.Fatalf("submit: %d %s", r.code, r.stderr)
		}
	}
	// Before the worker drains (its cleanup): end the handlers that sleep.
	t.Cleanup(func() { d.jsctl(append([]string{"cancel", "--signal", "KILL"}, ids...)...) })
	startWorker(t, d, "--type", "cc", "--", "sh", "-c", "cat >/dev/null; echo src/render/pipeline.c:1234: error: a long compiler message that goes past the edge of the screen >&2; exit 2")
	if r := runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "cc", "--", "cc", "-c", "pipeline.c"); r.code != 2 {
		t.Fatalf("the failing job: exit %d %s", r.code, r.stderr)
	}
	long := "a-very-long-argument-that-goes-on-and-on-well-past-the-right-edge-of-an-80-column-terminal"
	startHolder(t, d, "sh", "-c", "exec sleep 300", long)
	startHolder(t, d, "sleep", "300")

	tm := startTmux(t, env)
	out := tm.run(t, "forced", "NO_COLOR=1 jsctl --color always status")
	plain := tm.capture(t, "forced", false)
	for _, want := range []string{"jsd ", "running", "slots ", "Leases (2)", "LEASE", "HELD FOR", "COMMAND", "sh -c exec sleep 300 a-very-long", "…",
		"Queues (2)", "render", "Workers (2)", "Recent jobs (1)", "failed", "src/render/pipeline.c:1234: error"} {
		if !strings.Contains(plain, want) {
			t.Errorf("the 80-column table lacks %q:\n%s", want, plain)
		}
	}
	for _, l := range strings.Split(plain, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("a line wrapped (%d columns): %q", n, l)
		}
		// A cut line uses the whole width: colour codes before the cut
		// do not count as columns.
		if strings.Contains(l, "…") && (!strings.HasSuffix(l, "…") || utf8.RuneCountInString(l) != 80) {
			t.Errorf("a cut line should end in … at column 80: %q", l)
		}
	}
	if strings.Contains(plain, "80-column") || strings.Contains(plain, "edge of the screen") {
		t.Errorf("the long command or error was not cut:\n%s", plain)
	}
	if !strings.Contains(out, "\x1b[32mrunning") || !strings.Contains(out, "\x1b[31mfailed") || !strings.Contains(out, "\x1b[1m") {
		t.Errorf("--color always in a terminal: no colour in %q", out)
	}

	if out := tm.run(t, "nocolor", "NO_COLOR=1 jsctl status"); strings.Contains(out, "\x1b[3") || !strings.Contains(out, "Leases (2)") {
		t.Errorf("NO_COLOR: colour or no table in %q", out)
	}
	if out := tm.run(t, "auto", "jsctl status"); !strings.Contains(out, "\x1b[32mrunning") {
		t.Errorf("a terminal, no NO_COLOR: want colour in %q", out)
	}

	// The live view: redrawn when a lease is taken, ended by Ctrl-C with
	// the terminal given back (the old screen, echo on).
	tm.start(t, "watch", "echo before-watch; jsctl status --watch; echo exit=$?; exec cat")
	tm.waitScreen(t, "watch", "the live view", func(s string) bool {
		return strings.Contains(s, "watching ") && strings.Contains(s, "Leases (2)")
	})
	startHolder(t, d, "sleep", "302")
	tm.waitScreen(t, "watch", "the redraw with the new lease", func(s string) bool {
		return strings.Contains(s, "Leases (3)") && strings.Contains(s, "sleep 302")
	})
	tm.keys(t, "watch", "C-c")
	screen := tm.waitScreen(t, "watch", "the exit", func(s string) bool { return strings.Contains(s, "exit=0") })
	if strings.Contains(screen, "watching ") || !strings.Contains(screen, "before-watch") {
		t.Errorf("the terminal was not given back after Ctrl-C:\n%s", screen)
	}
	tm.keys(t, "watch", "-l", "typed-after")
	tm.waitScreen(t, "watch", "echo restored (cat's input shows)", func(s string) bool { return strings.Contains(s, "typed-after") })
}

// ---- helpers ----

// jsctlOK runs jsctl against d and fails the test unless it exits 0.
func jsctlOK(t *testing.T, d *daemon, args ...string) string {
	t.Helper()
	r := runIn(t, baseEnv(d.dir), "", 20*time.Second, append([]string{bin("jsctl")}, args...)...)
	if r.code != 0 {
		t.Fatalf("jsctl %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("not JSON (%v):\n%s", err, s)
	}
}

// checkKeys checks that v is an object with exactly the keys listed
// (a trailing ? marks one that may be left out).
func checkKeys(t *testing.T, what string, v any, keys string) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s: not an object: %v", what, v)
		return
	}
	known := map[string]bool{}
	for _, k := range strings.Fields(keys) {
		name, optional := strings.CutSuffix(k, "?")
		known[name] = true
		if _, ok := m[name]; !ok && !optional {
			t.Errorf("%s: no %q in %v", what, name, m)
		}
	}
	var extra []string
	for k := range m {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("%s: undocumented keys %v", what, extra)
	}
}

// holder is a jsrun holding a slot lease with a long command.
type holder struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startHolder runs jsrun -- argv and waits until jsd shows its lease.
func startHolder(t *testing.T, d *daemon, argv ...string) *holder {
	t.Helper()
	before := d.status().Slots.Leased
	h := startHolderNoWait(t, d, argv...)
	waitFor(t, 10*time.Second, "the lease of "+strings.Join(argv, " "), func() bool {
		select {
		case <-h.done:
			t.Fatalf("jsrun -- %s ended early", strings.Join(argv, " "))
		default:
		}
		return d.status().Slots.Leased > before
	})
	return h
}

func startHolderNoWait(t *testing.T, d *daemon, argv ...string) *holder {
	t.Helper()
	cmd := exec.Command(bin("jsrun"), append([]string{"--"}, argv...)...)
	cmd.Env = baseEnv(d.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-h.done
	})
	return h
}

// release ends the holder's command (SIGTERM) and waits for jsrun to exit.
func (h *holder) release(t *testing.T) {
	t.Helper()
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("jsrun pid %d did not end on SIGTERM", h.cmd.Process.Pid)
	}
}

// bgJsctl is a jsctl running in the background; its stderr may be read
// once done is closed.
type bgJsctl struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	done   chan struct{}
}

func startBgJsctl(t *testing.T, env []string, stdout io.Writer, args ...string) *bgJsctl {
	t.Helper()
	b := &bgJsctl{done: make(chan struct{})}
	b.cmd = exec.Command(bin("jsctl"), args...)
	b.cmd.Env = env
	b.cmd.Stdout = stdout
	b.cmd.Stderr = &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.done
	})
	return b
}

// startWaitReady runs jsctl wait-ready in the background.
func startWaitReady(t *testing.T, args ...string) *bgJsctl {
	t.Helper()
	return startBgJsctl(t, baseEnv(t.TempDir()), nil, append([]string{"wait-ready"}, args...)...)
}

// mustBeWatching waits until the process has an inotify watch (so what
// happens next happens while it waits) and checks it has not ended.
func (b *bgJsctl) mustBeWatching(t *testing.T) {
	t.Helper()
	pid := b.cmd.Process.Pid
	waitFor(t, 10*time.Second, "jsctl to watch with inotify", func() bool {
		select {
		case <-b.done:
			t.Fatalf("jsctl %v ended early: %s", b.cmd.Args[1:], b.stderr.String())
		default:
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == "anon_inode:inotify" {
				info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
				if strings.Contains(string(info), "inotify wd:") {
					return true
				}
			}
		}
		return false
	})
}

// result waits for the process to end and returns its exit code and stderr.
func (b *bgJsctl) result(t *testing.T, within time.Duration) (int, string) {
	t.Helper()
	select {
	case <-b.done:
		return b.cmd.ProcessState.ExitCode(), b.stderr.String()
	case <-time.After(within):
		t.Fatalf("jsctl %v did not end within %v", b.cmd.Args[1:], within)
		return 0, ""
	}
}

// watcher is jsctl status --watch with its stdout read line by line.
type watcher struct {
	proc  *bgJsctl
	lines chan string
}

func startWatch(t *testing.T, dir string) *watcher {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{lines: make(chan string, 1000)}
	w.proc = startBgJsctl(t, baseEnv(dir), pw, "status", "--watch")
	pw.Close()
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	return w
}

// nextUntil reads lines until one holds a document for which cond holds;
// every line must be one compact JSON status document.
func (w *watcher) nextUntil(t *testing.T, what string, cond func(status.Doc) bool) status.Doc {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-w.lines:
			if !ok {
				t.Fatalf("watch ended before %s: %s", what, w.proc.stderr.String())
			}
			var doc status.Doc
			if err := json.Unmarshal([]byte(line), &doc); err != nil || !strings.HasPrefix(line, `{"`) || doc.Socket == "" {
				t.Fatalf("watch printed a line that is not a compact status document (%v): %q", err, line)
			}
			if cond(doc) {
				return doc
			}
		case <-deadline:
			t.Fatalf("no watch line with %s within 10s", what)
		}
	}
}

// tmuxServer is a private tmux server (its own socket) for one test.
type tmuxServer struct {
	sock string
	env  []string
}

func startTmux(t *testing.T, env []string) *tmuxServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "jstmux") // short: a socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	tm := &tmuxServer{sock: filepath.Join(dir, "s"), env: append(env, "TERM=xterm-256color", "LANG=C.UTF-8")}
	t.Cleanup(func() {
		exec.Command("tmux", "-S", tm.sock, "kill-server").Run()
		os.RemoveAll(dir)
	})
	return tm
}

func (tm *tmuxServer) tmux(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("tmux", append([]string{"-S", tm.sock, "-f", "/dev/null", "-u"}, args...)...)
	cmd.Env = tm.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// start runs a shell command (tmux hands it to sh -c) in a new 80x50
// session; scripts end with "exec cat" so the pane stays.
func (tm *tmuxServer) start(t *testing.T, name, script string) {
	t.Helper()
	tm.tmux(t, "new-session", "-d", "-x", "80", "-y", "50", "-s", name, script)
}

// run runs a command in a new session, waits for it to end, and returns
// the screen with its colours.
func (tm *tmuxServer) run(t *testing.T, name, command string) string {
	t.Helper()
	tm.start(t, name, command+"; echo exit=$?; exec cat")
	tm.waitScreen(t, name, command+" to end", func(s string) bool { return strings.Contains(s, "exit=") })
	if s := tm.capture(t, name, false); !strings.Contains(s, "exit=0") {
		t.Fatalf("%s failed in tmux:\n%s", command, s)
	}
	return tm.capture(t, name, true)
}

// capture returns the pane's screen, wrapped lines joined (so a line that
// did not fit shows as longer than the pane), with colours when asked.
func (tm *tmuxServer) capture(t *testing.T, name string, colours bool) string {
	t.Helper()
	args := []string{"capture-pane", "-p", "-J", "-t", name}
	if colours {
		args = append(args, "-e")
	}
	return tm.tmux(t, args...)
}

// waitScreen waits until the pane's screen satisfies cond.
func (tm *tmuxServer) waitScreen(t *testing.T, name, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := tm.capture(t, name, false)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s in tmux; the screen:\n%s", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (tm *tmuxServer) keys(t *testing.T, name string, keys ...string) {
	t.Helper()
	tm.tmux(t, append([]string{"send-keys", "-t", name}, keys...)...)
}
