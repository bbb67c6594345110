package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A deputy client and a deputy worker, written only from deputy's
// documented shapes, get deputy's answers byte for byte.
func TestDeputyClientAndWorker(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		client := dialLines(t, d.dir)
		// One malformed line must not poison the connection (deputy's bug).
		client.send("this is not json\r\n")
		if m := client.msg(); m["cmd"] != "error" || m["code"] != "bad_request" {
			t.Fatalf("want a bad_request error, got %v", m)
		}
		client.send(`{"cmd":"do","id":"job-1","type":"sum","arg":[1,2]}` + "\r\n")
		client.send(`{"cmd":"do","id":"job-2","type":"sum","arg":[3,4]}` + "\n") // LF alone is accepted
		worker := dialLines(t, d.dir)
		worker.send(`{"cmd":"can_do","types":["sum"]}` + "\r\n")
		// One job at a time (deputy's rule): job-1, answered, then job-2.
		worker.expect(`{"cmd":"do","id":"job-1","type":"sum","arg":[1,2]}`)
		worker.send(`{"cmd":"did","id":"job-1","res":3}` + "\r\n")
		worker.expect(`{"cmd":"do","id":"job-2","type":"sum","arg":[3,4]}`)
		worker.send(`{"cmd":"did","id":"job-2","res":7}` + "\r\n")
		client.expect(`{"cmd":"did","id":"job-1","res":3}`)
		client.expect(`{"cmd":"did","id":"job-2","res":7}`)
		// A did for a job the worker does not hold changes nothing.
		worker.send(`{"cmd":"did","id":"job-9","res":1}` + "\r\n")
		if m := worker.msg(); m["cmd"] != "error" || m["code"] != "not_yours" {
			t.Fatalf("want not_yours, got %v", m)
		}
		client.send(`{"cmd":"metrics"}` + "\r\n")
		m := client.msg()
		metrics, _ := m["metrics"].(map[string]any)
		for _, k := range []string{"up_since", "connections", "workers_added", "jobs_added", "jobs_dispatched", "jobs_done", "jobs_reassigned"} {
			if _, ok := metrics[k]; !ok {
				t.Errorf("metrics lacks deputy's %q: %v", k, m)
			}
		}
		if metrics["jobs_done"] != float64(2) || metrics["jobs_added"] != float64(2) {
			t.Errorf("counts: %v", metrics)
		}
		// One connection may both submit and serve, as deputy allows.
		both := dialLines(t, d.dir)
		both.send(`{"cmd":"can_do","types":["echo"]}` + "\r\n" + `{"cmd":"do","id":"self","type":"echo","arg":"x"}` + "\r\n")
		both.expect(`{"cmd":"do","id":"self","type":"echo","arg":"x"}`)
		both.send(`{"cmd":"did","id":"self","res":"x"}` + "\r\n")
		both.expect(`{"cmd":"did","id":"self","res":"x"}`)
	})
}

// Priority first, FIFO (by arrival) among equal priorities.
func TestPriorityThenFIFO(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		c := dialLines(t, d.dir)
		order := []struct {
			id   string
			prio int
		}{{"a", 0}, {"b", 5}, {"c", 0}, {"d", 9}, {"e", 5}, {"f", 1}, {"g", 0}, {"h", 1}}
		for _, j := range order {
			c.sendJSON(map[string]any{"cmd": "do", "id": j.id, "type": "t", "priority": j.prio, "arg": j.id})
			c.expect(fmt.Sprintf(`{"cmd":"queued","id":"%s"}`, j.id))
		}
		w := dialLines(t, d.dir)
		w.send(`{"cmd":"can_do","types":["t"]}` + "\r\n")
		var got []string
		for range order {
			m := w.msg()
			got = append(got, m["id"].(string))
			w.sendJSON(map[string]any{"cmd": "did", "id": m["id"], "res": nil})
		}
		if strings.Join(got, "") != "dbefhacg" {
			t.Fatalf("order %v, want d b e f h a c g", got)
		}
	})
}

