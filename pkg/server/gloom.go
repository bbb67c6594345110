package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/js-toolkit/js/pkg/queue"
	"github.com/js-toolkit/js/pkg/wire"
)

// gloom's protocol (docs/protocol.md, "gloom frames"): length-prefixed JSON
// frames; slaves join a type and get one job at a time, masters submit and
// get results. A gloomConn is a peer of the scheduler. Its reader turns
// frames into calls into the loop (in order, so replies keep the order of
// the requests); its writer drains a bounded queue.

type gloomRole uint8

const (
	roleNone   gloomRole = iota // the shared port, before the first action
	roleMaster                  // submits
	roleSlave                   // joins and responds
)

// finalWriteTimeout bounds the last write of a connection jsd closes after
// an error frame (a peer that does not read is not waited for).
const finalWriteTimeout = 5 * time.Second

type gloomConn struct {
	s    *Server
	a    *adapters
	id   uint64
	nc   net.Conn
	br   *bufio.Reader
	out  chan []byte
	done chan struct{}
	once sync.Once

	// guarded by Server.mu
	role   gloomRole
	client bool // counted in st.clients (a master)
	closed bool
	cur    *job // the job this slave runs; gloom's respond names none
	// Frames held behind an acknowledgement that waits for the journal:
	// gloom's client reads replies in order, and takes the message after a
	// submit for its ok.
	held          []*gloomFrame
	closeWhenSent bool // close once held is sent (a fatal error is in it)
}

// gloomFrame is a frame in g.held; nil b: an acknowledgement not ready yet.
type gloomFrame struct{ b []byte }

// emit sends a frame now, or behind the acknowledgements still pending.
func (g *gloomConn) emit(b []byte) {
	if len(g.held) > 0 {
		if len(g.held) >= outQueue {
			g.s.log.Printf("gloom connection %d does not read its replies: closing it", g.id)
			g.close()
			return
		}
		g.held = append(g.held, &gloomFrame{b: b})
		return
	}
	g.sendRaw(b)
}

// holdAck reserves the place of an acknowledgement to come.
func (g *gloomConn) holdAck() *gloomFrame {
	f := &gloomFrame{}
	g.held = append(g.held, f)
	return f
}

// ackReady fills a held acknowledgement and sends what is ready, in order.
func (g *gloomConn) ackReady(f *gloomFrame, b []byte) {
	f.b = b
	for len(g.held) > 0 && g.held[0].b != nil {
		g.sendRaw(g.held[0].b)
		g.held[0] = nil
		g.held = g.held[1:]
	}
	if len(g.held) == 0 && g.closeWhenSent {
		g.closeAfterFlush()
	}
}

// serveGloom speaks gloom frames on nc (br holds what sniffing read). kind
// pins the role on the --gloom-ports listeners; on jsd's shared port the
// first action decides it. It returns when the connection is done.
func (s *Server) serveGloom(nc net.Conn, br *bufio.Reader, kind connKind) {
	if br == nil {
		br = bufio.NewReaderSize(nc, wire.ReadBuffer)
	}
	if kind == connTCP && s.needsToken() && !s.cfg.AllowUnauth["gloom"] {
		nc.SetWriteDeadline(time.Now().Add(finalWriteTimeout))
		nc.Write(wire.GloomError(wire.GloomUnauthorized,
			"this listener needs a token and gloom clients cannot present one (jsd --allow-unauthenticated gloom serves them)"))
		lingerClose(nc)
		return
	}
	a := s.adapters()
	g := &gloomConn{s: s, a: a, id: s.connSeq.Add(1), nc: nc, br: br,
		out: make(chan []byte, outQueue), done: make(chan struct{})}
	if !a.addGloom(g) {
		nc.Close()
		return
	}
	ok := a.call(func(st *loopState) {
		st.conns++
		switch kind {
		case connGloomMaster:
			g.role = roleMaster
			g.client = true
			st.clients++
		case connGloomSlave:
			g.role = roleSlave
		}
	})
	if !ok {
		a.removeGloom(g)
		nc.Close()
		return
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); g.writeLoop() }()
	g.readLoop()
}

