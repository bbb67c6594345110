package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/js-toolkit/js/pkg/wire"
)

// At its open-file limit (EMFILE, or the system's ENFILE) jsd cannot accept
// a connection, and a connection left in the kernel's accept queue hangs
// unanswered. So each accept loop keeps one descriptor in reserve (an open
// of /dev/null). When an accept fails for lack of descriptors, the loop
// gives its reserve up and accepts again: the next connection (at once if
// one is pending) lands in the freed slot. If the reserve cannot be taken
// back after that accept, jsd is still at its limit: the connection is told
// why (on the unix socket: an fd_limit error line; on TCP, whose protocol
// is known only after sniffing, nothing) and closed, and the reserve is
// taken again. Connections already served are not touched; once
// descriptors free up, connections are served normally again.

// fdLimitStillLog is how often a long stretch at the limit is logged again.
const fdLimitStillLog = 10 * time.Second

// reserveFD is one accept loop's spare descriptor; fd is -1 while it is
// given up.
type reserveFD struct {
	s  *Server
	fd int
}

func openDevNull() (int, error) {
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func (s *Server) newReserve() *reserveFD {
	r := &reserveFD{s: s, fd: -1}
	s.fdl.out.Add(1) // given up until taken
	if !r.take() {
		s.log.Printf("warning: cannot keep a spare descriptor for the open-file limit")
	}
	return r
}

// take opens the reserve if it is given up; false if that failed.
func (r *reserveFD) take() bool {
	if r.fd >= 0 {
		return true
	}
	fd, err := openDevNull()
	if err != nil {
		return false
	}
	r.fd = fd
	r.s.fdl.out.Add(-1)
	return true
}

// release gives the reserve up; false if it was not held.
func (r *reserveFD) release() bool {
	if r.fd < 0 {
		return false
	}
	unix.Close(r.fd)
	r.fd = -1
	r.s.fdl.out.Add(1)
	return true
}

// close releases the reserve for good (the accept loop ends).
func (r *reserveFD) close() {
	r.release()
	r.s.fdl.out.Add(-1) // not out any more: gone
}

// atLimit reports, after a successful accept, whether jsd is at its limit:
// the connection took the slot of a reserve given up (this loop's, or
// another's) and no other is free. Without a reserve given up anywhere,
// that is one atomic load.
func (r *reserveFD) atLimit() bool {
	if r.s.fdl.out.Load() == 0 {
		return false
	}
	if r.fd < 0 {
		return !r.take()
	}
	// Another loop's reserve is out: is there still a free slot besides
	// the one this connection took?
	fd, err := openDevNull()
	if err != nil {
		return true
	}
	unix.Close(fd)
	return false
}

// isFDLimit reports whether an accept failed for lack of descriptors.
func isFDLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// refuse closes a TCP connection accepted at the limit (its protocol is
// not known yet: nothing is said; the unix socket's loop answers its own,
// evloop.go), then takes the reserve back.
func (s *Server) refuse(nc net.Conn, r *reserveFD, cause error) {
	nc.Close()
	r.take()
	s.noteRefused(cause)
}

// fdLimitLog rate-limits the log of refusals: one line when a stretch at
// the limit begins, one every fdLimitStillLog while it lasts, one when a
// connection is accepted normally again.
type fdLimitLog struct {
	out atomic.Int32 // accept loops' reserves given up now

	mu       sync.Mutex
	active   bool
	since    time.Time
	lastLog  time.Time
	refused  uint64        // in this stretch
	lastBare time.Time     // last log of an EMFILE without a reserve to refuse with
	activeAt atomic.Bool   // active, read on every accept without the mutex
	total    atomic.Uint64 // refused since jsd started (metrics: connections_refused)
}

// noteRefused records one refused connection and logs if it is time.
func (s *Server) noteRefused(cause error) {
	l := &s.fdl
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.refused++
	l.total.Add(1)
	switch {
	case !l.active:
		l.active, l.since, l.lastLog = true, now, now
		l.activeAt.Store(true)
		s.log.Printf("accept: %s (%s): refusing new connections (unix socket: an %q error; TCP: closed) until descriptors free up; connections already open are served",
			causeText(cause), nofileLimit(), wire.CodeFDLimit)
	case now.Sub(l.lastLog) >= fdLimitStillLog:
		l.lastLog = now
		s.log.Printf("accept: still at the open-file limit (%s): %d connection(s) refused in %v",
			nofileLimit(), l.refused, now.Sub(l.since).Round(time.Millisecond))
	}
}

// noteNoReserve logs, at most every fdLimitStillLog, an accept at the
// limit that could not be refused (the reserve's slot was taken by another
// part of jsd in between): that connection waits in the accept queue.
func (s *Server) noteNoReserve(cause error) {
	l := &s.fdl
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.lastBare) >= fdLimitStillLog {
		l.lastBare = now
		s.log.Printf("accept: %v (%s), and no spare descriptor to refuse with: new connections wait", cause, nofileLimit())
	}
}

// noteAccepted ends a stretch at the limit, if one was on.
func (s *Server) noteAccepted() {
	l := &s.fdl
	if !l.activeAt.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return
	}
	s.log.Printf("accept: descriptors free again: %d connection(s) were refused at the open-file limit over %v",
		l.refused, time.Since(l.since).Round(time.Millisecond))
	l.active, l.refused = false, 0
	l.activeAt.Store(false)
}

// nofileLimit describes the process's RLIMIT_NOFILE.
func nofileLimit() string {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return "RLIMIT_NOFILE unknown"
	}
	return fmt.Sprintf("RLIMIT_NOFILE %d", lim.Cur)
}

func causeText(err error) string {
	if errors.Is(err, syscall.ENFILE) {
		return "the system's file table is full"
	}
	return "too many open files"
}

// fdLimitLine is the error line a refused unix-socket client gets.
func fdLimitLine(cause error) []byte {
	msg := fmt.Sprintf("jsd is at its open-file limit (%s, %s): connection refused; new connections are served again once descriptors free up",
		causeText(cause), nofileLimit())
	b, _ := json.Marshal(&wire.Msg{Cmd: wire.CmdError, Code: wire.CodeFDLimit, Message: msg})
	return append(b, wire.CRLF...)
}
