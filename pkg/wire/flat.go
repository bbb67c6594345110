package wire

import (
	"encoding/json"
	"strconv"
)

// The hot messages by hand: acquire, started, release, lease, do, did and
// their replies are flat objects of plain strings and small integers.
// Reflection in encoding/json was about a tenth of jsd's CPU time per
// message (W1, W3 profiles: json.Unmarshal 6-7%, json.Marshal 2-5%), and its
// first use in a process builds caches a jsrun (a process per command)
// cannot afford. Each fast path takes only what it can give exactly as
// encoding/json would, and leaves everything else to encoding/json
// (flat_test.go checks both agree; jsd and pkg/client use them).

// DecodeFlat parses {"key":value,...} where every key is one of the fields
// below, spelled exactly, and every value a string of printable ASCII
// without escapes, or an integer of at most 18 digits without sign,
// fraction, exponent or leading zero. Anything else reports false.
func DecodeFlat(b []byte) (*Msg, bool) {
	m := &Msg{}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, skipSpace(b, i+1) == len(b)
	}
	for {
		ks, ke, ok := flatString(b, i)
		if !ok {
			return nil, false
		}
		key := b[ks:ke]
		i = skipSpace(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return nil, false
		}
		if b[i] == '"' {
			vs, ve, ok := flatString(b, i)
			if !ok {
				return nil, false
			}
			raw := b[i : ve+1]
			i = ve + 1
			switch string(key) {
			case "cmd":
				m.Cmd = string(b[vs:ve])
			case "command":
				m.Command = string(b[vs:ve])
			case "type":
				m.Type = string(b[vs:ve])
			case "fifo":
				m.Fifo = string(b[vs:ve])
			case "code":
				m.Code = string(b[vs:ve])
			case "message":
				m.Message = string(b[vs:ve])
			case "id":
				m.ID = clone(raw)
			case "arg":
				m.Arg = clone(raw)
			case "res":
				m.Res = clone(raw)
			case "req":
				m.Req = clone(raw)
			default:
				return nil, false
			}
		} else {
			n, j, ok := flatUint(b, i)
			if !ok {
				return nil, false
			}
			raw := b[i:j]
			i = j
			if string(key) != "lease" && n > maxInt {
				return nil, false
			}
			switch string(key) {
			case "slots":
				m.Slots = int(n)
			case "timeout_ms":
				v := int64(n)
				m.TimeoutMS = &v
			case "lease":
				m.Lease = n
			case "pid":
				m.PID = int(n)
			case "concurrency":
				m.Concurrency = int(n)
			case "total":
				m.Total = int(n)
			case "id":
				m.ID = clone(raw)
			case "req":
				m.Req = clone(raw)
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

func clone(b []byte) json.RawMessage { return append(json.RawMessage(nil), b...) }

const maxInt = uint64(^uint(0) >> 1)

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// flatString finds a string of printable ASCII without escapes at b[i]:
// its content is b[start:end], and b[end] is the closing quote.
func flatString(b []byte, i int) (start, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return 0, 0, false
		}
	}
	return 0, 0, false
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

// AppendMsg appends m as encoding/json's Marshal would, or reports false
// when a field needs more than this writer does (then the caller uses
// json.Marshal): strings must be printable ASCII without a quote,
// backslash or the HTML characters Marshal escapes; raw fields valid JSON
// with no whitespace or such characters either; the list fields empty.
func AppendMsg(b []byte, m *Msg) ([]byte, bool) {
	if len(m.Types) > 0 || len(m.Metrics) > 0 || len(m.Jobs) > 0 || len(m.Workers) > 0 || len(m.Status) > 0 {
		return b, false
	}
	ok := true
	str := func(key, v string) { // omitempty
		if v == "" || !ok {
			return
		}
		for i := 0; i < len(v); i++ {
			if !plainByte(v[i]) {
				ok = false
				return
			}
		}
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':', '"')
		b = append(b, v...)
		b = append(b, '"')
	}
	raw := func(key string, v json.RawMessage) {
		if len(v) == 0 || !ok {
			return
		}
		for _, c := range v {
			if c != '"' && c != '\\' && !plainByte(c) || c == ' ' {
				ok = false
				return
			}
		}
		if !json.Valid(v) {
			ok = false
			return
		}
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = append(b, v...)
	}
	num := func(key string, v int64) {
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = strconv.AppendInt(b, v, 10)
	}
	flag := func(key string, v bool) {
		if v {
			b = append(b, ',', '"')
			b = append(b, key...)
			b = append(b, `":true`...)
		}
	}
	start := len(b)
	b = append(b, `{"cmd":"`...)
	for i := 0; i < len(m.Cmd); i++ {
		if !plainByte(m.Cmd[i]) {
			return b[:start], false
		}
	}
	b = append(b, m.Cmd...)
	b = append(b, '"')
	raw("req", m.Req)
	if m.Slots != 0 {
		num("slots", int64(m.Slots))
	}
	if m.TimeoutMS != nil {
		num("timeout_ms", *m.TimeoutMS)
	}
	if m.Lease != 0 {
		b = append(b, `,"lease":`...)
		b = strconv.AppendUint(b, m.Lease, 10)
	}
	if m.PID != 0 {
		num("pid", int64(m.PID))
	}
	str("command", m.Command)
	flag("drain", m.Drain)
	str("fifo", m.Fifo)
	if m.Total != 0 {
		num("total", int64(m.Total))
	}
	raw("id", m.ID)
	str("type", m.Type)
	raw("arg", m.Arg)
	raw("res", m.Res)
	str("enc", m.Enc)
	if m.Priority != nil {
		num("priority", int64(*m.Priority))
	}
	if m.Retries != nil {
		num("retries", int64(*m.Retries))
	}
	flag("detach", m.Detach)
	if m.Concurrency != 0 {
		num("concurrency", int64(m.Concurrency))
	}
	flag("can_cancel", m.CanCancel)
	str("signal", m.Signal)
	str("error", m.Error)
	if m.Exit != nil {
		num("exit", int64(*m.Exit))
	}
	str("state", m.State)
	str("host", m.Host)
	str("token", m.Token)
	str("code", m.Code)
	str("message", m.Message)
	if !ok {
		return b[:start], false
	}
	return append(b, '}'), true
}

// plainByte: printable ASCII that encoding/json writes as itself inside a
// string (it escapes the quote, the backslash and <, >, &).
func plainByte(c byte) bool {
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
}
