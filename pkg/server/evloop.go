package server

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/js-toolkit/js/pkg/wire"
)

// The unix socket's event loop.
//
// Most connections to the unix socket are a jsrun's: connect, acquire,
// (started, release,) close, about a millisecond in all. Served the usual
// Go way, each cost jsd ~0.25 ms of CPU, mostly the runtime's: a goroutine
// started per connection wakes a second thread; accept(2) and close(2),
// made through syscall.Syscall, each wake the runtime's monitor thread
// (sysmon) out of its idle sleep; nine context switches per command on a
// quiet machine (perf, W1). Here one goroutine serves every connection of
// the unix socket from an epoll instance of its own, with raw system calls
// only (rawio.go says why those are safe): it parks in Go's poller on that
// epoll descriptor, so it costs nothing while idle. A slot lease costs jsd
// about a quarter of what it did.
//
// A connection stays here while it only asks for one lease (acquire,
// started, release). On any other message, or a second acquire, it is
// handed, with what it sent, to the usual per-connection goroutines
// (readLoop), where everything else lives: jobs, workers, status, sniffed
// protocols, clients that keep a connection for many leases. The conn, and whatever it holds
// in the scheduler, is the same object throughout.
//
// Ownership of a loop connection's descriptor: only the loop reads it,
// closes it and changes its epoll interest; any goroutine may write to it
// under the conn's wmu (flush), and the loop closes it under wmu. A close
// asked for from elsewhere (conn.close) is a shutdown(2), which the loop
// then sees as the end of input.

// liteMaxPartial is the longest partial line the loop keeps: a longer one
// (a big job, a hostile peer) goes to the per-connection reader, which
// reads it while the loop serves the others.
const liteMaxPartial = 64 << 10

// liteReads is how many reads of one connection the loop makes per event
// (level-triggered epoll reports the rest again): one peer that keeps
// sending does not hold the others up.
const liteReads = 4

// liteCmds are the messages a connection may send and stay in the loop.
var liteCmds = map[string]bool{wire.CmdAcquire: true, wire.CmdStarted: true, wire.CmdRelease: true}

// liteFD is a loop connection's descriptor and input state.
type liteFD struct {
	mu    sync.Mutex // guards fd and nc for close (taken after wmu, never before)
	fd    int        // -1 once closed or handed over (set under conn.wmu and mu)
	nc    net.Conn   // once handed over: the conn's (conn.close closes it)
	in    []byte     // a partial line carried to the next read (loop only)
	out   bool       // EPOLLOUT is armed: the loop writes what is pending (wmu)
	acq   bool       // it sent an acquire (loop only)
	drain bool       // lingering: input is read and dropped until its end (loop only)
}

// liteRaw is a loop connection's descriptor as a syscall.RawConn for the
// code it shares with the others (flush's tryWrite, peerGone). It never
// waits: the loop does.
type liteRaw struct{ l *liteFD }

func (r liteRaw) Control(f func(fd uintptr)) error {
	if r.l.fd < 0 {
		return syscall.EBADF
	}
	f(uintptr(r.l.fd))
	return nil
}

func (r liteRaw) Read(f func(fd uintptr) bool) error {
	return r.Control(func(fd uintptr) { f(fd) })
}

func (r liteRaw) Write(f func(fd uintptr) bool) error {
	return r.Control(func(fd uintptr) { f(fd) })
}

// unixLoop is the loop of the unix listener.
type unixLoop struct {
	s     *Server
	lfd   int // the listener's descriptor (net's: closed by s.ln.Close)
	epfd  int
	ep    *os.File // epfd in Go's poller
	conns map[int]*conn
	evs   []unix.EpollEvent
	buf   []byte
	batch []*wire.Msg

	fdCause error // why the last accept failed for lack of descriptors

	reads atomic.Int64 // reads that returned input (a test waits on it)
}

