package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"golang.org/x/sys/unix"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/js-toolkit/js/pkg/wire"
)

// maxPending is how many reply bytes a connection may have unsent before
// jsd gives up on it: a peer that never reads is disconnected, never waited
// for.
const maxPending = 32 << 20

// outQueue is how many frames a gloom connection may have unsent before jsd
// gives up on it.
const outQueue = 4096

// conn is one client connection. Its scheduler fields are guarded by
// Server.mu; its output by wmu.
type conn struct {
	s    *Server
	id   uint64
	kind connKind
	nc   net.Conn
	raw  syscall.RawConn // nc's descriptor, for writes that must not wait
	br   *bufio.Reader   // nil: read nc directly
	lite *liteFD         // non-nil: born in the unix socket's loop (evloop.go), served there while nc is nil
	done chan struct{}
	once sync.Once

	wmu        sync.Mutex // guards the output fields below
	pending    []byte     // replies not yet written
	spare      []byte
	writing    bool // the writer goroutine owns the socket's write side
	writerUp   bool // the writer goroutine runs (started on first need)
	queued     bool // on the server's list of connections to flush
	lingerNext bool // close (after a linger) once pending is written
	wake       chan struct{}

	// guarded by Server.mu
	leases  map[uint64]*lease
	waiters int
	closed  bool
	worker  bool // registered as a worker (does not count against idleness)
	authed  bool // presented the token (TCP with --auth-token-file), or needs none
	eof     bool // its input ended; it stays open until its jobs have ended
}

// connKind is where a connection came from.
type connKind uint8

const (
	connUnix        connKind = iota // the unix socket: the 0700 dir is the check
	connTCP                         // jsd's TCP port: native, gloom and HTTP
	connGloomMaster                 // --gloom-ports, first: submitters only
	connGloomSlave                  // --gloom-ports, second: workers only
)

func newConn(s *Server, nc net.Conn, br *bufio.Reader, kind connKind) *conn {
	return &conn{
		s:      s,
		id:     s.connSeq.Add(1),
		kind:   kind,
		br:     br,
		authed: kind == connUnix || !s.needsToken(),
		nc:     nc,
		raw:    rawConn(nc),
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		leases: map[uint64]*lease{},
	}
}

func rawConn(nc net.Conn) syscall.RawConn {
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// close ends the connection once; both goroutines exit (or the loop
// closes it, for one of the unix socket's loop). It may be called with wmu
// held.
func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		if lf := c.lite; lf != nil {
			lf.close()
			return
		}
		c.nc.Close()
	})
}

// send queues one message without blocking; a full queue closes the
// connection (the peer is not reading).
func (c *conn) send(m any) {
	if wm, ok := m.(*wire.Msg); ok && c.sendFast(wm) {
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		c.s.log.Printf("internal: encode reply: %v", err)
		return
	}
	c.sendRaw(append(b, wire.CRLF...))
}

// sendRaw queues b; the batch's flush (Server.flushDirty, at the end of
// the handling that produced it) writes it without waiting, or hands what
// the socket did not take to the writer goroutine. So replies to a burst of
// requests go out in one write, and order is kept. Called under Server.mu.
func (c *conn) sendRaw(b []byte) { c.queue(nil, b) }

// sendFast is send for a message wire.AppendMsg can encode, straight into
// the pending buffer; false: m needs encoding/json.
func (c *conn) sendFast(m *wire.Msg) bool { return c.queue(m, nil) }

