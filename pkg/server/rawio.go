package server

import (
	"bufio"
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/js-toolkit/js/pkg/wire"
)

// Socket reads and writes without the runtime's syscall bookkeeping.
//
// A Go syscall made through syscall.Syscall (as net.Conn's Read and Write
// do) enters the scheduler's "in syscall" state, and the first one after the
// process was idle wakes the runtime's monitor thread (sysmon), which then
// polls every 20 us until the process is idle again. jsd goes idle between
// almost every pair of messages, so each request paid a futex wake-up of a
// second thread on its critical path, and that thread's polling cost about a
// fifth of jsd's CPU time (profiles of W1 and W3: runtime.sysmon 22%,
// entersyscallWakeSysmon in the read path). Our sockets are non-blocking: a
// read or write never waits in the kernel (the poller waits instead), so
// there is nothing for the scheduler to take back during one, and the raw
// form is safe.

// rawRead is read(2) on a non-blocking descriptor.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// rawWrite is write(2) on a non-blocking descriptor.
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// rawReader reads a connection through its RawConn: the poller waits for
// input as net.Conn.Read does, the read itself is rawRead. Bytes a sniffing
// reader already buffered come first.
type rawReader struct {
	rc  syscall.RawConn
	pre *bufio.Reader // nil once drained
	p   []byte        // the caller's buffer during Read
	n   int
	err syscall.Errno
	fn  func(fd uintptr) bool // made once: a closure per Read would allocate

	peek  [1]byte
	probe func(fd uintptr) bool // waitReadable's
}

func newRawReader(rc syscall.RawConn, pre *bufio.Reader) *rawReader {
	r := &rawReader{rc: rc, pre: pre}
	r.fn = func(fd uintptr) bool {
		for {
			n, e := rawRead(fd, r.p)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // the poller waits, then calls again
			}
			r.n, r.err = n, e
			return true
		}
	}
	r.probe = func(fd uintptr) bool {
		for {
			_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.peek[0])), 1,
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // the poller waits, then calls again
			}
			return true // input, EOF or an error: the next Read tells which
		}
	}
	return r
}

// waitReadable waits until a Read would not block, reading nothing (its
// caller holds no buffer meanwhile). An error (a deadline, the connection
// closed) comes back from the next Read too.
func (r *rawReader) waitReadable() error {
	if r.pre != nil && r.pre.Buffered() > 0 {
		return nil
	}
	return r.rc.Read(r.probe)
}

func (r *rawReader) Read(p []byte) (int, error) {
	if r.pre != nil {
		if r.pre.Buffered() > 0 {
			return r.pre.Read(p)
		}
		r.pre = nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	r.p = p
	err := r.rc.Read(r.fn)
	r.p = nil
	switch {
	case err != nil:
		return 0, err
	case r.err != 0:
		return 0, os.NewSyscallError("read", r.err)
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// idleReads decides how a connection's reader waits for input. A read
// buffer is held only while there is input: an idle connection waits
// without one (thousands of idle workers: 4 KiB each otherwise). A
// connection that keeps sending (input again within busyWait, busyAfter
// times in a row) waits with its buffer, as a plain read does, until such a
// wait lasts idleWait: the buffer-less wait costs a peek syscall and a pool
// round trip per wait. A worker's registration right after it connects does
// not make it busy.
type idleReads struct {
	rr        *rawReader // nil: the connection reads through net.Conn, buffered
	busy      bool
	quick     int       // quick buffer-less waits in a row
	waitStart time.Time // a buffered wait for input: since when
}

const (
	busyWait  = 10 * time.Millisecond
	busyAfter = 2
	idleWait  = time.Second
)

// wait comes before each batch: when nothing is buffered and the connection
// is not busy, it waits for input with its buffer given back.
func (w *idleReads) wait(lr *wire.LineReader) {
	if w.rr == nil || !lr.Idle() {
		return
	}
	if w.busy {
		w.waitStart = time.Now()
		return
	}
	putReadBuffer(lr.Swap(nil))
	t0 := time.Now()
	_ = w.rr.waitReadable() // an error comes back from the next read
	if time.Since(t0) < busyWait {
		w.quick++
	} else {
		w.quick = 0
	}
	w.busy = w.quick >= busyAfter
	lr.Swap(getReadBuffer(w.rr))
}

// read comes after each line read: a buffered wait that lasted idleWait
// makes the connection idle again.
func (w *idleReads) read() {
	if w.waitStart.IsZero() {
		return
	}
	if time.Since(w.waitStart) >= idleWait {
		w.busy, w.quick = false, 0
	}
	w.waitStart = time.Time{}
}
