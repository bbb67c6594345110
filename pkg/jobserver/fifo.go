// Package jobserver is the GNU-make-compatible token pool: the named pipe
// that holds one byte per free slot, the MAKEFLAGS forms that hand it to
// make, cargo, rustc, gcc and ninja, and a client for a pool someone else owns.
package jobserver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Token is the byte jsd writes for a free slot; make writes '+' too. Byte
// values carry no meaning: clients write back whatever they read.
const Token = '+'

// MaxSlots is the largest pool: one-byte tokens in a 64 KiB pipe.
const MaxSlots = 65535

// Pipe is the owner's end of the FIFO: one description opened O_RDWR and
// non-blocking for the owner's whole life, so the FIFO always has a reader
// and a writer and its content survives every client's close. It is used
// through raw system calls only (no Go poller), so a waiter blocked in Wait
// never holds a lock that TryTake or Put would need.
type Pipe struct {
	Path string
	fd   int
	wake int // eventfd that interrupts Wait
}

// OpenOwner opens path O_RDWR|O_NONBLOCK for the pool's owner. The
// description is never handed to a child (see OpenForChild).
func OpenOwner(path string) (*Pipe, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open fifo: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &Pipe{Path: path, fd: fd, wake: wake}, nil
}

// Close closes the owner's descriptors.
func (p *Pipe) Close() error {
	unix.Close(p.wake)
	return unix.Close(p.fd)
}

// Free returns the number of tokens sitting in the FIFO (FIONREAD).
func (p *Pipe) Free() (int, error) {
	return unix.IoctlGetInt(p.fd, unix.TIOCINQ) // TIOCINQ == FIONREAD
}

// TryTake reads up to len(buf) tokens without waiting and returns how many.
func (p *Pipe) TryTake(buf []byte) (int, error) {
	for {
		n, err := rawIO(unix.SYS_READ, p.fd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, err
		case n == 0:
			return 0, errors.New("jobserver fifo: unexpected EOF")
		}
		return n, nil
	}
}

// Put writes n tokens without waiting. It returns how many went in: fewer
// only when the pipe is full, which means the pool already holds more
// tokens than it can.
func (p *Pipe) Put(n int) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	buf := bytes.Repeat([]byte{Token}, n)
	done := 0
	for done < n {
		m, err := rawIO(unix.SYS_WRITE, p.fd, buf[done:])
		if m > 0 {
			done += m
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return done, nil
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// rawIO is read(2) or write(2) of b on the non-blocking fd, without the
// runtime's syscall bookkeeping: a syscall.Syscall after the process was
// idle wakes the Go runtime's monitor thread, a futex wake-up and its 20 us
// polling per lease in jsd. A non-blocking call never waits, so there is
// nothing for the scheduler to take back during it.
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Wait blocks until the FIFO holds a token or Interrupt is called. It
// reports whether a token may be there.
func (p *Pipe) Wait() (bool, error) {
	pfd := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}, {Fd: int32(p.wake), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(pfd, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		if pfd[1].Revents != 0 {
			var b [8]byte
			_, _ = unix.Read(p.wake, b[:])
			return false, nil
		}
		return pfd[0].Revents&unix.POLLIN != 0, nil
	}
}

// Interrupt wakes a Wait in progress (or the next one).
func (p *Pipe) Interrupt() {
	var b [8]byte
	b[0] = 1
	_, _ = unix.Write(p.wake, b[:])
}

// Capacity returns the pipe's size in bytes (F_GETPIPE_SZ).
func (p *Pipe) Capacity() (int, error) {
	return unix.FcntlInt(uintptr(p.fd), unix.F_GETPIPE_SZ, 0)
}

// EnsureCapacity raises the pipe's size so it holds at least n tokens. Over
// the user's pipe-user-pages-soft limit the kernel refuses (EPERM): that is
// reported as an error naming the limit, never ignored.
func (p *Pipe) EnsureCapacity(n int) error {
	c, err := p.Capacity()
	if err != nil {
		return fmt.Errorf("read pipe size: %w", err)
	}
	if c >= n {
		return nil
	}
	if _, err := unix.FcntlInt(uintptr(p.fd), unix.F_SETPIPE_SZ, n); err != nil {
		return fmt.Errorf("the fifo holds %d tokens and the kernel refused to grow it to %d (%v): lower --slots, or raise /proc/sys/fs/pipe-user-pages-soft", c, n, err)
	}
	return nil
}

// OpenForChild opens the FIFO again for a child process: a description of
// its own, blocking, so that flags a client sets on it (make sets
// O_NONBLOCK) never reach the owner or another client.
func OpenForChild(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open jobserver fifo %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// CreateFIFO makes a new FIFO at path (mode 0600), replacing whatever stale
// file is there.
func CreateFIFO(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale fifo: %w", err)
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return fmt.Errorf("mkfifo %s: %w", path, err)
	}
	return os.Chmod(path, 0o600) // umask may have cut bits; make it exact
}

// IsFIFO reports whether path exists and is a named pipe.
func IsFIFO(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeNamedPipe != 0
}
