package jobserver

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newPool makes a FIFO in a temp dir and opens it as its owner.
func newPool(t *testing.T) (string, *Pipe) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jobserver.fifo")
	if err := CreateFIFO(path); err != nil {
		t.Fatal(err)
	}
	p, err := OpenOwner(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return path, p
}

func free(t *testing.T, p *Pipe) int {
	t.Helper()
	n, err := p.Free()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCreateFIFOReplacesStaleFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jobserver.fifo")
	check := func(what string) {
		t.Helper()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if fi.Mode().Type() != os.ModeNamedPipe || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want a named pipe with 0600", what, fi.Mode())
		}
		if !IsFIFO(path) {
			t.Fatalf("%s: IsFIFO is false", what)
		}
	}
	if IsFIFO(path) {
		t.Fatal("IsFIFO of a missing file")
	}
	if err := CreateFIFO(path); err != nil {
		t.Fatal(err)
	}
	check("new fifo")
	// Hold the first one open so its inode cannot be reused.
	old, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := CreateFIFO(path); err != nil {
		t.Fatal(err)
	}
	check("replaced fifo")
	was, err := old.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if now, err := os.Lstat(path); err != nil || os.SameFile(was, now) {
		t.Fatalf("a stale fifo was kept, not replaced (%v)", err)
	}
	os.Remove(path)
	if err := os.WriteFile(path, []byte("junk"), 0o666); err != nil {
		t.Fatal(err)
	}
	if IsFIFO(path) {
		t.Fatal("IsFIFO of a regular file")
	}
	if err := CreateFIFO(path); err != nil {
		t.Fatal(err)
	}
	check("fifo over a regular file")
	if err := CreateFIFO(filepath.Join(dir, "missing", "fifo")); err == nil {
		t.Fatal("CreateFIFO in a missing directory: no error")
	}
}

func TestPipeTakeAndPut(t *testing.T) {
	_, p := newPool(t)
	if n := free(t, p); n != 0 {
		t.Fatalf("new fifo holds %d tokens", n)
	}
	if n, err := p.Put(5); n != 5 || err != nil {
		t.Fatalf("Put(5) = %d, %v", n, err)
	}
	if n := free(t, p); n != 5 {
		t.Fatalf("Free = %d, want 5", n)
	}
	buf := make([]byte, 10)
	if n, err := p.TryTake(buf[:3]); n != 3 || err != nil {
		t.Fatalf("TryTake(3) = %d, %v", n, err)
	}
	if n := free(t, p); n != 2 {
		t.Fatalf("Free = %d, want 2", n)
	}
	if n, err := p.TryTake(buf); n != 2 || err != nil {
		t.Fatalf("TryTake(10) = %d, %v; want the 2 left", n, err)
	}
	if n, err := p.TryTake(buf); n != 0 || err != nil {
		t.Fatalf("TryTake on an empty fifo = %d, %v; want 0 without waiting", n, err)
	}
	if n, err := p.Put(0); n != 0 || err != nil {
		t.Fatalf("Put(0) = %d, %v", n, err)
	}
	for _, b := range buf[:3] {
		if b != Token {
			t.Fatalf("read token %q, want %q", b, Token)
		}
	}
}

func TestPipePutStopsWhenFull(t *testing.T) {
	_, p := newPool(t)
	c, err := p.Capacity()
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Put(c + 10)
	if n != c || err != nil {
		t.Fatalf("Put(capacity+10) = %d, %v; want %d without waiting", n, err, c)
	}
	if f := free(t, p); f != c {
		t.Fatalf("Free = %d, want %d", f, c)
	}
}

func TestPipeWait(t *testing.T) {
	path, p := newPool(t)
	p.Put(1)
	if ok, err := p.Wait(); !ok || err != nil {
		t.Fatalf("Wait with a token = %v, %v", ok, err)
	}
	p.TryTake(make([]byte, 1))

	p.Interrupt()
	if ok, err := p.Wait(); ok || err != nil {
		t.Fatalf("interrupted Wait = %v, %v; want false", ok, err)
	}

	// A token written by someone else (a client on its own description)
	// wakes the owner.
	done := make(chan bool, 1)
	go func() { ok, _ := p.Wait(); done <- ok }()
	w, err := OpenForChild(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte{'|'}); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("Wait woke without a token")
		}
	case <-time.After(10 * time.Second):
		p.Interrupt()
		t.Fatal("Wait did not wake on a token")
	}
}

