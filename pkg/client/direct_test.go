package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeJSD listens on a unix socket and hands each accepted connection to
// serve, in a goroutine.
func fakeJSD(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "jsd.sock")
	ln, err := net.Listen("unix", sock)
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
				serve(c)
			}()
		}
	}()
	return sock
}

func TestDialDirectNoDaemon(t *testing.T) {
	dir := t.TempDir()
	if _, err := DialDirect(filepath.Join(dir, "missing.sock")); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("missing socket: %v, want ErrNoDaemon", err)
	}
	// A socket file nobody listens on any more.
	sock := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := DialDirect(sock); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("stale socket: %v, want ErrNoDaemon", err)
	}
}

func TestDirectLease(t *testing.T) {
	got := make(chan string, 3)
	release := make(chan struct{})
	sock := fakeJSD(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		line, _ := r.ReadString('\n')
		got <- line
		<-release // answer only once the client has timed out once
		io.WriteString(c, `{"cmd":"lease","slots":1,"lease":9,"fifo":"/x/jobserver.fifo","total":4}`+"\r\n")
		for i := 0; i < 2; i++ {
			line, _ = r.ReadString('\n')
			got <- line
		}
	})
	c, err := DialDirect(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendAcquire(1, 2*time.Second, 123, "make -C src"); err != nil {
		t.Fatal(err)
	}
	if l := <-got; l != `{"cmd":"acquire","slots":1,"timeout_ms":2000,"pid":123,"command":"make -C src"}`+"\r\n" {
		t.Errorf("acquire sent as %q", l)
	}
	if _, err := c.AwaitLease(time.Now().Add(30 * time.Millisecond)); !errors.Is(err, ErrNotYet) {
		t.Fatalf("before the answer: %v, want ErrNotYet", err)
	}
	close(release)
	lease, err := c.AwaitLease(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if *lease != (Lease{ID: 9, Slots: 1, Fifo: "/x/jobserver.fifo", Total: 4}) {
		t.Errorf("lease %+v", *lease)
	}
	if err := c.Started(9, 456, "make"); err != nil {
		t.Fatal(err)
	}
	if err := c.SendRelease(9); err != nil {
		t.Fatal(err)
	}
	if l := <-got; l != `{"cmd":"started","lease":9,"pid":456,"command":"make"}`+"\r\n" {
		t.Errorf("started sent as %q", l)
	}
	if l := <-got; l != `{"cmd":"release","lease":9}`+"\r\n" {
		t.Errorf("release sent as %q", l)
	}
}

// A direct connection that jsd closes reports it, and a write to it fails
// (EPIPE) rather than killing the process with SIGPIPE.
func TestDirectPeerGone(t *testing.T) {
	sock := fakeJSD(t, func(c net.Conn) {})
	c, err := DialDirect(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after jsd closed: %v, want EOF", err)
	}
	var werr error
	for i := 0; i < 100 && werr == nil; i++ { // the first write may still be accepted
		werr = c.SendRelease(1)
	}
	if !errors.Is(werr, unix.EPIPE) && !errors.Is(werr, unix.ECONNRESET) {
		t.Fatalf("write after jsd closed: %v, want EPIPE", werr)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestDirectKeepAcrossExecAndFile(t *testing.T) {
	sock := fakeJSD(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c, err := DialDirect(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd := c.nc.(*fdConn).fd
	if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Fatal("a new direct connection is not close-on-exec")
	}
	if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 {
		t.Error("a direct connection is non-blocking")
	}
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if int(f.Fd()) == fd {
		t.Error("File did not duplicate the descriptor")
	}
	if err := c.KeepAcrossExec(); err != nil {
		t.Fatal(err)
	}
	if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC != 0 {
		t.Error("KeepAcrossExec left close-on-exec set")
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		t.Errorf("fd %d: %v, mode %o", fd, err, st.Mode)
	}
}

// Dial's connection is in Go's poller: a Recv blocked in one goroutine ends
// when another closes the connection (jsworker stops its reader so), a read
// deadline works, and File and KeepAcrossExec duplicate the descriptor
// without turning the connection blocking.
func TestDialInPoller(t *testing.T) {
	sock := fakeJSD(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := c.Recv(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv past its deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := c.KeepAcrossExec(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Recv(); done <- err }()
	// Close once the Recv waits in the poller.
	for deadline := time.Now().Add(10 * time.Second); !goroutineWaits("[IO wait", "(*Conn).Recv"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Recv never waited for input")
		}
	}
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Recv on a closed connection returned a message")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a blocked Recv")
	}
}

// goroutineWaits reports whether some goroutine is in state (as
// runtime.Stack shows it, e.g. "[IO wait") inside a function named fn.
func goroutineWaits(state, fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(state)) && bytes.Contains(g, []byte(fn)) {
			return true
		}
	}
	return false
}
