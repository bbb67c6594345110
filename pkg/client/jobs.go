package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/wire"
)

// Job is a submission.
type Job struct {
	ID       string // "" lets jsd assign one
	Type     string
	Arg      json.RawMessage
	Priority int
	Retries  int
	Detach   bool
}

// Submit queues a job and returns its id once jsd has accepted it.
func (c *Conn) Submit(j Job) (string, error) {
	m := &wire.Msg{Cmd: wire.CmdDo, Req: json.RawMessage("1"), Type: j.Type, Arg: j.Arg, Detach: j.Detach}
	if j.ID != "" {
		m.ID, _ = json.Marshal(j.ID)
	}
	p, r := j.Priority, j.Retries
	m.Priority, m.Retries = &p, &r
	reply, err := c.call(m)
	if err != nil {
		return "", err
	}
	if reply.Cmd != wire.CmdQueued {
		return "", fmt.Errorf("unexpected reply %q to do", reply.Cmd)
	}
	return IDString(reply.ID), nil
}

// IDString is a wire id as text: a string's value or a number's digits.
func IDString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// Outcome is how a job ended, as a native client receives it.
type Outcome struct {
	ID    string
	State string // done, failed, lost, cancelled
	Res   json.RawMessage
	Enc   string
	Error string
	Exit  *int
}

// OutcomeOf reads an outcome message; ok is false for other messages.
func OutcomeOf(m *wire.Msg) (Outcome, bool) {
	o := Outcome{ID: IDString(m.ID), Res: m.Res, Enc: m.Enc, Error: m.Error, Exit: m.Exit}
	switch m.Cmd {
	case wire.CmdDid:
		o.State = "done"
	case wire.CmdFailed:
		o.State = "failed"
	case wire.CmdLost:
		o.State = "lost"
	case wire.CmdCancelled:
		o.State = "cancelled"
	default:
		return o, false
	}
	return o, true
}

// ErrTimeout is returned when a deadline passes first.
var ErrTimeout = errors.New("timed out")

// NextOutcome waits for the next job outcome on this connection until
// deadline (zero: forever), skipping other messages.
func (c *Conn) NextOutcome(deadline time.Time) (Outcome, error) {
	c.nc.SetReadDeadline(deadline)
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		m, err := c.Recv()
		if err != nil {
			if errors.Is(err, errDeadline) {
				return Outcome{}, ErrTimeout
			}
			return Outcome{}, err
		}
		if m.Cmd == wire.CmdError {
			return Outcome{}, &Error{Code: m.Code, Message: m.Message}
		}
		if o, ok := OutcomeOf(m); ok {
			return o, nil
		}
	}
}

// Wait asks for the outcome of job id and waits for it.
func (c *Conn) Wait(id string, deadline time.Time) (Outcome, error) {
	raw, _ := json.Marshal(id)
	if err := c.Send(&wire.Msg{Cmd: wire.CmdWait, ID: raw}); err != nil {
		return Outcome{}, c.sendFailed(err)
	}
	return c.NextOutcome(deadline)
}

// Cancel cancels a queued or running job.
func (c *Conn) Cancel(id, signal string) error {
	raw, _ := json.Marshal(id)
	_, err := c.call(&wire.Msg{Cmd: wire.CmdCancel, ID: raw, Signal: signal})
	return err
}

// SendCancel asks jsd to cancel a job without waiting for the answer.
func (c *Conn) SendCancel(id, signal string) error {
	raw, _ := json.Marshal(id)
	return c.Send(&wire.Msg{Cmd: wire.CmdCancel, ID: raw, Signal: signal})
}

// Jobs lists jobs, filtered by type and state ("" for any).
func (c *Conn) Jobs(typ, state string) ([]status.Job, error) {
	r, err := c.call(&wire.Msg{Cmd: wire.CmdJobs, Type: typ, State: state})
	if err != nil {
		return nil, err
	}
	var out []status.Job
	return out, json.Unmarshal(r.Jobs, &out)
}

// Workers lists the connected workers.
func (c *Conn) Workers() ([]status.Worker, error) {
	r, err := c.call(&wire.Msg{Cmd: wire.CmdWorkers})
	if err != nil {
		return nil, err
	}
	var out []status.Worker
	return out, json.Unmarshal(r.Workers, &out)
}

// Metrics returns jsd's counters as raw JSON.
func (c *Conn) Metrics() (json.RawMessage, error) {
	r, err := c.call(&wire.Msg{Cmd: wire.CmdMetrics})
	if err != nil {
		return nil, err
	}
	return r.Metrics, nil
}
