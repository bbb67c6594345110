package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// gloom's framing: a 4-byte unsigned big-endian length, then that many bytes
// of JSON (one object per frame). docs/protocol.md, "gloom frames".

// MaxGloomFrame is the largest gloom payload jsd accepts: 256 MiB, gloom's
// own limit. A longer length prefix gets a size_error frame and the
// connection is closed (the stream cannot be resynchronised).
const MaxGloomFrame = 256 << 20

// ErrGloomTooLarge is returned by ReadGloomFrame for a length prefix over
// MaxGloomFrame. Its text is gloom's reason, "length too large".
var ErrGloomTooLarge = errors.New("length too large")

// gloom's error codes, sent as {"error":CODE,"reason":REASON}.
const (
	GloomSizeError     = "size_error"    // a length prefix over 256 MiB (closed after)
	GloomInvalidJSON   = "invalid_json"  // a payload that is not JSON (closed after)
	GloomMissingField  = "missing_field" // reason: the field's name
	GloomInvalidType   = "invalid_type"  // reason: the field's name
	GloomInvalidAction = "invalid_action"
	GloomUnknownAction = "unknown_action" // reason: the action
	GloomInvalidState  = "invalid_state"  // reason: not_processing
	GloomIDExists      = "id_exists"      // reason: the id
	GloomJobFailed     = "job_failed"     // reason: the id (failed, lost or cancelled)
	GloomInvalidMsg    = "invalid_message"
	GloomUnauthorized  = "unauthorized" // a listener that needs a token (closed after)
)

// gloom's actions.
const (
	GloomJoin    = "join"    // slave -> jsd: serve this type
	GloomJob     = "job"     // jsd -> slave: run this
	GloomRespond = "respond" // slave -> jsd: the current job's result
	GloomSubmit  = "submit"  // master -> jsd: queue a job
)

// ReadGloomFrame reads one frame from r and returns its payload (a fresh
// slice the caller may keep). A length over MaxGloomFrame gives
// ErrGloomTooLarge with nothing more read. The payload buffer grows as the
// bytes arrive, so a peer announcing 256 MiB and sending nothing costs
// nothing. A clean EOF before a frame gives io.EOF; EOF inside one gives
// io.ErrUnexpectedEOF.
func ReadGloomFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxGloomFrame {
		return nil, ErrGloomTooLarge
	}
	if n <= 64<<10 {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return b, nil
	}
	var buf bytes.Buffer
	buf.Grow(64 << 10)
	got, err := io.CopyN(&buf, r, int64(n))
	if got < int64(n) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

// AppendGloomFrame appends payload, framed, to dst.
func AppendGloomFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// GloomFrame frames v's JSON.
func GloomFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "internal", "reason": err.Error()})
	}
	return AppendGloomFrame(make([]byte, 0, 4+len(b)), b)
}

// GloomError is the frame {"error":code,"reason":reason}; reason is a JSON
// string, or raw JSON (an id) when it is a json.RawMessage.
func GloomError(code string, reason any) []byte {
	return GloomFrame(struct {
		Error  string `json:"error"`
		Reason any    `json:"reason"`
	}{code, reason})
}

// GloomOK is {"ok":true}.
func GloomOK() []byte { return AppendGloomFrame(nil, []byte(`{"ok":true}`)) }

// GloomSubmitted is {"ok":true,"id":ID}, submit's acknowledgement.
func GloomSubmitted(id json.RawMessage) []byte {
	b := make([]byte, 0, 24+len(id))
	b = append(b, `{"ok":true,"id":`...)
	b = append(b, id...)
	b = append(b, '}')
	return AppendGloomFrame(nil, b)
}

// GloomJobFrame is exactly {"action":"job","id":ID,"type":T,"body":B}: the
// job a slave receives (gloom's clients compare whole messages). id and body
// must be valid JSON.
func GloomJobFrame(id json.RawMessage, typ string, body json.RawMessage) []byte {
	t, _ := json.Marshal(typ)
	if len(body) == 0 {
		body = json.RawMessage("null")
	}
	b := make([]byte, 0, 40+len(id)+len(t)+len(body))
	b = append(b, `{"action":"job","id":`...)
	b = append(b, id...)
	b = append(b, `,"type":`...)
	b = append(b, t...)
	b = append(b, `,"body":`...)
	b = append(b, body...)
	b = append(b, '}')
	return AppendGloomFrame(nil, b)
}

// GloomResult is exactly {"id":ID,"body":B}: a done job's result as a master
// receives it.
func GloomResult(id, body json.RawMessage) []byte {
	if len(body) == 0 {
		body = json.RawMessage("null")
	}
	b := make([]byte, 0, 16+len(id)+len(body))
	b = append(b, `{"id":`...)
	b = append(b, id...)
	b = append(b, `,"body":`...)
	b = append(b, body...)
	b = append(b, '}')
	return AppendGloomFrame(nil, b)
}

// GloomMsg is one decoded gloom request. A field is nil when it was absent;
// a present JSON null is "null".
type GloomMsg struct {
	Action   string
	ID       json.RawMessage
	Type     json.RawMessage
	Body     json.RawMessage
	Priority json.RawMessage
}

// GloomProblem is a request jsd answers with an error frame. Fatal ones
// (invalid_json) close the connection after the frame.
type GloomProblem struct {
	Code   string
	Reason string
	Fatal  bool
}

func (p *GloomProblem) Error() string { return p.Code + ": " + p.Reason }

// ParseGloom decodes a frame's payload. Not JSON: a fatal invalid_json
// problem (gloom closes then). JSON that is not an object, or an object with
// no string "action": a problem answered without closing (the framing is
// intact).
func ParseGloom(payload []byte) (*GloomMsg, *GloomProblem) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && json.Valid(payload) {
			return nil, &GloomProblem{Code: GloomInvalidMsg, Reason: "a message must be a JSON object"}
		}
		return nil, &GloomProblem{Code: GloomInvalidJSON, Reason: jsonReason(err), Fatal: true}
	}
	if fields == nil { // the payload was null
		return nil, &GloomProblem{Code: GloomInvalidMsg, Reason: "a message must be a JSON object"}
	}
	m := &GloomMsg{ID: fields["id"], Type: fields["type"], Body: fields["body"], Priority: fields["priority"]}
	a, ok := fields["action"]
	if !ok {
		return nil, &GloomProblem{Code: GloomMissingField, Reason: "action"}
	}
	if err := json.Unmarshal(a, &m.Action); err != nil {
		return nil, &GloomProblem{Code: GloomInvalidType, Reason: "action"}
	}
	return m, nil
}

// GloomPriority reads a submit's priority: absent is 0; anything but a JSON
// integer that fits 32 bits is invalid (gloom: is_integer).
func GloomPriority(raw json.RawMessage) (int, bool) {
	if raw == nil {
		return 0, true
	}
	s := string(raw)
	if strings.ContainsAny(s, ".eE") || len(s) == 0 || s == "null" {
		return 0, false
	}
	var n int32
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, false
	}
	return int(n), true
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	return err.Error()
}
