// Package wire is jsd's codec layer: the native JSON-line messages (deputy's
// vocabulary, extended), and their framing. docs/protocol.md lists every
// message; field names here are that document's.
package wire

import "encoding/json"

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
)

// Error codes carried by CmdError replies.
const (
	CodeBadRequest = "bad_request" // malformed JSON, not an object, missing or wrong fields
	CodeUnknownCmd = "unknown_cmd"
	CodeTooLarge   = "too_large" // a line over the size limit (connection closed)
	CodeBlocked    = "blocked"   // no slot before the deadline
	CodeNotFound   = "not_found"
	CodeStopping   = "stopping" // jsd is shutting down and grants nothing new
	CodeInternal   = "internal"
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
	Fifo      string `json:"fifo,omitempty"`  // lease: the pool's FIFO, for the command's MAKEFLAGS
	Total     int    `json:"total,omitempty"` // lease: the pool's size (-jN)

	// Errors.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`

	// Status document (CmdStatus reply).
	Status json.RawMessage `json:"status,omitempty"`
}
