package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/js-toolkit/js/pkg/wire"
)

// outQueue is how many replies a connection may have unsent before jsd
// gives up on it (a peer that never reads is disconnected, never waited for).
const outQueue = 4096

// conn is one client connection. The loop owns its scheduler fields; the
// reader and writer goroutines touch only nc, out and done.
type conn struct {
	s    *Server
	id   uint64
	kind connKind
	nc   net.Conn
	br   *bufio.Reader // nil: read nc directly
	out  chan []byte
	done chan struct{}
	once sync.Once

	// owned by the loop
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
		out:    make(chan []byte, outQueue),
		done:   make(chan struct{}),
		leases: map[uint64]*lease{},
	}
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

func (c *conn) sendRaw(b []byte) {
	select {
	case <-c.done:
	case c.out <- b:
	default:
		c.s.log.Printf("connection %d does not read its replies: closing it", c.id)
		c.close()
	}
}

func (c *conn) sendError(req json.RawMessage, code, msg string) {
	c.send(&wire.Msg{Cmd: wire.CmdError, Req: req, Code: code, Message: msg})
}

func (c *conn) writeLoop() {
	w := bufio.NewWriterSize(c.nc, 32<<10)
	for {
		select {
		case <-c.done:
			return
		case b := <-c.out:
			if b == nil {
				w.Flush()
				c.linger()
				return
			}
			if _, err := w.Write(b); err != nil {
				c.close()
				return
			}
			// Batch whatever else is already queued into one write.
			for more := true; more; {
				select {
				case b = <-c.out:
					if b == nil {
						w.Flush()
						c.linger()
						return
					}
					if _, err := w.Write(b); err != nil {
						c.close()
						return
					}
				default:
					more = false
				}
			}
			if err := w.Flush(); err != nil {
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
		c.s.events <- event{kind: evClose, c: c}
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
		select {
		case c.s.events <- event{kind: evMsg, c: c, m: &m}:
		case <-c.done:
			return
		}
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

// closeAfterFlush asks the writer to send what is queued, then close.
func (c *conn) closeAfterFlush() {
	select {
	case c.out <- nil:
	case <-c.done:
	default:
		c.close()
	}
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
