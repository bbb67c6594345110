package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// With --journal, queued and detached jobs and their results survive a
// SIGKILL of jsd; jobs whose submitter was still connected come back
// detached, for 'jsctl wait'.
func TestJournalSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	jpath := filepath.Join(dir, "journal.db")
	d := startJSDIn(t, dir, "--journal", jpath)
	env := baseEnv(dir)
	for _, id := range []string{"q1", "q2"} {
		r := runIn(t, env, "", 10*time.Second, bin("jsrun"), "--type", "later", "--detach", "--id", id, "--", "echo", id)
		if r.code != 0 {
			t.Fatalf("submit %s: %d %s", id, r.code, r.stderr)
		}
	}
	// A detached job that ends before the crash: its result must survive.
	startWorker(t, d, "--type", "now")
	r := runIn(t, env, "", 10*time.Second, bin("jsrun"), "--type", "now", "--detach", "--id", "r1", "--", "echo", "result-one")
	if r.code != 0 {
		t.Fatalf("submit r1: %d %s", r.code, r.stderr)
	}
	waitFor(t, 10*time.Second, "r1 to end", func() bool {
		out, _ := d.jsctl("jobs", "--state", "done", "--json")
		return strings.Contains(out, `"r1"`)
	})
	// A job whose submitter is connected when jsd dies (acknowledged, so
	// it is on disk).
	c := dialLines(t, dir)
	c.send(`{"cmd":"do","id":"a1","type":"later","arg":{"argv":["echo","attached"]},"req":1}` + "\r\n")
	c.expect(`{"cmd":"queued","req":1,"id":"a1"}`)

	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d2 := startJSDIn(t, dir, "--journal", jpath)
	if !strings.Contains(d2.stderr.String(), "3 job(s) queued again, 1 result(s) kept") {
		t.Errorf("restart log: %s", d2.stderr.String())
	}
	w := runIn(t, env, "", 10*time.Second, bin("jsctl"), "wait", "r1")
	if w.code != 0 || w.stdout != "result-one\n" {
		t.Fatalf("r1 after restart: exit %d %q %s", w.code, w.stdout, w.stderr)
	}
	startWorker(t, d2, "--type", "later")
	w = runIn(t, env, "", 10*time.Second, bin("jsctl"), "wait", "q1", "q2", "a1")
	if w.code != 0 || w.stdout != "q1\nq2\nattached\n" {
		t.Fatalf("queued jobs after restart: exit %d %q %s", w.code, w.stdout, w.stderr)
	}
	// Everything fetched: a clean stop leaves an empty journal behind.
	d2.stop()
	d3 := startJSDIn(t, dir, "--journal", jpath)
	for _, q := range d3.status().Queues {
		if q.Queued != 0 || q.Running != 0 {
			t.Fatalf("journal not empty after everything was fetched: %+v", q)
		}
	}
}

// A journal that is not a bbolt file is moved aside with a warning; jsd
// starts empty instead of crashing (never a crash loop).
func TestJournalCorruptMovedAside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	jpath := filepath.Join(dir, "journal.db")
	if err := os.WriteFile(jpath, []byte(strings.Repeat("garbage!", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startJSDIn(t, dir, "--journal", jpath)
	if !strings.Contains(d.stderr.String(), "moved it to") {
		t.Fatalf("no warning about the corrupt journal: %s", d.stderr.String())
	}
	matches, _ := filepath.Glob(jpath + ".corrupt-*")
	if len(matches) != 1 {
		t.Fatalf("corrupt journal not moved aside: %v", matches)
	}
	r := runIn(t, baseEnv(dir), "", 10*time.Second, bin("jsrun"), "--type", "x", "--detach", "--id", "after", "--", "true")
	if r.code != 0 {
		t.Fatalf("jsd with a fresh journal does not take jobs: %d %s", r.code, r.stderr)
	}
}