func fileFlags(t *testing.T, fd uintptr) int {
	t.Helper()
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

// Children get descriptions of their own: blocking, read-write, and a
// client that makes its own non-blocking (make does) changes nobody else's.
func TestOpenForChild(t *testing.T) {
	path, p := newPool(t)
	a, err := OpenForChild(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	fl := fileFlags(t, a.Fd())
	if fl&unix.O_NONBLOCK != 0 || fl&unix.O_ACCMODE != unix.O_RDWR {
		t.Fatalf("child description flags %#o: want blocking O_RDWR", fl)
	}
	if fd, err := unix.FcntlInt(a.Fd(), unix.F_GETFD, 0); err != nil || fd&unix.FD_CLOEXEC == 0 {
		t.Fatalf("child description is not close-on-exec until handed over (%#x, %v)", fd, err)
	}
	if _, err := unix.FcntlInt(a.Fd(), unix.F_SETFL, fl|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	b, err := OpenForChild(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if fileFlags(t, b.Fd())&unix.O_NONBLOCK != 0 {
		t.Fatal("O_NONBLOCK set on one child's description reached another's")
	}
	// The owner stays non-blocking whatever a child does.
	if _, err := unix.FcntlInt(b.Fd(), unix.F_SETFL, fileFlags(t, b.Fd())&^unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	if n, err := p.TryTake(make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("owner TryTake on an empty fifo = %d, %v: it must not block", n, err)
	}
	if _, err := OpenForChild(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("OpenForChild of a missing fifo: no error")
	}
}

func TestEnsureCapacity(t *testing.T) {
	_, p := newPool(t)
	c, err := p.Capacity()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureCapacity(c); err != nil {
		t.Fatalf("EnsureCapacity(current) = %v", err)
	}
	if err := p.EnsureCapacity(2 * c); err != nil {
		t.Fatalf("EnsureCapacity(2*%d) = %v", c, err)
	}
	if c2, _ := p.Capacity(); c2 < 2*c {
		t.Fatalf("capacity %d after EnsureCapacity(%d)", c2, 2*c)
	}
	if n, err := p.Put(2 * c); n != 2*c || err != nil {
		t.Fatalf("Put(%d) after growing = %d, %v", 2*c, n, err)
	}
}

// The kernel refuses an unprivileged pipe over pipe-max-size (EPERM), as it
// does over pipe-user-pages-soft: EnsureCapacity reports it with the fix,
// and the pipe keeps working at its old size. Root's capabilities are
// dropped for the calling thread only.
func TestEnsureCapacityRefused(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		t.Skipf("no pipe-max-size: %v", err)
	}
	maxSize, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	_, p := newPool(t)
	before, _ := p.Capacity()

	runtime.LockOSThread()
	restore, err := dropResourceCaps()
	if err != nil {
		runtime.UnlockOSThread()
		t.Skipf("cannot drop CAP_SYS_RESOURCE for this thread: %v", err)
	}
	err = p.EnsureCapacity(2 * maxSize)
	if restore() == nil {
		runtime.UnlockOSThread() // else the thread dies with the goroutine
	}

	if err == nil {
		t.Fatalf("EnsureCapacity(%d) over pipe-max-size %d as an unprivileged thread: no error", 2*maxSize, maxSize)
	}
	if !errors.Is(err, unix.EPERM) && !strings.Contains(err.Error(), "operation not permitted") {
		t.Errorf("error %q does not say the kernel refused (EPERM)", err)
	}
	for _, want := range []string{strconv.Itoa(before), "--slots", "pipe-user-pages-soft"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if after, _ := p.Capacity(); after != before {
		t.Errorf("capacity changed from %d to %d", before, after)
	}
	if n, err := p.Put(1); n != 1 || err != nil {
		t.Errorf("Put after the refusal = %d, %v", n, err)
	}
}

// dropResourceCaps clears CAP_SYS_RESOURCE and CAP_SYS_ADMIN from the
// calling thread's effective set (the kernel checks both before it lets a
// pipe grow) and returns a function that puts them back.
func dropResourceCaps() (restore func() error, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var old [2]unix.CapUserData
	if err := unix.Capget(&hdr, &old[0]); err != nil {
		return nil, err
	}
	dropped := old
	for _, c := range []uint{unix.CAP_SYS_RESOURCE, unix.CAP_SYS_ADMIN} {
		dropped[c/32].Effective &^= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &dropped[0]); err != nil {
		return nil, err
	}
	return func() error { return unix.Capset(&hdr, &old[0]) }, nil
}

// startHolder starts a sleep that inherited a description of the FIFO.
func startHolder(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	f, err := OpenForChild(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "60")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func TestHolders(t *testing.T) {
	path, _ := newPool(t) // we hold it too, as its owner
	hs, err := Holders(path, os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 0 {
		t.Fatalf("holders %v: want none but us (skipped)", hs)
	}
	if hs, _ := Holders(path, -1, 0); !slices.Contains(hs, os.Getpid()) {
		t.Fatalf("holders %v: we hold it and were not skipped", hs)
	}

	sleep := startHolder(t, path)
	// Renamed, it is the same FIFO (found by device and inode).
	moved := path + ".moved"
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	hs, err = Holders(moved, os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hs, []int{sleep.Process.Pid}) {
		t.Fatalf("holders %v, want the sleep %d", hs, sleep.Process.Pid)
	}
	sleep.Process.Kill()
	sleep.Wait()
	if hs, _ := Holders(moved, os.Getpid(), 0); len(hs) != 0 {
		t.Fatalf("holders %v after the sleep died", hs)
	}
	if _, err := Holders(path, os.Getpid(), 0); err == nil {
		t.Fatal("Holders of a missing path: no error")
	}
}

func TestProcessInfo(t *testing.T) {
	self, ok := StartTime(os.Getpid())
	if !ok || self == 0 {
		t.Fatalf("StartTime(self) = %d, %v", self, ok)
	}
	ppid, comm, ok := Parent(os.Getpid())
	if !ok || ppid != os.Getppid() {
		t.Fatalf("Parent(self) = %d, %q, %v; want %d", ppid, comm, ok, os.Getppid())
	}
	if c := Comm(os.Getpid()); c == "" || c != comm {
		t.Fatalf("Comm(self) = %q, Parent's comm %q", c, comm)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	child, ok := StartTime(cmd.Process.Pid)
	if !ok || child < self {
		t.Fatalf("child StartTime %d (%v) before ours %d", child, ok, self)
	}
	if ppid, comm, _ := Parent(cmd.Process.Pid); ppid != os.Getpid() || comm != "sleep" {
		t.Fatalf("Parent(child) = %d, %q", ppid, comm)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, ok := StartTime(cmd.Process.Pid); ok {
		t.Fatal("StartTime of a reaped process")
	}
	if Comm(cmd.Process.Pid) != "" {
		t.Fatal("Comm of a reaped process")
	}
}

func TestStatFields(t *testing.T) {
	cases := []struct {
		in, comm string
		first    string
		ok       bool
	}{
		{"12 (make) S 1 12 12 0", "make", "S", true},
		{"12 (a (b) c) R 1 2", "a (b) c", "R", true},
		{"12 (x)) S 1", "x)", "S", true},
		{"12 make S 1", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range cases {
		comm, fields, ok := statFields(tc.in)
		if ok != tc.ok || comm != tc.comm || (ok && fields[0] != tc.first) {
			t.Errorf("statFields(%q) = %q, %q, %v", tc.in, comm, fields, ok)
		}
	}
}

func TestClientOfAFifo(t *testing.T) {
	path, p := newPool(t)
	c, err := OpenClient(Auth{Fifo: path, R: -1, W: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Take(time.Now()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Take on an empty pool without waiting = %v, want ErrTimeout", err)
	}
	p.Put(2)
	if err := c.Take(time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("Take with a token there and a past deadline = %v", err)
	}
	if err := c.Take(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n := free(t, p); n != 0 {
		t.Fatalf("free %d after taking both", n)
	}
	if err := c.Take(time.Now().Add(50 * time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Take with a short deadline = %v, want ErrTimeout", err)
	}
	// A waiting Take gets a token written meanwhile.
	got := make(chan error, 1)
	c2, err := OpenClient(Auth{Fifo: path, R: -1, W: -1})
	if err != nil {
		t.Fatal(err)
	}
	go func() { got <- c2.Take(time.Now().Add(10 * time.Second)) }()
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiting Take = %v", err)
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := free(t, p); n != 2 {
		t.Fatalf("free %d after every client closed, want 2", n)
	}
	if _, err := OpenClient(Auth{Fifo: path + ".missing", R: -1, W: -1}); err == nil {
		t.Fatal("OpenClient of a missing fifo: no error")
	}
}

// The R,W form: descriptors inherited from make are reopened, so their
// flags (shared with make) are never changed.
func TestClientOfInheritedDescriptors(t *testing.T) {
	path, p := newPool(t)
	p.Put(1)
	r, err := OpenForChild(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := OpenForChild(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c, err := OpenClient(Auth{R: int(r.Fd()), W: int(w.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Take(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{r, w} {
		if fileFlags(t, f.Fd())&unix.O_NONBLOCK != 0 {
			t.Fatalf("the client made the inherited description %d non-blocking", f.Fd())
		}
	}
	if n := free(t, p); n != 1 {
		t.Fatalf("free %d, want the token back", n)
	}

	// Descriptors that are not pipes (a recipe without '+': make closed
	// them, and the numbers now name something else).
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, a := range []Auth{{R: int(null.Fd()), W: int(null.Fd())}, {R: 1000, W: 1001}} {
		_, err := OpenClient(a)
		if err == nil || !strings.Contains(err.Error(), "'+'") {
			t.Errorf("OpenClient(%d,%d) = %v, want an error with the '+' hint", a.R, a.W, err)
		}
	}
}

// isKernelThread reads PF_KTHREAD from /proc/PID/stat (field 9).
func isKernelThread(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, fields, ok := statFields(string(b))
	if !ok || len(fields) < 7 {
		return false
	}
	flags, _ := strconv.ParseUint(fields[6], 10, 64)
	return flags&0x00200000 != 0
}

// As an unprivileged user, jsd cannot read most fd tables, and counts
// those processes as holders; kernel threads hold no files and must never
// count (kworkers come and go all the time: counting them would keep a
// non-root jsd from ever reclaiming a leaked token). The calling thread
// takes nobody's file-system identity and drops CAP_SYS_PTRACE for the
// scan.
func TestHoldersAsUnprivilegedSkipsKernelThreads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to take another user's identity for one thread")
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o711)
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "jobserver.fifo")
	if err := CreateFIFO(path); err != nil {
		t.Fatal(err)
	}

	runtime.LockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var old [2]unix.CapUserData
	if err := unix.Capget(&hdr, &old[0]); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	dropped := old
	for _, c := range []uint{unix.CAP_SYS_PTRACE, unix.CAP_DAC_READ_SEARCH, unix.CAP_DAC_OVERRIDE} {
		dropped[c/32].Effective &^= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &dropped[0]); err != nil {
		runtime.UnlockOSThread()
		t.Skipf("capset: %v", err)
	}
	unix.Setfsuid(65534)
	hs, err := Holders(path, os.Getpid(), 0)
	unix.Setfsuid(0)
	if unix.Capset(&hdr, &old[0]) == nil {
		runtime.UnlockOSThread()
	}
	if err != nil {
		t.Fatal(err)
	}

	if !slices.Contains(hs, 1) {
		t.Fatalf("holders %v: init's fd table was readable, so the scan was not unprivileged", hs)
	}
	for _, pid := range hs {
		if isKernelThread(pid) {
			t.Errorf("kernel thread %d (%s) counted as a holder", pid, Comm(pid))
		}
	}
}