const (
	liteIn  = unix.EPOLLIN | unix.EPOLLRDHUP
	liteOut = liteIn | unix.EPOLLOUT
)

// newUnixLoop sets the loop up on the listener ln.
func (s *Server) newUnixLoop(ln *net.UnixListener) (*unixLoop, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	lfd := -1
	if err := rc.Control(func(fd uintptr) { lfd = int(fd) }); err != nil {
		return nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil { // so that os.NewFile puts it in the poller
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return &unixLoop{
		s: s, lfd: lfd, epfd: epfd, ep: os.NewFile(uintptr(epfd), "epoll"),
		conns: map[int]*conn{}, evs: make([]unix.EpollEvent, 128), buf: make([]byte, wire.ReadBuffer),
	}, nil
}

// stop ends run; connections still in the loop are closed there.
func (l *unixLoop) stop() { l.ep.Close() }

// run serves until stop.
func (l *unixLoop) run() {
	reserve := l.s.newReserve() // fdlimit.go
	defer reserve.close()
	rc, err := l.ep.SyscallConn()
	if err != nil {
		l.s.log.Printf("internal: unix socket loop: %v", err)
		return
	}
	var n int
	var werr syscall.Errno
	wait := func(uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), 0, 0, 0)
			if e == syscall.EINTR {
				continue
			}
			n, werr = int(r), e
			return e != 0 || n > 0 // else the poller waits for the next event
		}
	}
	for {
		if err := rc.Read(wait); err != nil {
			break // stopped
		}
		if werr != 0 {
			l.s.log.Printf("internal: unix socket loop: epoll_pwait: %v", werr)
			break
		}
		for i := 0; i < n; i++ {
			ev := l.evs[i]
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept(reserve)
				continue
			}
			c := l.conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				l.writable(c)
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				l.readable(c)
			}
		}
	}
	for _, c := range l.conns {
		l.end(c)
	}
}

// accept takes every pending connection.
func (l *unixLoop) accept(reserve *reserveFD) {
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(l.lfd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		case syscall.EMFILE, syscall.ENFILE:
			if reserve.release() {
				l.fdCause = e
				continue // the next accept takes a connection into its slot, to refuse it
			}
			l.s.noteNoReserve(e) // rate-limited; the connection waits in the queue
			l.pauseAccept()
			return
		case syscall.EAGAIN:
			return
		default:
			l.s.log.Printf("accept: %v", e)
			l.pauseAccept() // do not spin on a listener that stays readable
			return
		}
		fd := int(r)
		if reserve.atLimit() {
			l.refuse(fd, reserve)
			continue
		}
		l.s.noteAccepted()
		ev := unix.EpollEvent{Events: liteIn, Fd: int32(fd)}
		if e := epollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); e != 0 {
			l.s.log.Printf("epoll_ctl: %v", e)
			rawClose(fd)
			continue
		}
		lf := &liteFD{fd: fd}
		c := newConn(l.s, nil, nil, connUnix)
		c.lite, c.raw = lf, liteRaw{lf}
		l.conns[fd] = c
		l.s.exec(event{kind: evOpen, c: c})
	}
}

// pauseAccept takes the listener out of the loop's epoll set for 50 ms: an
// accept that fails while connections wait would otherwise be retried at
// once, again and again (acceptLoop sleeps instead).
func (l *unixLoop) pauseAccept() {
	epollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.lfd, nil)
	time.AfterFunc(50*time.Millisecond, func() {
		rc, err := l.ep.SyscallConn()
		if err != nil {
			return
		}
		// Control holds the epoll descriptor open: after stop, it fails.
		rc.Control(func(fd uintptr) {
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.lfd)}
			epollCtl(int(fd), unix.EPOLL_CTL_ADD, l.lfd, &ev)
		})
	})
}

