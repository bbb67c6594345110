package client

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/js-toolkit/js/pkg/wire"
)

// The slot messages are written by hand and the flat replies read by hand:
// encoding/json's first use in a process builds its reflection caches for
// wire.Msg (a tenth of a millisecond or more), and jsrun is a process per
// command. The bytes are exactly json.Marshal's (TestFastEncodeMatchesJSON);
// a reply the fast reader does not fully understand goes to encoding/json
// (TestFastDecodeMatchesJSON, FuzzFastDecode).

// appendAcquire appends {"cmd":"acquire",...} as json.Marshal writes it.
func appendAcquire(b []byte, k int, timeout time.Duration, pid int, command string) []byte {
	b = append(b, `{"cmd":"acquire"`...)
	if k != 0 {
		b = append(b, `,"slots":`...)
		b = strconv.AppendInt(b, int64(k), 10)
	}
	if timeout >= 0 {
		b = append(b, `,"timeout_ms":`...)
		b = strconv.AppendInt(b, int64(timeout/time.Millisecond), 10)
	}
	return appendPIDCommand(b, pid, command)
}

// appendStarted appends {"cmd":"started",...} as json.Marshal writes it.
func appendStarted(b []byte, lease uint64, pid int, command string) []byte {
	b = append(b, `{"cmd":"started"`...)
	b = appendLease(b, lease)
	return appendPIDCommand(b, pid, command)
}

// appendRelease appends {"cmd":"release","lease":N} as json.Marshal writes it.
func appendRelease(b []byte, lease uint64) []byte {
	b = append(b, `{"cmd":"release"`...)
	b = appendLease(b, lease)
	return append(b, '}')
}

func appendLease(b []byte, lease uint64) []byte {
	if lease != 0 {
		b = append(b, `,"lease":`...)
		b = strconv.AppendUint(b, lease, 10)
	}
	return b
}

func appendPIDCommand(b []byte, pid int, command string) []byte {
	if pid != 0 {
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(pid), 10)
	}
	if command != "" {
		b = append(b, `,"command":`...)
		b = appendJSONString(b, command)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, exactly as json.Marshal
// writes it: printable ASCII other than the characters it escapes is copied;
// anything else goes through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// decodeMsg reads one message: by hand when it is a flat object of the
// fields a slot reply has (plain strings, non-negative integers), else with
// encoding/json. Both give the same Msg for every line the fast path takes.
func decodeMsg(line []byte) (*wire.Msg, error) {
	if m, ok := decodeFlat(line); ok {
		return m, nil
	}
	var m wire.Msg
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// decodeFlat parses {"key":value,...} where every key is one of the fields
// below, spelled exactly, and every value a string of printable ASCII
// without escapes or an integer of at most 18 digits without sign, fraction
// or leading zero. Anything else reports false, for encoding/json to decide.
func decodeFlat(b []byte) (*wire.Msg, bool) {
	m := &wire.Msg{}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, skipSpace(b, i+1) == len(b)
	}
	for {
		key, j, ok := flatString(b, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return nil, false
		}
		if b[i] == '"' {
			s, j, ok := flatString(b, i)
			if !ok {
				return nil, false
			}
			i = j
			switch key {
			case "cmd":
				m.Cmd = s
			case "command":
				m.Command = s
			case "fifo":
				m.Fifo = s
			case "code":
				m.Code = s
			case "message":
				m.Message = s
			default:
				return nil, false
			}
		} else {
			n, j, ok := flatUint(b, i)
			if !ok {
				return nil, false
			}
			i = j
			if key != "lease" && n > maxInt {
				return nil, false
			}
			switch key {
			case "slots":
				m.Slots = int(n)
			case "lease":
				m.Lease = n
			case "pid":
				m.PID = int(n)
			case "total":
				m.Total = int(n)
			default:
				return nil, false
			}
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return m, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

const maxInt = uint64(^uint(0) >> 1)

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// flatString reads a string of printable ASCII without escapes at b[i].
func flatString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}

// flatUint reads digits at b[i]: no sign, no leading zero, no fraction or
// exponent, at most 18 of them (no overflow).
func flatUint(b []byte, i int) (uint64, int, bool) {
	j := i
	var n uint64
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		n = n*10 + uint64(b[j]-'0')
		j++
	}
	digits := j - i
	if digits == 0 || digits > 18 || (digits > 1 && b[i] == '0') {
		return 0, 0, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, 0, false
	}
	return n, j, true
}