// In memory, priorities are any integers; the shared queue keeps levels
// 0..9 (docs/scale.md), so this one runs in memory only.
func TestNegativePriorityInMemory(t *testing.T) {
	t.Parallel()
	d := startJSD(t)
	c := dialLines(t, d.dir)
	for _, j := range []struct {
		id   string
		prio int
	}{{"a", -1}, {"b", 0}, {"c", 12}, {"d", -5}} {
		c.sendJSON(map[string]any{"cmd": "do", "id": j.id, "type": "t", "priority": j.prio})
		c.msg()
	}
	w := dialLines(t, d.dir)
	w.send(`{"cmd":"can_do","types":["t"]}` + "\r\n")
	var got []string
	for range 4 {
		m := w.msg()
		got = append(got, m["id"].(string))
		w.sendJSON(map[string]any{"cmd": "did", "id": m["id"], "res": nil})
	}
	if strings.Join(got, "") != "cbad" {
		t.Fatalf("order %v, want c b a d", got)
	}
}

// A live id is unique: the duplicate gets id_exists (not an ok first);
// once the result is delivered the id may be used again.
func TestDuplicateIDs(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		c := dialLines(t, d.dir)
		c.send(`{"cmd":"do","id":"x","type":"t","arg":1,"req":1}` + "\r\n")
		c.expect(`{"cmd":"queued","req":1,"id":"x"}`)
		c.send(`{"cmd":"do","id":"x","type":"t","arg":2,"req":2}` + "\r\n")
		if m := c.msg(); m["cmd"] != "error" || m["code"] != "id_exists" || m["id"] != "x" || m["req"] != float64(2) {
			t.Fatalf("want id_exists for x, got %v", m)
		}
		w := dialLines(t, d.dir)
		w.send(`{"cmd":"can_do","types":["t"]}` + "\r\n")
		w.expect(`{"cmd":"do","id":"x","type":"t","arg":1}`)
		w.send(`{"cmd":"did","id":"x","res":"one"}` + "\r\n")
		c.expect(`{"cmd":"did","id":"x","res":"one"}`)
		c.send(`{"cmd":"do","id":"x","type":"t","arg":3,"req":3}` + "\r\n")
		c.expect(`{"cmd":"queued","req":3,"id":"x"}`)
	})
}

// Malformed input of each kind gets an error and the connection goes on;
// an oversized line gets an error and a close; other connections are fine.
func TestMalformedNativeInput(t *testing.T) {
	t.Parallel()
	d := startJSD(t)
	c := dialLines(t, d.dir)
	cases := []struct{ line, code string }{
		{`{"cmd":`, "bad_request"},
		{`[1,2,3]`, "bad_request"},
		{`"just a string"`, "bad_request"},
		{`{"id":1}`, "bad_request"},
		{`{"cmd":"frobnicate"}`, "unknown_cmd"},
		{`{"cmd":"do","id":"a"}`, "bad_request"},
		{`{"cmd":"do","id":{"x":1},"type":"t"}`, "bad_request"},
		{`{"cmd":"can_do"}`, "bad_request"},
		{`{"cmd":"acquire","slots":100000}`, "bad_request"},
		{`{"cmd":"release","lease":42}`, "not_found"},
		{`{"cmd":"cancel","id":"nope"}`, "not_found"},
		{"{\"cmd\":\"do\",\"type\":\"t\",\"arg\":\"\xff\xfe\"}", ""},
	}
	for _, tc := range cases {
		c.send(tc.line + "\r\n")
		m := c.msg()
		if tc.code == "" {
			continue // invalid UTF-8 inside a string is replaced, not fatal
		}
		if m["cmd"] != "error" || m["code"] != tc.code {
			t.Errorf("%s: got %v, want error %s", tc.line, m, tc.code)
		}
	}
	c.send(`{"cmd":"ping"}` + "\r\n")
	c.expect(`{"cmd":"pong"}`)
	big := dialLines(t, d.dir)
	go big.nc.Write([]byte(`{"cmd":"do","arg":"` + strings.Repeat("x", 17<<20)))
	if m := big.msg(); m["code"] != "too_large" {
		t.Fatalf("want too_large, got %v", m)
	}
	if !big.closed() {
		t.Fatal("connection with an oversized line stayed open")
	}
	c.send(`{"cmd":"ping"}` + "\r\n")
	c.expect(`{"cmd":"pong"}`)
}

