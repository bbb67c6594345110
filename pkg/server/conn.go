package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
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
	done chan struct{}
	once sync.Once

	wmu        sync.Mutex // guards the output fields below
	pending    []byte     // replies not yet written
	spare      []byte
	writing    bool // the writer goroutine owns the socket's write side
	lingerNext bool // close (after a linger) once pending is written
	wake       chan struct{}

	// guarded by Server.mu
	leases  map[uint64]*lease
	waiters int
	closed  bool
	worker  bool // registered as a worker (does not count against idleness)
	authed  bool // presented the token (TCP with --auth-token-file), or needs none
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
		authed: kind == connUnix || s.cfg.AuthToken == "",
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

// close ends the connection once; both goroutines exit.
func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

// send queues one message without blocking; a full queue closes the
// connection (the peer is not reading).
func (c *conn) send(m any) {
	b, err := json.Marshal(m)
	if err != nil {
		c.s.log.Printf("internal: encode reply: %v", err)
		return
	}
	c.sendRaw(append(b, wire.CRLF...))
}

// sendRaw writes b now if the socket takes it without waiting, and
// otherwise queues it for the writer goroutine (which then batches what
// piles up). Order is kept: nothing is written directly while older bytes
// wait.
func (c *conn) sendRaw(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	if c.lingerNext {
		return
	}
	if !c.writing && len(c.pending) == 0 && c.raw != nil {
		n, err := tryWrite(c.raw, b)
		if err != nil {
			c.close()
			return
		}
		b = b[n:]
		if len(b) == 0 {
			return
		}
	}
	if len(c.pending)+len(b) > maxPending {
		c.s.log.Printf("connection %d does not read its replies: closing it", c.id)
		c.close()
		return
	}
	c.pending = append(c.pending, b...)
	c.startWriter()
}

// startWriter hands the socket to the writer goroutine (wmu held).
func (c *conn) startWriter() {
	if !c.writing {
		c.writing = true
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
			m, err := syscall.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			if err == syscall.EINTR {
				continue
			}
			if err != nil && err != syscall.EAGAIN {
				werr = err
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
			c.pending = c.spare[:0]
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
		if !lingering {
			c.close()
		}
		c.s.exec(event{kind: evClose, c: c})
	}()
	var r io.Reader = c.nc
	if c.br != nil {
		r = c.br
	}
	lr := wire.NewLineReader(r, wire.MaxLine)
	for {
		line, err := lr.Next()
		if err != nil {
			if errors.Is(err, wire.ErrLineTooLong) {
				c.sendError(nil, wire.CodeTooLarge, err.Error())
				c.closeAfterFlush()
				lingering = true
			}
			return
		}
		if len(trimSpace(line)) == 0 {
			continue
		}
		var m wire.Msg
		// Bad input is answered through the loop too, so replies keep the
		// order of the requests.
		if trimSpace(line)[0] != '{' {
			m = wire.Msg{Code: wire.CodeBadRequest, Message: "a message must be a JSON object"}
		} else if err := json.Unmarshal(line, &m); err != nil {
			m = wire.Msg{Code: wire.CodeBadRequest, Message: "invalid JSON: " + err.Error()}
		} else if m.Cmd == "" {
			m = wire.Msg{Req: m.Req, Code: wire.CodeBadRequest, Message: `missing "cmd"`}
		}
		if !utf8.Valid(line) {
			m.Sanitize()
		}
		c.s.exec(event{kind: evMsg, c: c, m: &m})
	}
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
