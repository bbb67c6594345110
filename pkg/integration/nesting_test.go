package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func needMake(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("GNU make is not installed (scripts/setup installs it)")
	}
}

// makefile writes a Makefile with n targets whose recipe is recipe (with
// %d replaced by the target number) and returns its directory.
func makefile(t *testing.T, n int, recipe string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("all:")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, " t%d", i)
	}
	b.WriteString("\n.PHONY: all")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, " t%d", i)
	}
	b.WriteString("\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "t%d:\n\t%s\n", i, strings.ReplaceAll(recipe, "%d", fmt.Sprint(i)))
	}
	writeFile(t, filepath.Join(dir, "Makefile"), b.String())
	return dir
}

// Rule 1: a parent's slot is lent to its child, as make's implicit slot.
func TestNestedChainOneSlot(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "1")
	r := runIn(t, baseEnv(d.dir), "", 10*time.Second, bin("jsrun"), "--", "jsrun", "--", "jsrun", "--", "true")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	d.waitWhole(10 * time.Second)
}

// Rule 2: make under jsrun runs exactly N recipes at once.
func TestMakeUnderJsrunUsesAllSlots(t *testing.T) {
	needMake(t)
	d := startJSD(t, "--slots", "3")
	p := newProbe(t)
	dir := makefile(t, 12, p.script+" 0.3")
	start := time.Now()
	r := runIn(t, baseEnv(d.dir), dir, 30*time.Second, bin("jsrun"), "--", "make")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	runs, most := p.counts(t)
	t.Logf("12 recipes of 0.3 s with 3 slots took %v (ideal %v)", time.Since(start).Round(time.Millisecond), 1200*time.Millisecond)
	if runs != 12 || most != 3 {
		t.Fatalf("runs=%d max concurrent=%d, want 12 and exactly 3", runs, most)
	}
	if strings.Contains(r.stderr, "INTERNAL") || strings.Contains(r.stderr, "jobserver unavailable") {
		t.Fatalf("make complained:\n%s", r.stderr)
	}
	d.waitWhole(10 * time.Second)
}