// The submitter disconnects: its queued jobs vanish, its running jobs are
// cancelled on their workers, and nothing stays busy.
func TestSubmitterDisconnect(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		marker := filepath.Join(t.TempDir(), "ran")
		w := startWorker(t, d, "--type", "slow", "--", "sh", "-c", "echo $$ > "+marker+"; exec sleep 60")
		_ = w
		c := dialLines(t, d.dir)
		for i := 0; i < 3; i++ {
			c.sendJSON(map[string]any{"cmd": "do", "id": fmt.Sprint(i), "type": "slow", "req": i})
			c.msg()
		}
		waitFor(t, 10*time.Second, "the first job to run", func() bool { b, _ := os.ReadFile(marker); return len(b) > 0 })
		b, _ := os.ReadFile(marker)
		var pid int
		fmt.Sscan(string(b), &pid)
		c.nc.Close()
		waitFor(t, 10*time.Second, "queue empty and worker idle", func() bool {
			s := d.status()
			if len(s.Workers) != 1 || s.Workers[0].Busy != 0 {
				return false
			}
			for _, q := range s.Queues {
				if q.Queued != 0 || q.Running != 0 {
					return false
				}
			}
			return true
		})
		waitFor(t, 10*time.Second, "the running handler to be killed", func() bool { return syscall.Kill(pid, 0) != nil })
	})
}

// A worker dies mid-job: the job is requeued up to its retries, then the
// submitter gets "lost" (neither done nor failed).
func TestWorkerDeathRequeueThenLost(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		c := dialLines(t, d.dir)
		c.send(`{"cmd":"do","id":"r","type":"t","retries":1,"req":1}` + "\r\n")
		c.expect(`{"cmd":"queued","req":1,"id":"r"}`)
		for attempt := 1; attempt <= 2; attempt++ {
			w := dialLines(t, d.dir)
			w.send(`{"cmd":"can_do","types":["t"]}` + "\r\n")
			w.expect(`{"cmd":"do","id":"r","type":"t","arg":null}`)
			w.nc.Close() // dies mid-job
		}
		m := c.msg()
		if m["cmd"] != "lost" || m["id"] != "r" {
			t.Fatalf("want lost, got %v", m)
		}
		metrics := d.metrics()
		if metrics["jobs_lost"] != float64(1) || metrics["jobs_reassigned"] != float64(1) {
			t.Fatalf("metrics %v", metrics)
		}
	})
}

// Cancel a queued job and a running one (its handler's process group gets
// the signal; the submitter gets "cancelled").
func TestCancelQueuedAndRunning(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		marker := filepath.Join(t.TempDir(), "pid")
		startWorker(t, d, "--type", "slow", "--grace", "5", "--", "sh", "-c", "echo $$ > "+marker+"; exec sleep 60")
		c := dialLines(t, d.dir)
		c.send(`{"cmd":"do","id":"run","type":"slow","req":1}` + "\r\n")
		c.msg()
		c.send(`{"cmd":"do","id":"wait","type":"slow","req":2}` + "\r\n")
		c.msg()
		waitFor(t, 10*time.Second, "the first job to run", func() bool { b, _ := os.ReadFile(marker); return len(b) > 0 })
		b, _ := os.ReadFile(marker)
		var pid int
		fmt.Sscan(string(b), &pid)

		if out, err := d.jsctl("cancel", "wait"); err != nil {
			t.Fatalf("cancel queued: %v %s", err, out)
		}
		c.expect(`{"cmd":"cancelled","id":"wait","error":"cancelled"}`)
		if out, err := d.jsctl("cancel", "--signal", "TERM", "run"); err != nil {
			t.Fatalf("cancel running: %v %s", err, out)
		}
		c.expect(`{"cmd":"cancelled","id":"run","error":"cancelled"}`)
		waitFor(t, 10*time.Second, "the handler to get SIGTERM", func() bool { return syscall.Kill(pid, 0) != nil })
		out, err := d.jsctl("cancel", "run")
		if code := exitCode(err); code != 1 || !strings.Contains(out, "ended") {
			t.Fatalf("cancelling an ended job: exit %d, %s", code, out)
		}
		waitFor(t, 10*time.Second, "the worker to be idle", func() bool {
			s := d.status()
			return len(s.Workers) == 1 && s.Workers[0].Busy == 0
		})
	})
}

