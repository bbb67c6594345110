package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// AppendMsg writes Msg's fields by name, in order: a field added to
// Msg must be added there too (or make it fall back), and here.
func TestAppendMsgKnowsEveryField(t *testing.T) {
	want := "cmd req slots timeout_ms lease pid command drain fifo total id type types arg res enc priority retries " +
		"detach concurrency can_cancel signal error exit state host token code message metrics jobs workers status"
	var got []string
	rt := reflect.TypeOf(Msg{})
	for i := 0; i < rt.NumField(); i++ {
		got = append(got, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
	}
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("Msg's fields changed: update AppendMsg and DecodeFlat (flat.go), then this list\n got %s\nwant %s", g, want)
	}
}

func intp(v int) *int       { return &v }
func int64p(v int64) *int64 { return &v }

func TestAppendMsgMatchesMarshal(t *testing.T) {
	msgs := []*Msg{
		{Cmd: CmdLease, Lease: 7, Slots: 1, Fifo: "/run/user/1000/js/jobserver.fifo", Total: 8},
		{Cmd: CmdLease, Req: json.RawMessage(`{"a":[1,2]}`), Lease: 1 << 63, Slots: 2, Fifo: "/x", Total: 2},
		{Cmd: CmdReleased, Lease: 3},
		{Cmd: CmdDo, ID: json.RawMessage(`17`), Type: "echo", Arg: json.RawMessage(`"0123456789abcdef"`)},
		{Cmd: CmdDid, ID: json.RawMessage(`"a1"`), Res: json.RawMessage(`{"k":"v\n\"q\""}`), Enc: "base64"},
		{Cmd: CmdFailed, ID: json.RawMessage(`"a1"`), Res: json.RawMessage(`null`), Error: "stderr tail", Exit: intp(3)},
		{Cmd: CmdError, Req: json.RawMessage(`1`), Code: CodeNotFound, Message: "no lease 9 on this connection"},
		{Cmd: CmdError, Message: `missing "cmd"`},              // a quote: Marshal escapes it
		{Cmd: CmdError, Message: "a <b> & c"},                  // HTML escapes
		{Cmd: CmdError, Message: "caf\u00e9 \u2028"},           // not ASCII
		{Cmd: CmdDo, Arg: json.RawMessage(`{"a": 1}`)},         // compacted by Marshal
		{Cmd: CmdDo, Arg: json.RawMessage(`"<x>"`)},            // HTML escapes in raw JSON
		{Cmd: CmdDo, Arg: json.RawMessage(`{"a":`)},            // invalid: Marshal fails
		{Cmd: CmdOK, Req: json.RawMessage(`"r"`), Slots: -1},   // negative
		{Cmd: CmdCanDo, Types: []string{"a"}, Concurrency: 4},  // a list: falls back
		{Cmd: CmdStatus, Status: json.RawMessage(`{"pid":1}`)}, // a document: falls back
		{Cmd: "x\ty"}, // control character
		{Cmd: CmdAcquire, TimeoutMS: int64p(0), PID: 42, Command: "make -C src", Drain: true, Detach: true, CanCancel: true},
		{Cmd: CmdDo, Priority: intp(-5), Retries: intp(0), Signal: "TERM", State: "queued", Host: "h1", Token: "t"},
		{},
	}
	for _, m := range msgs {
		checkAppendMsg(t, m)
	}
}

func checkAppendMsg(t *testing.T, m *Msg) {
	t.Helper()
	want, err := json.Marshal(m)
	prefix := []byte("prefix")
	got, ok := AppendMsg(append([]byte(nil), prefix...), m)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("AppendMsg(%+v) lost what was before it: %q", m, got)
	}
	got = got[len(prefix):]
	if !ok {
		if len(got) != 0 {
			t.Fatalf("AppendMsg(%+v) fell back but left %q", m, got)
		}
		return
	}
	if err != nil {
		t.Fatalf("AppendMsg(%+v) = %q, but Marshal fails: %v", m, got, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendMsg(%+v)\n got %s\nwant %s", m, got, want)
	}
}

func TestDecodeFlatMatchesUnmarshal(t *testing.T) {
	for _, line := range []string{
		`{"cmd":"acquire","slots":1,"timeout_ms":10000}`,
		`{"cmd":"acquire","slots":1,"pid":1234,"command":"true"}`,
		`{"cmd":"started","lease":7,"pid":1240,"command":"make -C src"}`,
		`{"cmd":"release","lease":18446744073709551615}`, // too many digits: falls back
		`{"cmd":"release","lease":123456789012345678}`,
		`{"cmd":"do","id":17,"type":"q","arg":"0123456789abcdef"}`,
		`{"cmd":"did","id":"a1","res":"x"}`,
		`{"cmd":"can_do","types":["q"],"concurrency":64}`,
		`{"cmd":"do","req":3,"type":"q","arg":"x"}`,
		`{"cmd":"do","req":"r","id":"x"}`,
		` { "cmd" : "ping" } `,
		`{"cmd":"ping","cmd":"pong"}`,
		`{"CMD":"ping"}`,
		`{"cmd":"ping","unknown":1}`,
		`{"cmd":"acquire","slots":-1}`,
		`{"cmd":"acquire","slots":01}`,
		`{"cmd":"acquire","slots":1.5}`,
		`{"cmd":"acquire","slots":1e3}`,
		`{"cmd":"a\"b"}`,
		`{"cmd":"ping",}`,
		`{"cmd":"ping"} x`,
		`{}`,
		`{"slots":2}`,
		`{"cmd":"caf` + "\xc3\xa9" + `"}`,
	} {
		checkDecodeFlat(t, []byte(line))
	}
}

func checkDecodeFlat(t *testing.T, line []byte) {
	t.Helper()
	m, ok := DecodeFlat(line)
	if !ok {
		return
	}
	var want Msg
	if err := json.Unmarshal(line, &want); err != nil {
		t.Fatalf("DecodeFlat(%q) took it, but Unmarshal fails: %v", line, err)
	}
	if !reflect.DeepEqual(*m, want) {
		t.Fatalf("DecodeFlat(%q)\n got %+v\nwant %+v", line, *m, want)
	}
}

// FuzzFastJSON: whatever the fast paths take, they give what encoding/json
// gives.
func FuzzFastJSON(f *testing.F) {
	for _, seed := range []string{
		`{"cmd":"acquire","slots":1,"timeout_ms":10000}`, `{"cmd":"started","lease":7,"pid":1240,"command":"make"}`,
		`{"cmd":"do","id":17,"type":"q","arg":"0123456789abcdef"}`, `{"cmd":"did","id":"a1","res":{"k":[1,"<"]}}`,
		`{"cmd":"error","code":"x","message":"m","exit":3,"priority":-1,"drain":true}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkDecodeFlat(t, line)
		var m Msg
		if json.Unmarshal(line, &m) == nil {
			checkAppendMsg(t, &m)
		}
	})
}

func BenchmarkFastJSON(b *testing.B) {
	line := []byte(`{"cmd":"do","id":17,"type":"q","arg":"0123456789abcdef"}`)
	m := &Msg{Cmd: CmdLease, Lease: 7, Slots: 1, Fifo: "/run/user/1000/js/jobserver.fifo", Total: 8}
	b.Run("decode/flat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			DecodeFlat(line)
		}
	})
	b.Run("decode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m Msg
			json.Unmarshal(line, &m)
		}
	})
	buf := make([]byte, 0, 256)
	b.Run("encode/append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = AppendMsg(buf[:0], m)
		}
	})
	b.Run("encode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(m)
		}
	})
}