// readLoop reads frames until the connection ends, then tells the loop.
func (g *gloomConn) readLoop() {
	var final []byte // an error frame to send before closing
	for {
		payload, err := wire.ReadGloomFrame(g.br)
		if err != nil {
			if errors.Is(err, wire.ErrGloomTooLarge) {
				final = wire.GloomError(wire.GloomSizeError, err.Error())
			}
			break
		}
		m, prob := wire.ParseGloom(payload)
		if prob != nil && prob.Fatal {
			final = wire.GloomError(prob.Code, prob.Reason)
			break
		}
		if !g.a.call(func(st *loopState) { st.gloomMsg(g, m, prob) }) {
			break
		}
	}
	if !g.a.call(func(st *loopState) { st.gloomEnd(g, final) }) {
		g.close()
		g.a.removeGloom(g)
	}
}

// gloomEnd runs in the loop when g's reader has stopped: the peer's jobs
// are dropped (a master's queued jobs removed and running ones cancelled, a
// slave's job requeued at priority+1, at most 3 times, then job_failed).
func (st *loopState) gloomEnd(g *gloomConn, final []byte) {
	if final != nil {
		st.protoErrs++
		g.emit(final)
		if len(g.held) > 0 {
			g.closeWhenSent = true // behind acknowledgements still to come
		} else {
			g.closeAfterFlush()
		}
	} else {
		g.close()
	}
	g.a.removeGloom(g)
	if g.closed {
		return
	}
	g.closed = true
	if g.client {
		g.client = false
		st.clients--
	}
	g.cur = nil
	st.jobs.dropPeer(g)
}

// gloomMsg serves one request, in the loop.
func (st *loopState) gloomMsg(g *gloomConn, m *wire.GloomMsg, prob *wire.GloomProblem) {
	if g.closed {
		return
	}
	fail := func(code, reason string) {
		st.protoErrs++
		g.emit(wire.GloomError(code, reason))
	}
	if prob != nil {
		fail(prob.Code, prob.Reason)
		return
	}
	switch m.Action {
	case wire.GloomJoin:
		if g.role == roleMaster {
			fail(wire.GloomInvalidAction, "not_a_slave")
			return
		}
		g.role = roleSlave
		if m.Type == nil {
			fail(wire.GloomMissingField, "job_type") // gloom's name for it
			return
		}
		var typ string
		if err := json.Unmarshal(m.Type, &typ); err != nil || typ == "" {
			fail(wire.GloomInvalidType, "type")
			return
		}
		g.emit(wire.GloomOK()) // before the job it may cause
		st.jobs.setTypes(g, []string{typ}, protoGloom)
	case wire.GloomRespond:
		if g.role == roleMaster {
			fail(wire.GloomInvalidAction, "not_a_slave")
			return
		}
		g.role = roleSlave
		if g.cur == nil {
			fail(wire.GloomInvalidState, "not_processing")
			return
		}
		if m.Body == nil {
			fail(wire.GloomMissingField, "body")
			return
		}
		j := g.cur
		g.cur = nil
		g.emit(wire.GloomOK()) // before the next job
		if code, msg := st.jobs.result(g, j.ID, &outcome{state: queue.Done, res: m.Body}); code != "" {
			st.s.log.Printf("internal: gloom respond for job %s: %s: %s", j.ID, code, msg)
		}
	case wire.GloomSubmit:
		if g.role == roleSlave {
			fail(wire.GloomInvalidAction, "not_a_master")
			return
		}
		if g.role == roleNone {
			g.role = roleMaster
			g.client = true
			st.clients++
		}
		// gloom checks the fields in this order.
		if m.ID == nil {
			fail(wire.GloomMissingField, "id")
			return
		}
		if m.Type == nil {
			fail(wire.GloomMissingField, "type")
			return
		}
		prio, ok := wire.GloomPriority(m.Priority)
		if !ok {
			fail(wire.GloomInvalidType, "priority")
			return
		}
		if m.Body == nil {
			fail(wire.GloomMissingField, "body")
			return
		}
		var typ string
		if err := json.Unmarshal(m.Type, &typ); err != nil || typ == "" {
			fail(wire.GloomInvalidType, "type")
			return
		}
		if id, _, err := canonID(m.ID); err != nil || id == "" {
			fail(wire.GloomInvalidType, "id")
			return
		}
		j, code, msg := st.jobs.submit(g, submission{id: m.ID, typ: typ, priority: prio, arg: m.Body, proto: protoGloom})
		if j == nil {
			st.protoErrs++
			if code == wire.CodeIDExists {
				g.emit(wire.GloomError(wire.GloomIDExists, m.ID))
			} else {
				g.emit(wire.GloomError(wire.GloomInvalidMsg, msg))
			}
			return
		}
		// The ok goes out before its result (the scheduler holds the
		// outcome until the acknowledgement), and before any later reply.
		ack, id := g.holdAck(), m.ID
		st.jobs.accept(j, func() { g.ackReady(ack, wire.GloomSubmitted(id)) }, func(code, msg string) {
			if code == wire.CodeIDExists {
				g.ackReady(ack, wire.GloomError(wire.GloomIDExists, id))
			} else {
				g.ackReady(ack, wire.GloomError(wire.GloomInvalidMsg, msg))
			}
		})
		st.jobs.enqueue(j)
	default:
		fail(wire.GloomUnknownAction, m.Action)
	}
}

