// Package wire is jsd's codec layer: the native JSON-line messages (deputy's
// vocabulary, extended), and their framing. docs/protocol.md lists every
// message; field names here are that document's.
package wire

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Commands of the native protocol.
const (
	// Slot leases.
	CmdAcquire  = "acquire"  // client -> jsd: ask for slots
	CmdLease    = "lease"    // jsd -> client: slots granted
	CmdRelease  = "release"  // client -> jsd: give a lease back
	CmdReleased = "released" // jsd -> client: lease given back
	CmdStarted  = "started"  // client -> jsd: the command of a lease runs as pid/pgid
	// Reads and controls.
	CmdStatus   = "status"   // both ways: ask for, and the status document
	CmdError    = "error"    // jsd -> client: a request failed
	CmdShutdown = "shutdown" // client -> jsd: stop (grant nothing new, let leases go)
	CmdOK       = "ok"       // jsd -> client: a control request was done
	CmdPing     = "ping"
	CmdPong     = "pong"
	CmdAuth     = "auth" // client -> jsd over TCP: present the token first

	// Jobs: deputy's vocabulary ...
	CmdCanDo   = "can_do"  // worker -> jsd: serve these types
	CmdDo      = "do"      // client -> jsd: submit; jsd -> worker: run it
	CmdDid     = "did"     // worker -> jsd: done; jsd -> submitter: done
	CmdMetrics = "metrics" // both ways: ask for, and the counters
	// ... extended.
	CmdQueued    = "queued"    // jsd -> submitter: the job is accepted (ack)
	CmdFail      = "fail"      // worker -> jsd: the job failed
	CmdFailed    = "failed"    // jsd -> submitter: the job failed
	CmdLost      = "lost"      // jsd -> submitter: the job vanished (worker died, retries spent)
	CmdCancel    = "cancel"    // client -> jsd: cancel a job; jsd -> worker: stop running it
	CmdCancelled = "cancelled" // jsd -> submitter: the job was cancelled
	CmdWait      = "wait"      // client -> jsd: send me how this job ends
	CmdJobs      = "jobs"      // both ways: list jobs
	CmdWorkers   = "workers"   // both ways: list workers
	CmdDrain     = "drain"     // worker -> jsd: send me no new jobs
	CmdResize    = "resize"    // client -> jsd: change the pool's size
)

// Error codes carried by CmdError replies.
const (
	CodeBadRequest  = "bad_request" // malformed JSON, not an object, missing or wrong fields
	CodeUnknownCmd  = "unknown_cmd"
	CodeTooLarge    = "too_large" // a line over the size limit (connection closed)
	CodeBlocked     = "blocked"   // no slot before the deadline
	CodeNotFound    = "not_found"
	CodeStopping    = "stopping" // jsd is shutting down and grants nothing new
	CodeInternal    = "internal"
	CodeIDExists    = "id_exists"    // a job with that id is queued or running
	CodeNotYours    = "not_yours"    // a result for a job this worker does not hold
	CodeAuth        = "unauthorized" // no or wrong token (connection closed)
	CodeEnded       = "ended"        // the job ended already
	CodeUnavailable = "unavailable"  // the shared queue (NATS JetStream) could not be reached or refused
	CodeFDLimit     = "fd_limit"     // jsd is at its open-file limit: the connection is refused (closed after)
)

// Msg is one native message. Every command uses a subset of the fields; empty
// ones are left out on the wire.
type Msg struct {
	Cmd string `json:"cmd"`
	// Req is echoed in the reply to a request that carried it.
	Req json.RawMessage `json:"req,omitempty"`

	// Slot leases.
	Slots     int    `json:"slots,omitempty"`
	TimeoutMS *int64 `json:"timeout_ms,omitempty"`
	Lease     uint64 `json:"lease,omitempty"`
	PID       int    `json:"pid,omitempty"`
	Command   string `json:"command,omitempty"`
	Drain     bool   `json:"drain,omitempty"` // shutdown: wait for the queued and running jobs first
	Fifo      string `json:"fifo,omitempty"`  // lease: the pool's FIFO, for the command's MAKEFLAGS
	Total     int    `json:"total,omitempty"` // lease: the pool's size (-jN)

	// Jobs (deputy's fields first, in deputy's order).
	ID          json.RawMessage `json:"id,omitempty"`
	Type        string          `json:"type,omitempty"`
	Types       []string        `json:"types,omitempty"`
	Arg         json.RawMessage `json:"arg,omitempty"`
	Res         json.RawMessage `json:"res,omitempty"`
	Enc         string          `json:"enc,omitempty"` // "base64": res is the base64 of bytes that were not UTF-8
	Priority    *int            `json:"priority,omitempty"`
	Retries     *int            `json:"retries,omitempty"`
	Detach      bool            `json:"detach,omitempty"`
	Concurrency int             `json:"concurrency,omitempty"`
	CanCancel   bool            `json:"can_cancel,omitempty"` // can_do: this worker obeys cancel
	Signal      string          `json:"signal,omitempty"`
	Error       string          `json:"error,omitempty"`
	Exit        *int            `json:"exit,omitempty"`
	State       string          `json:"state,omitempty"`
	Host        string          `json:"host,omitempty"`
	Token       string          `json:"token,omitempty"`

	// Errors.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`

	// Lists and counters.
	Metrics json.RawMessage `json:"metrics,omitempty"`
	Jobs    json.RawMessage `json:"jobs,omitempty"`
	Workers json.RawMessage `json:"workers,omitempty"`

	// Status document (CmdStatus reply).
	Status json.RawMessage `json:"status,omitempty"`
}

// Sanitize makes the raw JSON fields valid UTF-8 (a line with invalid UTF-8
// inside its strings decodes, but jsd must never echo such bytes back):
// invalid sequences become U+FFFD, as encoding/json does for strings.
func (m *Msg) Sanitize() {
	for _, f := range []*json.RawMessage{&m.Req, &m.ID, &m.Arg, &m.Res, &m.Status, &m.Metrics} {
		if len(*f) > 0 && !utf8.Valid(*f) {
			*f = sanitizeJSON(*f)
		}
	}
}

func sanitizeJSON(raw json.RawMessage) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return json.RawMessage("null")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}
