package client

import (
	"encoding/json"
	"time"

	"github.com/js-toolkit/js/pkg/wire"
)

// The slot messages are written and the flat replies read by hand (wire's
// AppendMsg and DecodeFlat): encoding/json's first use in a process builds
// its reflection caches for wire.Msg (a tenth of a millisecond or more), and
// jsrun is a process per command. The bytes are exactly json.Marshal's
// (TestFastEncodeMatchesJSON); a reply the fast reader does not fully
// understand goes to encoding/json (TestFastDecodeMatchesJSON, FuzzFastDecode).

// appendAcquire appends {"cmd":"acquire",...} as json.Marshal writes it.
func appendAcquire(b []byte, k int, timeout time.Duration, pid int, command string) []byte {
	m := wire.Msg{Cmd: wire.CmdAcquire, Slots: k, PID: pid, Command: command}
	if timeout >= 0 {
		ms := int64(timeout / time.Millisecond)
		m.TimeoutMS = &ms
	}
	return appendMsg(b, &m)
}

// appendStarted appends {"cmd":"started",...} as json.Marshal writes it.
func appendStarted(b []byte, lease uint64, pid int, command string) []byte {
	return appendMsg(b, &wire.Msg{Cmd: wire.CmdStarted, Lease: lease, PID: pid, Command: command})
}

// appendRelease appends {"cmd":"release","lease":N} as json.Marshal writes it.
func appendRelease(b []byte, lease uint64) []byte {
	return appendMsg(b, &wire.Msg{Cmd: wire.CmdRelease, Lease: lease})
}

// appendMsg appends m as json.Marshal writes it: by hand (wire.AppendMsg)
// unless a field needs Marshal's escaping.
func appendMsg(b []byte, m *wire.Msg) []byte {
	if out, ok := wire.AppendMsg(b, m); ok {
		return out
	}
	q, _ := json.Marshal(m)
	return append(b, q...)
}

// decodeMsg reads one message: by hand when it is a flat object of the
// fields a slot reply has (plain strings, non-negative integers), else with
// encoding/json. Both give the same Msg for every line the fast path takes.
func decodeMsg(line []byte) (*wire.Msg, error) {
	if m, ok := wire.DecodeFlat(line); ok {
		return m, nil
	}
	var m wire.Msg
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
