package jobserver

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ErrTimeout is returned by Client.Take when no token came before the deadline.
var ErrTimeout = errors.New("no token before the deadline")

// Client takes tokens from a pool that someone else owns (a make -jN run's
// pipe, or a FIFO named in MAKEFLAGS). It reads and writes through
// descriptions of its own, so it never changes flags on the ones it
// inherited.
type Client struct {
	r, w *os.File
	held []byte
}

// OpenClient opens the pool an Auth names. For the R,W form the inherited
// descriptors are reopened through /proc/self/fd; a closed or foreign
// descriptor (a recipe without '+') is reported as unusable.
func OpenClient(a Auth) (*Client, error) {
	var rpath, wpath string
	if a.IsFifo() {
		if !IsFIFO(a.Fifo) {
			return nil, fmt.Errorf("jobserver fifo %s does not exist", a.Fifo)
		}
		rpath, wpath = a.Fifo, a.Fifo
	} else {
		for _, fd := range []int{a.R, a.W} {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
				return nil, fmt.Errorf("jobserver descriptors %d,%d from MAKEFLAGS are not open pipes (add '+' to the make rule that runs this)", a.R, a.W)
			}
		}
		rpath, wpath = "/proc/self/fd/"+strconv.Itoa(a.R), "/proc/self/fd/"+strconv.Itoa(a.W)
	}
	rfd, err := unix.Open(rpath, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open jobserver for reading: %w", err)
	}
	wfd, err := unix.Open(wpath, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(rfd)
		return nil, fmt.Errorf("open jobserver for writing: %w", err)
	}
	// Plain (non-poller) files: reads below wait with poll(2) ourselves.
	return &Client{r: os.NewFile(uintptr(rfd), "jobserver-r"), w: os.NewFile(uintptr(wfd), "jobserver-w")}, nil
}

// Take waits for one token until deadline (zero: forever; in the past: do
// not wait) and keeps it until Release.
func (c *Client) Take(deadline time.Time) error {
	buf := []byte{0}
	fd := int(c.r.Fd())
	for {
		n, err := unix.Read(fd, buf)
		if n == 1 {
			c.held = append(c.held, buf[0])
			return nil
		}
		if n == 0 && err == nil {
			return errors.New("jobserver pipe closed (EOF)")
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			return fmt.Errorf("read jobserver: %w", err)
		}
		wait := -1
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return ErrTimeout
			}
			wait = int(left/time.Millisecond) + 1
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, wait); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll jobserver: %w", err)
		}
	}
}

// Release writes every held token back, as read.
func (c *Client) Release() error {
	var firstErr error
	for len(c.held) > 0 {
		n, err := unix.Write(int(c.w.Fd()), c.held)
		if n > 0 {
			c.held = c.held[n:]
		}
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			firstErr = err
			break
		}
	}
	return firstErr
}

// Close releases held tokens and closes the descriptors.
func (c *Client) Close() error {
	err := c.Release()
	c.r.Close()
	c.w.Close()
	return err
}