// ---- peer ----

func (g *gloomConn) sendJob(j *job) {
	if g.cur != nil {
		// The scheduler gives a gloom worker one job at a time; a second
		// one could never be answered (respond carries no id).
		g.s.log.Printf("internal: gloom worker %d got job %s while running %s", g.id, j.ID, g.cur.ID)
	}
	g.cur = j
	g.emit(wire.GloomJobFrame(j.RawID(), j.Type, j.Arg))
}

// sendCancel: a gloom slave cannot be interrupted (it registers without
// can_cancel, so this is never called); its answer is dropped.
func (g *gloomConn) sendCancel(*job, string) {}

// sendOutcome: a done job's result is exactly {"id":ID,"body":B}; a failed,
// lost or cancelled one is {"error":"job_failed","reason":ID}.
func (g *gloomConn) sendOutcome(j *job, _ json.RawMessage) {
	if j.out != nil && j.out.state == queue.Done {
		g.emit(wire.GloomResult(j.RawID(), j.out.res))
		return
	}
	g.emit(wire.GloomError(wire.GloomJobFailed, j.RawID()))
}

// ---- the connection ----

func (g *gloomConn) close() {
	g.once.Do(func() {
		close(g.done)
		g.nc.Close()
	})
}

// sendRaw queues a frame without blocking; a full queue closes the
// connection (the peer does not read).
func (g *gloomConn) sendRaw(b []byte) {
	select {
	case <-g.done:
	case g.out <- b:
	default:
		g.s.log.Printf("gloom connection %d does not read its replies: closing it", g.id)
		g.close()
	}
}

// closeAfterFlush asks the writer to send what is queued, then close.
func (g *gloomConn) closeAfterFlush() {
	select {
	case g.out <- nil:
	case <-g.done:
	default:
		g.close()
	}
}

func (g *gloomConn) writeLoop() {
	w := bufio.NewWriterSize(g.nc, 32<<10)
	write := func(b []byte) bool {
		if b == nil {
			g.nc.SetWriteDeadline(time.Now().Add(finalWriteTimeout))
			w.Flush()
			g.once.Do(func() {
				close(g.done)
				lingerClose(g.nc)
			})
			return false
		}
		if _, err := w.Write(b); err != nil {
			g.close()
			return false
		}
		return true
	}
	for {
		select {
		case <-g.done:
			return
		case b := <-g.out:
			if !write(b) {
				return
			}
			for more := true; more; {
				select {
				case b = <-g.out:
					if !write(b) {
						return
					}
				default:
					more = false
				}
			}
			if err := w.Flush(); err != nil {
				g.close()
				return
			}
		}
	}
}

// lingerClose closes nc after an error frame so that the frame arrives: it
// shuts the write side, then reads (and drops) what the peer still sends
// for a short while, so that unread input does not turn the close into a
// reset that would discard the frame.
func lingerClose(nc net.Conn) {
	if tc, ok := nc.(interface{ CloseWrite() error }); ok {
		if tc.CloseWrite() == nil {
			nc.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
		}
	}
	nc.Close()
}