// refuse answers a connection accepted at the open-file limit and closes it
// (fdlimit.go).
func (l *unixLoop) refuse(fd int, reserve *reserveFD) {
	line := fdLimitLine(l.fdCause) // a fresh socket's buffer takes it at once
	rawWrite(uintptr(fd), line)
	rawClose(fd)
	reserve.take()
	l.s.noteRefused(l.fdCause)
}

// readable reads what c sent and handles it.
func (l *unixLoop) readable(c *conn) {
	lf := c.lite
	for reads := 0; reads < liteReads; reads++ {
		n, e := rawRead(uintptr(lf.fd), l.buf)
		if e == syscall.EINTR {
			continue
		}
		if e == syscall.EAGAIN {
			return
		}
		if e != 0 || n == 0 { // the end of input (or a reset)
			if len(lf.in) > 0 && !lf.drain && e == 0 {
				l.promote(c, lf.in) // a last line without its newline: the reader takes it, then the end
				return
			}
			l.end(c)
			return
		}
		l.reads.Add(1)
		if lf.drain {
			continue
		}
		data := l.buf[:n]
		if len(lf.in) > 0 {
			lf.in = append(lf.in, data...)
			data = lf.in
		}
		if !l.handle(c, data) {
			return // handed over
		}
		if n < len(l.buf) {
			return // read all there was: epoll says when there is more
		}
	}
}

// handle runs the whole lines of data; false when c was handed over.
func (l *unixLoop) handle(c *conn, data []byte) bool {
	lf := c.lite
	batch := l.batch[:0]
	rest := data
	var handover []byte
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimSuffix(rest[:i], []byte{'\r'})
		if len(line) > liteMaxPartial {
			handover = rest // a big one: the reader takes it (and answers one too big)
			break
		}
		m := decodeLine(line)
		if m != nil && (!liteCmds[m.Cmd] || m.Cmd == wire.CmdAcquire && lf.acq) {
			// A second acquire: a client that keeps its connection for
			// many leases (W6) is served with lower latency by a reader
			// goroutine of its own (p50 21 us there, 24-107 us here).
			handover = rest
			break
		}
		if m != nil && m.Cmd == wire.CmdAcquire {
			lf.acq = true
		}
		if m != nil {
			batch = append(batch, m)
		}
		rest = rest[i+1:]
		if len(batch) == maxBatch {
			l.s.execMsgs(c, batch)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		l.s.execMsgs(c, batch)
	}
	clear(batch)
	l.batch = batch[:0]
	if handover == nil && len(rest) > liteMaxPartial {
		handover = rest
	}
	if handover != nil {
		l.promote(c, handover)
		return false
	}
	// Keep a partial line (copied: data may be the loop's buffer).
	lf.in = append(lf.in[:0], rest...)
	if len(lf.in) == 0 && cap(lf.in) > 4096 {
		lf.in = nil
	}
	return true
}

// writable writes what c has pending (its socket was full), then lingers
// or disarms EPOLLOUT.
func (l *unixLoop) writable(c *conn) {
	lf := c.lite
	c.wmu.Lock()
	if lf.fd < 0 {
		c.wmu.Unlock()
		return
	}
	if len(c.pending) > 0 {
		n, err := tryWrite(c.raw, c.pending)
		if err != nil {
			c.wmu.Unlock()
			c.close()
			return
		}
		c.pending = append(c.pending[:0], c.pending[n:]...)
		if len(c.pending) > 0 {
			c.wmu.Unlock()
			return // EPOLLOUT again later
		}
	}
	c.writing = false
	linger := c.lingerNext
	lf.out = false
	epollCtl(l.epfd, unix.EPOLL_CTL_MOD, lf.fd, &unix.EpollEvent{Events: liteIn, Fd: int32(lf.fd)})
	c.wmu.Unlock()
	if linger {
		// As linger does: stop writing, drop what the peer still sends
		// until it closes, so that it reads our reply, not a reset.
		rawShutdown(lf.fd, unix.SHUT_WR)
		lf.drain = true
	}
}