// queue appends one reply to what is pending: raw, or m as wire.AppendMsg
// writes it. It reports false, queueing nothing, when m needs
// encoding/json. A connection whose pending replies would pass maxPending
// is closed.
func (c *conn) queue(m *wire.Msg, raw []byte) bool {
	c.wmu.Lock()
	select {
	case <-c.done:
		c.wmu.Unlock()
		return true
	default:
	}
	if c.lingerNext {
		c.wmu.Unlock()
		return true
	}
	n := len(c.pending)
	p := c.pending
	if n+len(raw) <= maxPending {
		p = append(p, raw...)
	}
	if m != nil {
		var ok bool
		if p, ok = wire.AppendMsg(p, m); !ok {
			c.pending = p[:n]
			c.wmu.Unlock()
			return false
		}
		p = append(p, wire.CRLF...)
	}
	if n+len(raw) > maxPending || len(p) > maxPending {
		c.pending = p[:n]
		c.wmu.Unlock()
		c.s.log.Printf("connection %d does not read its replies: closing it", c.id)
		c.close()
		return true
	}
	c.pending = p
	first := !c.queued
	c.queued = true
	c.wmu.Unlock()
	if first {
		c.s.dirty = append(c.s.dirty, c)
	}
	return true
}

// flush writes what is queued if the socket takes it now, else wakes the
// writer goroutine.
func (c *conn) flush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.queued = false
	if c.writing || len(c.pending) == 0 {
		return
	}
	if c.raw != nil {
		n, err := tryWrite(c.raw, c.pending)
		if err != nil {
			c.close()
			return
		}
		if n == len(c.pending) {
			c.pending = c.pending[:0]
			return
		}
		c.pending = append(c.pending[:0], c.pending[n:]...)
	}
	c.startWriter()
}

// startWriter hands the socket to the writer goroutine (wmu held),
// starting it the first time: most connections (a jsrun's) never fill their
// socket, and a goroutine per connection that only waits was a start, a park
// and a wake-up to exit for each of them.
func (c *conn) startWriter() {
	if c.lite != nil && c.nc == nil {
		c.writing = true
		c.armWrite() // the loop writes (evloop.go)
		return
	}
	if !c.writing {
		c.writing = true
		if !c.writerUp {
			c.writerUp = true
			// Under wmu, from a goroutine the server waits for (or from
			// Run itself before its Wait): the Add comes before the Wait.
			c.s.wg.Add(1)
			go func() { defer c.s.wg.Done(); c.writeLoop() }()
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// tryWrite writes what the socket takes without waiting.
func tryWrite(rc syscall.RawConn, b []byte) (int, error) {
	n := 0
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := rawWrite(fd, b[n:]) // rawio.go: no sysmon wake-up
			if m > 0 {
				n += m
			}
			if e == syscall.EINTR {
				continue
			}
			if e != 0 && e != syscall.EAGAIN {
				werr = os.NewSyscallError("write", e)
			}
			break
		}
		return true // never wait here
	})
	if err == nil {
		err = werr
	}
	return n, err
}

func (c *conn) sendError(req json.RawMessage, code, msg string) {
	c.send(&wire.Msg{Cmd: wire.CmdError, Req: req, Code: code, Message: msg})
}

// writeLoop writes what sendRaw could not, with blocking writes, until the
// connection closes.
func (c *conn) writeLoop() {
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		for {
			c.wmu.Lock()
			buf := c.pending
			if len(buf) == 0 {
				c.writing = false
				linger := c.lingerNext
				c.wmu.Unlock()
				if linger {
					c.linger()
					return
				}
				break
			}
			// Swap buffers: sendRaw appends to the other one meanwhile.
			c.pending = c.spare[:0]
			c.wmu.Unlock()
			_, err := c.nc.Write(buf)
			c.wmu.Lock()
			c.spare = buf[:0]
			c.wmu.Unlock()
			if err != nil {
				c.close()
				return
			}
		}
	}
}

