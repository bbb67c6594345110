package nesting

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/jobserver"
)

// The test binary doubles as the helper processes the tests need: with
// NESTING_HELPER set it runs that helper instead of the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("NESTING_HELPER") {
	case "":
		os.Exit(m.Run())
	case "find":
		// Print what Find sees, and who we are.
		h, ok := Find(os.Getenv(EnvSlot), os.Getenv("NESTING_IN_MAKE") == "1")
		fmt.Printf("%d %d %s %v\n", os.Getpid(), os.Getppid(), h, ok)
		os.Exit(0)
	case "borrow":
		// Borrow the slot named in JS_SLOT, say so, and hold it until
		// stdin closes (or we are killed).
		h, _ := ParseHolder(os.Getenv(EnvSlot))
		b, err := TryBorrow(h)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("borrowed")
		io.Copy(io.Discard, os.Stdin)
		b.Close()
		os.Exit(0)
	}
	os.Exit(2)
}

func TestParseHolder(t *testing.T) {
	cases := []struct {
		in   string
		want Holder
		ok   bool
	}{
		{"123:456", Holder{PID: 123, Start: 456}, true},
		{"1:0", Holder{PID: 1, Start: 0}, true},
		{"", Holder{}, false},
		{"123", Holder{}, false},
		{"0:5", Holder{}, false},
		{"-4:5", Holder{}, false},
		{"4:-5", Holder{}, false},
		{":5", Holder{}, false},
		{"4:", Holder{}, false},
		{"4:5:6", Holder{}, false},
		{"x:5", Holder{}, false},
		{" 4:5", Holder{}, false},
	}
	for _, tc := range cases {
		got, ok := ParseHolder(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseHolder(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok {
			if back, ok2 := ParseHolder(got.String()); !ok2 || back != got {
				t.Errorf("String() of %+v does not parse back: %q", got, got.String())
			}
		}
	}
}

func TestSelf(t *testing.T) {
	h, ok := Self()
	st, _ := jobserver.StartTime(os.Getpid())
	if !ok || h.PID != os.Getpid() || h.Start != st || st == 0 {
		t.Fatalf("Self() = %+v, %v", h, ok)
	}
}

func TestFindNamedHolder(t *testing.T) {
	self, _ := Self()
	parentStart, ok := jobserver.StartTime(os.Getppid())
	if !ok {
		t.Skip("cannot read the parent's start time")
	}
	parent := Holder{PID: os.Getppid(), Start: parentStart}

	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	sleepStart, _ := jobserver.StartTime(sleep.Process.Pid)
	notAncestor := Holder{PID: sleep.Process.Pid, Start: sleepStart}

	cases := []struct {
		name   string
		env    string
		inMake bool
		want   Holder
		ok     bool
	}{
		{"nothing to find", "", false, Holder{}, false},
		{"garbage", "not-a-holder", false, Holder{}, false},
		{"ourselves", self.String(), false, self, true},
		{"our parent", parent.String(), false, parent, true},
		{"a pid reused since", Holder{PID: parent.PID, Start: parent.Start + 1}.String(), false, Holder{}, false},
		{"not an ancestor", notAncestor.String(), false, Holder{}, false},
		{"a dead process", Holder{PID: 1 << 30, Start: 1}.String(), false, Holder{}, false},
	}
	for _, tc := range cases {
		got, ok := Find(tc.env, tc.inMake)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: Find(%q, %v) = %+v, %v; want %+v, %v", tc.name, tc.env, tc.inMake, got, ok, tc.want, tc.ok)
		}
	}
}

// helperEnv is the environment of a helper process: ours, plus env, and
// no 1 s pause at exit when the tests run with -race.
func helperEnv(env ...string) []string {
	return append(os.Environ(), append([]string{"GORACE=atexit_sleep_ms=0"}, env...)...)
}

// helper runs this test binary as a helper with the given environment.
func helper(mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = helperEnv(append([]string{"NESTING_HELPER=" + mode}, env...)...)
	return cmd
}

// findOutput parses the find helper's line: its pid, its parent's, and
// what Find returned.
func findOutput(t *testing.T, out string) (pid, ppid int, h string, ok bool) {
	t.Helper()
	var okWord string
	if _, err := fmt.Sscan(out, &pid, &ppid, &h, &okWord); err != nil {
		t.Fatalf("helper said %q: %v", out, err)
	}
	return pid, ppid, h, okWord == "true"
}

// A nested process finds the JS_SLOT holder several levels up.
func TestFindThroughAShell(t *testing.T) {
	self, _ := Self()
	cmd := exec.Command("sh", "-c", `"$0"; true`, os.Args[0])
	cmd.Env = helperEnv("NESTING_HELPER=find", EnvSlot+"="+self.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	_, _, h, ok := findOutput(t, string(out))
	if !ok || h != self.String() {
		t.Fatalf("Find from a grandchild = %s, %v; want us (%s)", h, ok, self)
	}
}

// Under make, the recipe is the slot: the process whose parent is make,
// whether make ran the command directly or through a shell.
func TestFindMakeRecipe(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("GNU make is not installed")
	}
	dir := t.TempDir()
	mk := "direct:\n\t@$(HELPER)\nshell:\n\t@$(HELPER); true\n"
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte(mk), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"direct", "shell"} {
		cmd := exec.Command("make", "-s", "-C", dir, target, "HELPER="+os.Args[0])
		cmd.Env = helperEnv("NESTING_HELPER=find", "NESTING_IN_MAKE=1", EnvSlot+"=", "MAKEFLAGS=")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", target, err, out)
		}
		pid, ppid, h, ok := findOutput(t, strings.TrimSpace(string(out)))
		want := pid // make ran us: we are the recipe
		if target == "shell" {
			want = ppid // the shell make ran is the recipe
		}
		got, parsed := ParseHolder(h)
		if !ok || !parsed || got.PID != want {
			t.Fatalf("%s: Find = %s, %v; want the recipe, pid %d", target, h, ok, want)
		}
	}
}

func TestBorrowIsExclusive(t *testing.T) {
	h, _ := Self()
	h.Start++ // a name no other test uses
	b, err := TryBorrow(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryBorrow(h); !errors.Is(err, ErrTaken) {
		t.Fatalf("second borrow = %v, want ErrTaken", err)
	}
	other := h
	other.Start++
	b2, err := TryBorrow(other)
	if err != nil {
		t.Fatalf("borrow of another slot = %v", err)
	}
	b2.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = TryBorrow(h)
	if err != nil {
		t.Fatalf("borrow after Close = %v", err)
	}
	b.Close()
	var none *Borrow
	if err := none.Close(); err != nil {
		t.Fatalf("Close of no borrow = %v", err)
	}
}

// A borrower killed with SIGKILL leaks nothing: the kernel frees the name.
func TestKilledBorrowerLeaksNothing(t *testing.T) {
	h, _ := Self()
	h.Start += 100
	cmd := helper("borrow", EnvSlot+"="+h.String())
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if strings.TrimSpace(l) != "borrowed" {
			t.Fatalf("helper: %q", l)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the helper did not borrow in 10 s")
	}
	if _, err := TryBorrow(h); !errors.Is(err, ErrTaken) {
		t.Fatalf("borrow while another process holds it = %v, want ErrTaken", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	b, err := TryBorrow(h)
	if err != nil {
		t.Fatalf("borrow after the borrower was killed = %v", err)
	}
	b.Close()
}

func TestHolderString(t *testing.T) {
	if s := (Holder{PID: 12, Start: 345}).String(); s != "12:345" {
		t.Fatalf("String() = %q", s)
	}
}
