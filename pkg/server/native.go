package server

import (
	"encoding/json"

	"github.com/js-toolkit/js/pkg/queue"
	"github.com/js-toolkit/js/pkg/wire"
)

// The native protocol's job messages (docs/protocol.md). conn is the peer.

func (c *conn) sendJob(j *job) {
	c.send(&wire.Msg{Cmd: wire.CmdDo, ID: j.RawID(), Type: j.Type, Arg: j.Arg})
}

func (c *conn) sendCancel(j *job, sig string) {
	c.send(&wire.Msg{Cmd: wire.CmdCancel, ID: j.RawID(), Signal: sig})
}

func (c *conn) sendOutcome(j *job, req json.RawMessage) {
	c.send(outcomeMsg(j, req))
}

// outcomeMsg is how a job's end reaches a native client. A done job's
// message is exactly deputy's {"cmd":"did","id":...,"res":...}.
func outcomeMsg(j *job, req json.RawMessage) *wire.Msg {
	o := j.out
	m := &wire.Msg{Req: req, ID: j.RawID()}
	switch o.state {
	case queue.Done:
		m.Cmd, m.Res, m.Enc = wire.CmdDid, o.res, o.enc
	case queue.Failed:
		m.Cmd, m.Res, m.Enc, m.Error, m.Exit = wire.CmdFailed, o.res, o.enc, o.err, o.exit
	case queue.Lost:
		m.Cmd, m.Error = wire.CmdLost, o.err
	default:
		m.Cmd, m.Error = wire.CmdCancelled, o.err
	}
	return m
}

// jobID is the canonical id a job command names, or false after an error
// reply.
func (c *conn) jobID(m *wire.Msg) (string, bool) {
	id, _, err := canonID(m.ID)
	if err != nil || id == "" {
		c.send(&wire.Msg{Cmd: wire.CmdError, Req: m.Req, ID: m.ID, Code: wire.CodeBadRequest, Message: `missing or bad "id"`})
		return "", false
	}
	return id, true
}

// handleJobMsg serves the job commands of the native protocol; it reports
// false for commands that are not about jobs.
func (st *loopState) handleJobMsg(c *conn, m *wire.Msg) bool {
	js := &st.jobs
	switch m.Cmd {
	case wire.CmdDo:
		if st.stopping {
			c.send(&wire.Msg{Cmd: wire.CmdError, Req: m.Req, ID: m.ID, Code: wire.CodeStopping, Message: "jsd is stopping and takes no new jobs"})
			return true
		}
		native := m.Req != nil || m.Priority != nil || m.Retries != nil || m.Detach || m.ID == nil
		s := submission{id: m.ID, typ: m.Type, arg: m.Arg, detach: m.Detach, proto: protoDeputy}
		if native {
			s.proto = protoNative
		}
		if m.Priority != nil {
			s.priority = *m.Priority
		}
		if m.Retries != nil {
			s.retries = *m.Retries
		}
		j, code, msg := js.submit(c, s)
		if j == nil {
			c.send(&wire.Msg{Cmd: wire.CmdError, Req: m.Req, ID: m.ID, Code: code, Message: msg})
			return true
		}
		var ack func()
		req, rawID := m.Req, m.ID
		if native {
			ack = func() { c.send(&wire.Msg{Cmd: wire.CmdQueued, Req: req, ID: j.RawID()}) }
		}
		reject := func(code, msg string) {
			c.send(&wire.Msg{Cmd: wire.CmdError, Req: req, ID: rawID, Code: code, Message: msg})
		}
		js.accept(j, ack, reject)
		js.enqueue(j)
	case wire.CmdCanDo:
		if len(m.Types) == 0 {
			c.sendError(m.Req, wire.CodeBadRequest, `can_do needs "types": a list of job types`)
			return true
		}
		if m.Concurrency < 0 {
			c.sendError(m.Req, wire.CodeBadRequest, "concurrency must be >= 1")
			return true
		}
		if !c.worker {
			c.worker = true
			st.clients--
		}
		pr := protoDeputy
		if m.Concurrency > 0 || m.CanCancel {
			pr = protoNative
		}
		if m.Req != nil {
			c.send(&wire.Msg{Cmd: wire.CmdOK, Req: m.Req}) // before the jobs it brings
		}
		js.register(c, m.Types, m.Concurrency, m.CanCancel, pr, m.Host, m.PID)
	case wire.CmdDrain:
		if !js.drain(c) {
			c.sendError(m.Req, wire.CodeBadRequest, "drain: this connection is not a worker")
			return true
		}
		c.send(&wire.Msg{Cmd: wire.CmdOK, Req: m.Req})
	case wire.CmdDid, wire.CmdFail:
		id, ok := c.jobID(m)
		if !ok {
			return true
		}
		o := &outcome{state: queue.Done, res: m.Res, enc: m.Enc}
		if m.Cmd == wire.CmdFail {
			o.state, o.err, o.exit = queue.Failed, m.Error, m.Exit
			if o.err == "" {
				o.err = "failed"
			}
		}
		if code, msg := js.result(c, id, o); code != "" {
			c.send(&wire.Msg{Cmd: wire.CmdError, Req: m.Req, ID: m.ID, Code: code, Message: msg})
		}
	case wire.CmdCancel:
		id, ok := c.jobID(m)
		if !ok {
			return true
		}
		sig := m.Signal
		if sig == "" {
			sig = "TERM"
		}
		req, rawID := m.Req, m.ID
		ack := func() { c.send(&wire.Msg{Cmd: wire.CmdOK, Req: req, ID: rawID}) }
		fail := func(code, msg string) {
			c.send(&wire.Msg{Cmd: wire.CmdError, Req: req, ID: rawID, Code: code, Message: msg})
		}
		if code, msg := js.cancel(id, sig, ack, fail); code != "" {
			fail(code, msg)
		}
	case wire.CmdWait:
		id, ok := c.jobID(m)
		if !ok {
			return true
		}
		req, rawID := m.Req, m.ID
		fail := func(code, msg string) {
			c.send(&wire.Msg{Cmd: wire.CmdError, Req: req, ID: rawID, Code: code, Message: msg})
		}
		if code, msg := js.wait(c, id, m.Req, fail); code != "" {
			fail(code, msg)
		}
	case wire.CmdMetrics:
		c.send(&wire.Msg{Cmd: wire.CmdMetrics, Req: m.Req, Metrics: mustJSON(st.metrics())})
	case wire.CmdJobs:
		c.send(&wire.Msg{Cmd: wire.CmdJobs, Req: m.Req, Jobs: mustJSON(js.list(m.Type, m.State))})
	case wire.CmdWorkers:
		c.send(&wire.Msg{Cmd: wire.CmdWorkers, Req: m.Req, Workers: mustJSON(js.workersView())})
	default:
		return false
	}
	return true
}