// Rule 3: recipes that call jsrun themselves, under jsrun -- make.
func TestRecipesCallingJsrun(t *testing.T) {
	t.Parallel()
	needMake(t)
	for _, slots := range []int{1, 3} {
		t.Run(fmt.Sprintf("slots=%d", slots), func(t *testing.T) {
			t.Parallel()
			d := startJSD(t, "--slots", fmt.Sprint(slots))
			p := newProbe(t)
			dir := makefile(t, 9, "jsrun -- "+p.script+" 0.1")
			r := runIn(t, baseEnv(d.dir), dir, 30*time.Second, bin("jsrun"), "--", "make", "-s")
			if r.code != 0 {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			runs, most := p.counts(t)
			if runs != 9 || most > slots {
				t.Fatalf("runs=%d max concurrent=%d, want 9 and at most %d", runs, most, slots)
			}
			d.waitWhole(10 * time.Second)
		})
	}
}

// Rule 4: two independent builds share one pool.
func TestTwoBuildsShareThePool(t *testing.T) {
	t.Parallel()
	needMake(t)
	d := startJSD(t, "--slots", "4")
	p := newProbe(t)
	dirs := []string{makefile(t, 10, p.script+" 0.2"), makefile(t, 10, p.script+" 0.2")}
	done := make(chan result, 2)
	for _, dir := range dirs {
		go func() { done <- runIn(t, baseEnv(d.dir), dir, 30*time.Second, bin("jsrun"), "--", "make", "-s") }()
	}
	for range dirs {
		if r := <-done; r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	runs, most := p.counts(t)
	if runs != 20 || most > 4 {
		t.Fatalf("runs=%d max concurrent=%d, want 20 and at most 4", runs, most)
	}
	d.waitWhole(10 * time.Second)
}

// Rule 5: a script that fans out jsruns in the background under jsrun.
func TestFanOutUnderJsrun(t *testing.T) {
	t.Parallel()
	d := startJSD(t, "--slots", "2")
	p := newProbe(t)
	script := filepath.Join(t.TempDir(), "fan")
	writeFile(t, script, fmt.Sprintf("#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8; do jsrun -- %s 0.1 & done\nwait\n", p.script))
	r := runIn(t, baseEnv(d.dir), "", 30*time.Second, bin("jsrun"), "--", script)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	runs, most := p.counts(t)
	if runs != 8 || most > 2 {
		t.Fatalf("runs=%d max concurrent=%d, want 8 and at most 2", runs, most)
	}
	d.waitWhole(10 * time.Second)
}

// Rule 6: plain make -j4 with no jsd: jsrun in '+' recipes uses make's
// pool. Each recipe starts two jsruns at once: the first runs in the
// recipe's own slot, the second takes a token, so at most 4 run at once and
// nothing deadlocks with 8 recipes all calling jsrun.
func TestPlainMakeJobserver(t *testing.T) {
	t.Parallel()
	needMake(t)
	dir := t.TempDir() // no jsd here
	p := newProbe(t)
	mk := makefile(t, 8, "+jsrun --no-autostart -- "+p.script+" 0.1 & jsrun --no-autostart -- "+p.script+" 0.1; wait")
	r := runIn(t, baseEnv(dir), mk, 30*time.Second, "make", "-s", "-j4")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	runs, most := p.counts(t)
	if runs != 16 || most > 4 {
		t.Fatalf("runs=%d max concurrent=%d, want 16 and at most 4", runs, most)
	}
	if _, err := os.Stat(filepath.Join(dir, "jsd.sock")); err == nil {
		t.Fatalf("jsrun started a jsd although make's pool was there")
	}
	if strings.Contains(r.stderr, "INTERNAL") {
		t.Fatalf("make's pool lost tokens:\n%s", r.stderr)
	}
}

// Rule 7: kill -9 of a jsrun holding a slot, and of a make holding tokens.
func TestKilledHoldersLeakNothing(t *testing.T) {
	t.Parallel()
	needMake(t)
	d := startJSD(t, "--slots", "3")
	env := baseEnv(d.dir)

	// A jsrun holding a slot, SIGKILLed: jsd gets the slot back and kills
	// the command's process group.
	marker := filepath.Join(t.TempDir(), "alive")
	cmd := exec.Command(bin("jsrun"), "--", "sh", "-c", "echo $$ > "+marker+"; exec sleep 60")
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the command to start", func() bool { b, _ := os.ReadFile(marker); return len(b) > 0 })
	b, _ := os.ReadFile(marker)
	var childPID int
	fmt.Sscan(string(b), &childPID)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	d.waitWhole(10 * time.Second)
	waitFor(t, 10*time.Second, "the orphaned command to be killed", func() bool {
		return syscall.Kill(childPID, 0) != nil
	})

	// A make holding tokens (three recipes running: its implicit slot plus
	// two tokens), SIGKILLed together with its recipes.
	p := newProbe(t)
	mk := makefile(t, 6, p.script+" 30")
	mcmd := exec.Command(bin("jsrun"), "--", "make", "-s")
	mcmd.Env, mcmd.Dir = env, mk
	mcmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := mcmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "three recipes to run", func() bool {
		ents, _ := os.ReadDir(p.dir)
		return len(ents) == 3
	})
	if s := d.status().Slots; s.Free != 0 {
		t.Fatalf("with 3 recipes running the pool should be empty: %+v", s)
	}
	syscall.Kill(-mcmd.Process.Pid, syscall.SIGKILL) // jsrun, make and the recipes
	mcmd.Wait()
	d.waitWhole(10 * time.Second)
	if s := d.status().Slots; s.Reclaimed < 2 {
		t.Fatalf("make's two tokens should have been reclaimed: %+v", s)
	}
}