func (c *conn) readLoop() {
	lingering := false
	defer func() {
		if lingering {
			c.s.exec(event{kind: evClose, c: c})
			return
		}
		// A client that has sent all it will (half-closed its side) may
		// still wait for the outcomes of its jobs: keep it open till then.
		c.s.exec(event{kind: evEOF, c: c})
		c.s.mu.Lock()
		keep := c.eof && !c.closed
		c.s.mu.Unlock()
		if !keep {
			c.close()
		}
	}()
	var r io.Reader = c.nc
	var rr *rawReader
	switch {
	case c.raw != nil:
		rr = newRawReader(c.raw, c.br) // rawio.go: no sysmon wake-up per read
		r = rr
	case c.br != nil:
		r = c.br
	}
	c.br = nil // the reader has it (a sniffing one is drained, then dropped)
	var lr *wire.LineReader
	if rr != nil {
		lr = wire.NewLineReader(getReadBuffer(rr), wire.MaxLine) // see idleReads
		defer func() { putReadBuffer(lr.Swap(nil)) }()
	} else {
		lr = wire.NewLineReader(r, wire.MaxLine)
	}
	idle := idleReads{rr: rr}
	// Small at first, grown by bursts: a 256-pointer array on the goroutine's
	// stack kept every idle connection's stack at 8 KiB.
	var batch []*wire.Msg
	for {
		// Block for one line, then take every whole line already buffered:
		// a burst is handled under one lock and answered in one write.
		batch = batch[:0]
		idle.wait(lr)
		for len(batch) == 0 || (len(batch) < maxBatch && lr.HasLine()) {
			line, err := lr.Next()
			idle.read()
			if err != nil {
				if len(batch) > 0 {
					c.s.execMsgs(c, batch)
				}
				if errors.Is(err, wire.ErrLineTooLong) {
					c.s.execMsgs(c, []*wire.Msg{{Code: wire.CodeTooLarge, Message: err.Error()}})
					c.closeAfterFlush()
					lingering = true
				}
				return
			}
			if m := decodeLine(line); m != nil {
				batch = append(batch, m)
			}
		}
		c.s.execMsgs(c, batch)
	}
}

// readBuffers are the connections' read buffers, held only while there is
// input to read.
var readBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, wire.ReadBuffer) }}

func getReadBuffer(r io.Reader) *bufio.Reader {
	br := readBuffers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReadBuffer(br *bufio.Reader) {
	if br != nil {
		br.Reset(nil)
		readBuffers.Put(br)
	}
}

// maxBatch bounds how many messages of one connection are handled under one
// lock.
const maxBatch = 256

// decodeLine turns one line into a message; bad input becomes a message
// with Cmd "" and the error, answered in order like the others. A blank
// line is nil.
func decodeLine(line []byte) *wire.Msg {
	t := trimSpace(line)
	if len(t) == 0 {
		return nil
	}
	if t[0] != '{' {
		return &wire.Msg{Code: wire.CodeBadRequest, Message: "a message must be a JSON object"}
	}
	if m, ok := wire.DecodeFlat(line); ok { // wire/flat.go: printable ASCII only
		if m.Cmd == "" {
			return &wire.Msg{Req: m.Req, Code: wire.CodeBadRequest, Message: `missing "cmd"`}
		}
		return m
	}
	m := &wire.Msg{}
	if err := json.Unmarshal(line, m); err != nil {
		return &wire.Msg{Code: wire.CodeBadRequest, Message: "invalid JSON: " + err.Error()}
	}
	if !utf8.Valid(line) {
		m.Sanitize()
	}
	if m.Cmd == "" {
		return &wire.Msg{Req: m.Req, Code: wire.CodeBadRequest, Message: `missing "cmd"`}
	}
	return m
}

// peerGone reports whether the peer closed its whole socket, not just its
// sending side. A unix socket tells them apart (POLLHUP only for a full
// close); TCP does not, so over TCP an end of input is a disconnect.
func (c *conn) peerGone() bool {
	if c.raw == nil {
		return true
	}
	gone := true
	c.raw.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		if n, err := unix.Poll(pfd, 0); err == nil && n == 1 {
			gone = pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}

// linger closes after a last reply: it stops writing, then reads and drops
// what the peer still sends for a moment, so that the peer reads our reply
// instead of a reset (a socket closed with unread input resets).
func (c *conn) linger() {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.nc.(closeWriter); ok {
		cw.CloseWrite()
		c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.CopyN(io.Discard, c.nc, 64<<20)
	}
	c.close()
}

// closeAfterFlush closes the connection once its queued replies are
// written (with a linger, see linger).
func (c *conn) closeAfterFlush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.lingerNext {
		return
	}
	c.lingerNext = true
	c.writing = false // let the writer run the close even when idle
	c.startWriter()
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