// close ends a connection born in the loop, from any goroutine (conn.close,
// which may hold wmu): while in the loop, a shutdown, after which the loop
// sees the end of input and closes it; once handed over, its net.Conn.
func (lf *liteFD) close() {
	lf.mu.Lock()
	if lf.fd >= 0 {
		rawShutdown(lf.fd, unix.SHUT_RDWR)
	}
	nc := lf.nc
	lf.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
}

// armWrite asks the loop to write c's pending replies when its socket
// takes them (wmu held): startWriter for a loop connection.
func (c *conn) armWrite() {
	lf := c.lite
	if lf.out || lf.fd < 0 {
		return
	}
	lf.out = true
	ev := unix.EpollEvent{Events: liteOut, Fd: int32(lf.fd)}
	epollCtl(c.s.uloop.epfd, unix.EPOLL_CTL_MOD, lf.fd, &ev)
}

// end is the end of c's input: as readLoop's, then the descriptor is closed.
func (l *unixLoop) end(c *conn) {
	l.s.exec(event{kind: evEOF, c: c})
	l.s.mu.Lock()
	keep := c.eof && !c.closed // not for a connection that only held slots
	l.s.mu.Unlock()
	if keep {
		// Kept open for the outcomes of its jobs: not for a connection that
		// only held slots, but should it happen, the reader goroutine knows
		// how (the loop would see the end of input again and again).
		l.promote(c, nil)
		return
	}
	l.forget(c) // first: close's shutdown is then not needed
	c.close()
}

// forget closes c's descriptor and drops it from the loop.
func (l *unixLoop) forget(c *conn) {
	lf := c.lite
	c.wmu.Lock()
	lf.mu.Lock()
	fd := lf.fd
	lf.fd = -1
	lf.mu.Unlock()
	c.wmu.Unlock()
	if fd >= 0 {
		delete(l.conns, fd)
		rawClose(fd) // leaves the epoll set with it
	}
}

// promote hands c, with the input not yet handled, to the per-connection
// goroutines.
func (l *unixLoop) promote(c *conn, rest []byte) {
	lf := c.lite
	fd := lf.fd
	epollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	delete(l.conns, fd)
	// net.FileConn duplicates the descriptor; the original is closed once
	// the conn uses the copy (under wmu: no flush writes in between).
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	c.wmu.Lock()
	// Under lf.mu, as close: a close that came first (c.done) leaves nc to
	// us; one that comes after finds it in lf.nc.
	lf.mu.Lock()
	select {
	case <-c.done:
		err = net.ErrClosed
	default:
	}
	if err == nil {
		c.nc, c.raw, lf.nc = nc, rawConn(nc), nc
		if len(rest) > 0 {
			br := bufio.NewReaderSize(bytes.NewReader(bytes.Clone(rest)), max(len(rest), 16))
			br.Peek(len(rest))
			c.br = br
		}
		if c.writing || c.lingerNext { // the loop was writing for it: the writer goroutine goes on
			c.writing = false
			c.startWriter()
		}
	}
	lf.fd = -1
	lf.mu.Unlock()
	c.wmu.Unlock()
	f.Close()
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		if !errors.Is(err, net.ErrClosed) {
			l.s.log.Printf("unix socket: hand over connection %d: %v", c.id, err)
		}
		l.s.exec(event{kind: evClose, c: c})
		c.close()
		return
	}
	l.s.wg.Add(1)
	go func() { defer l.s.wg.Done(); c.readLoop() }()
}

// epollCtl is epoll_ctl(2) without the runtime's syscall bookkeeping.
func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// rawShutdown is shutdown(2) without the runtime's syscall bookkeeping.
func rawShutdown(fd, how int) {
	syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
}

// rawClose is close(2) without the runtime's syscall bookkeeping (it does
// not block on a socket).
func rawClose(fd int) { syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) }