// jsrun --type behaves like the command run locally: output, exit status.
func TestJsrunTypeLikeLocal(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		startWorker(t, d, "--type", "sh", "--concurrency", "2")
		env := baseEnv(d.dir)
		r := runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "sh", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
			t.Fatalf("got exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		r = runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "sh", "--", "sh", "-c", "kill -9 $$")
		if r.code != 137 {
			t.Fatalf("killed by SIGKILL: exit %d, want 137 (%s)", r.code, r.stderr)
		}
		r = runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "sh", "--", "no-such-command-here")
		if r.code != 127 {
			t.Fatalf("not found: exit %d, want 127 (%s)", r.code, r.stderr)
		}
		// Detached: the id comes back at once; jsctl wait gets the result once.
		r = runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "sh", "--detach", "--priority", "5", "--id", "det-1", "--", "printf", "hello")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "det-1" {
			t.Fatalf("detach: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		w := runIn(t, env, "", 20*time.Second, bin("jsctl"), "wait", "det-1")
		if w.code != 0 || w.stdout != "hello" {
			t.Fatalf("wait: exit %d stdout %q stderr %q", w.code, w.stdout, w.stderr)
		}
		w = runIn(t, env, "", 20*time.Second, bin("jsctl"), "wait", "det-1")
		if w.code != 1 {
			t.Fatalf("second wait of a fetched result: exit %d, want 1 (%s)", w.code, w.stderr)
		}
		// Duplicate live id: refused with its own exit code.
		runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "nobody-serves", "--detach", "--id", "dup", "--", "true")
		r = runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "nobody-serves", "--id", "dup", "--", "true")
		if r.code != 65 || !strings.Contains(r.stderr, "id_exists") {
			t.Fatalf("duplicate id: exit %d %s", r.code, r.stderr)
		}
		// No worker in time: exit 75 and the job is cancelled.
		r = runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "nobody-serves", "--timeout", "0.3", "--", "true")
		if r.code != 75 {
			t.Fatalf("no worker in time: exit %d %s", r.code, r.stderr)
		}
		// A job cancelled by someone else: exit 77.
		done := make(chan result, 1)
		go func() {
			done <- runIn(t, env, "", 20*time.Second, bin("jsrun"), "--type", "nobody-serves", "--id", "victim", "--", "true")
		}()
		waitFor(t, 10*time.Second, "the job to be queued", func() bool {
			out, _ := d.jsctl("jobs", "--state", "queued", "--json")
			return strings.Contains(out, `"victim"`)
		})
		d.jsctl("cancel", "victim")
		if r := <-done; r.code != 77 {
			t.Fatalf("cancelled: exit %d %s", r.code, r.stderr)
		}
	})
}

// jsd --workers starts and supervises its own workers.
func TestJsdSpawnsWorkers(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t, "--workers", "2", "--worker-type", "up", "--", "tr", "a-z", "A-Z")
		waitFor(t, 10*time.Second, "two workers", func() bool { return len(d.status().Workers) == 2 })
		c := dialLines(t, d.dir)
		c.send(`{"cmd":"do","id":1,"type":"up","arg":"hello"}` + "\r\n")
		c.expect(`{"cmd":"did","id":1,"res":"HELLO"}`)
		pid := d.status().Workers[0].PID
		syscall.Kill(pid, syscall.SIGKILL)
		waitFor(t, 10*time.Second, "the dead worker to be replaced", func() bool {
			s := d.status()
			return len(s.Workers) == 2 && s.Workers[0].PID != pid && s.Workers[1].PID != pid
		})
		c.send(`{"cmd":"do","id":2,"type":"up","arg":"again"}` + "\r\n")
		c.expect(`{"cmd":"did","id":2,"res":"AGAIN"}`)
	})
}

