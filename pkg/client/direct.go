package client

import (
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DialDirect connects to jsd's unix socket like Dial, on a plain blocking
// descriptor that Go's network poller never sees: no poller to start, no
// hand-off between threads to read a reply. It is for a connection one
// goroutine owns from dial to close, as jsrun's slot lease: a Read blocked
// in one goroutine is not interrupted by Close from another, and of the
// deadlines only the read deadline is kept (it bounds each Read through
// poll(2)).
func DialDirect(socket string) (*Conn, error) {
	fd, err := dialUnixFD(socket, false)
	if err != nil {
		return nil, dialError(socket, err)
	}
	return newConn(&fdConn{fd: fd, path: socket}), nil
}

// dialUnixFD connects a unix stream socket to path and returns it
// close-on-exec, non-blocking or not. A full accept queue (EAGAIN: jsd is
// there, busy: a flood of connections) is tried again for up to 5 seconds.
func dialUnixFD(path string, nonblock bool) (int, error) {
	opErr := func(call string, err error) error {
		return &os.PathError{Op: "dial", Path: path, Err: os.NewSyscallError(call, err)}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, opErr("socket", err)
	}
	sa := &unix.SockaddrUnix{Name: path}
	for deadline := time.Now().Add(5 * time.Second); ; {
		err = unix.Connect(fd, sa)
		if err == unix.EINTR {
			continue
		}
		if err != unix.EAGAIN || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		unix.Close(fd)
		return -1, opErr("connect", err)
	}
	if !nonblock {
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return -1, opErr("fcntl", err)
		}
	}
	return fd, nil
}

// fdConn is a Transport on a blocking unix socket descriptor, for one
// goroutine (see DialDirect).
type fdConn struct {
	fd       int
	path     string    // the socket's
	deadline time.Time // read deadline; zero: none
	once     sync.Once
	closeErr error
}

func (c *fdConn) opError(op string, err error) error {
	return &os.PathError{Op: op, Path: c.path, Err: err}
}

func (c *fdConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if !c.deadline.IsZero() {
			left := time.Until(c.deadline)
			if left <= 0 {
				return 0, c.opError("read", os.ErrDeadlineExceeded)
			}
			ms := int((left + time.Millisecond - 1) / time.Millisecond)
			fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, ms)
			if err == unix.EINTR || (err == nil && n == 0) {
				continue // the deadline is checked again above
			}
			if err != nil {
				return 0, c.opError("read", os.NewSyscallError("poll", err))
			}
		}
		n, err := unix.Read(c.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, c.opError("read", os.NewSyscallError("read", err))
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c *fdConn) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		// MSG_NOSIGNAL: a closed peer gives EPIPE, never SIGPIPE.
		n, err := unix.SendmsgN(c.fd, b[done:], nil, nil, unix.MSG_NOSIGNAL)
		if n > 0 {
			done += n
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, c.opError("write", os.NewSyscallError("write", err))
		}
	}
	return done, nil
}

func (c *fdConn) Close() error {
	c.once.Do(func() {
		if err := unix.Close(c.fd); err != nil {
			c.closeErr = c.opError("close", os.NewSyscallError("close", err))
		}
	})
	return c.closeErr
}

// SetReadDeadline bounds each Read (through poll(2)). There is no write
// deadline: a write of a few bytes to a local socket does not block long.
func (c *fdConn) SetReadDeadline(t time.Time) error { c.deadline = t; return nil }

// keepAcrossExec clears close-on-exec on the descriptor itself.
func (c *fdConn) keepAcrossExec() error {
	_, err := unix.FcntlInt(uintptr(c.fd), unix.F_SETFD, 0)
	return err
}

// KeepAcrossExec lets the connection outlive an exec of this process (jsrun
// --exec: the lease stays held by the command): a direct connection's
// descriptor loses its close-on-exec flag; another connection's is
// duplicated without it.
func (c *Conn) KeepAcrossExec() error {
	if fc, ok := c.nc.(*fdConn); ok {
		return fc.keepAcrossExec()
	}
	f, err := c.File()
	if err != nil {
		return err
	}
	keepFiles = append(keepFiles, f) // never closed, nor finalized, before the exec
	_, err = unix.FcntlInt(f.Fd(), unix.F_SETFD, 0)
	return err
}

var keepFiles []*os.File

var _ Transport = (*fdConn)(nil)