// A handler's failure: non-zero exit, stderr's tail as the error.
func TestHandlerFailure(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		startWorker(t, d, "--type", "f", "--", "sh", "-c", "cat; echo boom >&2; exit 4")
		c := dialLines(t, d.dir)
		c.send(`{"cmd":"do","id":"f1","type":"f","arg":"in","req":1}` + "\r\n")
		c.expect(`{"cmd":"queued","req":1,"id":"f1"}`)
		c.expect(`{"cmd":"failed","id":"f1","res":"in","error":"boom","exit":4}`)
		c.send(`{"cmd":"do","id":"f2","type":"f","arg":{"k":[1,2]},"req":2}` + "\r\n")
		c.expect(`{"cmd":"queued","req":2,"id":"f2"}`)
		c.expect(`{"cmd":"failed","id":"f2","res":"{\"k\":[1,2]}","error":"boom","exit":4}`)
	})
}

// startWorker runs jsworker against d until the test ends.
func startWorker(t *testing.T, d *daemon, args ...string) *exec.Cmd {
	t.Helper()
	before := len(d.status().Workers)
	cmd := exec.Command(bin("jsworker"), args...)
	cmd.Env = baseEnv(d.dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	waitFor(t, 10*time.Second, "the worker to register", func() bool { return len(d.status().Workers) > before })
	return cmd
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// jsd started with --socket elsewhere: jsrun, jsworker and jsctl find it
// with their own --socket.
func TestCustomSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "elsewhere.sock")
	d := &daemon{t: t, dir: dir, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin("jsd"), "--dir", dir, "--socket", sock, "--slots", "1")
	d.cmd.Env, d.cmd.Stderr = baseEnv(dir), d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(d.stop)
	env := baseEnv(dir)
	waitFor(t, 10*time.Second, "jsd on its custom socket", func() bool {
		return runIn(t, env, "", 10*time.Second, bin("jsctl"), "--socket", sock, "status").code == 0
	})
	if r := runIn(t, env, "", 10*time.Second, bin("jsrun"), "--socket", sock, "--no-autostart", "--", "echo", "ok"); r.code != 0 || r.stdout != "ok\n" {
		t.Fatalf("jsrun --socket: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	w := exec.Command(bin("jsworker"), "--socket", sock, "--type", "x")
	w.Env = env
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Process.Signal(syscall.SIGTERM); w.Wait() })
	if r := runIn(t, env, "", 10*time.Second, bin("jsrun"), "--socket", sock, "--no-autostart", "--type", "x", "--", "echo", "remote"); r.code != 0 || r.stdout != "remote\n" {
		t.Fatalf("jsrun --type via --socket: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}

// A submitter that half-closes its unix connection (it has sent all it
// will, as `printf ... | socat - UNIX:...` does) still gets its outcomes;
// then jsd closes the connection.
func TestHalfClosedSubmitterGetsOutcome(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		c := dialLines(t, d.dir)
		c.send(`{"cmd":"do","id":"h1","type":"later","arg":1,"req":1}` + "\r\n")
		c.expect(`{"cmd":"queued","req":1,"id":"h1"}`)
		if err := c.nc.(*net.UnixConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		w := dialLines(t, d.dir)
		w.send(`{"cmd":"can_do","types":["later"]}` + "\r\n")
		w.expect(`{"cmd":"do","id":"h1","type":"later","arg":1}`)
		w.send(`{"cmd":"did","id":"h1","res":"half"}` + "\r\n")
		c.expect(`{"cmd":"did","id":"h1","res":"half"}`)
		if !c.closed() {
			t.Fatal("jsd kept the half-closed connection open after its last outcome")
		}
	})
}

// One submitter's jobs of a type and priority run in the order it sent
// them, even when it sends them all at once without waiting for the acks.
func TestPipelinedSubmitterFIFO(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		c := dialLines(t, d.dir)
		const n = 60
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `{"cmd":"do","id":"f%d","type":"fifo","req":%d}`+"\r\n", i, i)
		}
		c.send(b.String())
		for range n {
			if m := c.msg(); m["cmd"] != "queued" {
				t.Fatalf("ack: %v", m)
			}
		}
		w := dialLines(t, d.dir)
		w.send(`{"cmd":"can_do","types":["fifo"]}` + "\r\n")
		for i := range n {
			m := w.msg()
			if m["id"] != fmt.Sprintf("f%d", i) {
				t.Fatalf("job %d: got %v, want f%d (one submitter's order)", i, m, i)
			}
			w.sendJSON(map[string]any{"cmd": "did", "id": m["id"], "res": nil})
		}
	})
}
