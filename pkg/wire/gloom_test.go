package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

func frameOf(payload string) []byte { return AppendGloomFrame(nil, []byte(payload)) }

func TestGloomFrameRoundTrip(t *testing.T) {
	var stream []byte
	payloads := []string{`{"action":"join","type":"foo"}`, ``, `{"big":"` + string(bytes.Repeat([]byte("x"), 200<<10)) + `"}`}
	for _, p := range payloads {
		stream = append(stream, frameOf(p)...)
	}
	r := bytes.NewReader(stream)
	for i, want := range payloads {
		got, err := ReadGloomFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if string(got) != want {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := ReadGloomFrame(r); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestGloomFrameLimits(t *testing.T) {
	for _, n := range []uint32{1 << 30, 1 << 31, 0xffffffff, MaxGloomFrame + 1} {
		hdr := binary.BigEndian.AppendUint32(nil, n)
		if _, err := ReadGloomFrame(bytes.NewReader(hdr)); !errors.Is(err, ErrGloomTooLarge) {
			t.Errorf("length %d: %v, want ErrGloomTooLarge", n, err)
		}
	}
	// Exactly the limit is allowed: it only fails for want of bytes, and
	// nothing near 256 MiB is allocated up front.
	hdr := binary.BigEndian.AppendUint32(nil, MaxGloomFrame)
	if _, err := ReadGloomFrame(bytes.NewReader(append(hdr, "{}"...))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("length %d with 2 bytes: %v, want io.ErrUnexpectedEOF", MaxGloomFrame, err)
	}
	if _, err := ReadGloomFrame(bytes.NewReader([]byte{0, 0})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short header: %v", err)
	}
	if _, err := ReadGloomFrame(bytes.NewReader([]byte{0, 0, 0, 9, '{'})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short payload: %v", err)
	}
}

func TestGloomParse(t *testing.T) {
	cases := []struct {
		in     string
		code   string
		reason string
		fatal  bool
	}{
		{`foo`, GloomInvalidJSON, "", true},
		{``, GloomInvalidJSON, "", true},
		{`{"action":`, GloomInvalidJSON, "", true},
		{`[1,2]`, GloomInvalidMsg, "", false},
		{`null`, GloomInvalidMsg, "", false},
		{`"join"`, GloomInvalidMsg, "", false},
		{`{"foo":"bar"}`, GloomMissingField, "action", false},
		{`{"action":5}`, GloomInvalidType, "action", false},
	}
	for _, c := range cases {
		m, p := ParseGloom([]byte(c.in))
		if p == nil {
			t.Errorf("%q: parsed as %+v, want %s", c.in, m, c.code)
			continue
		}
		if p.Code != c.code || p.Fatal != c.fatal || (c.reason != "" && p.Reason != c.reason) {
			t.Errorf("%q: got %+v, want code %s reason %q fatal %v", c.in, p, c.code, c.reason, c.fatal)
		}
	}
	m, p := ParseGloom([]byte(`{"action":"submit","id":"A","type":"t","body":{"k":[1]},"priority":2}`))
	if p != nil {
		t.Fatal(p)
	}
	if m.Action != "submit" || string(m.ID) != `"A"` || string(m.Type) != `"t"` || string(m.Body) != `{"k":[1]}` || string(m.Priority) != "2" {
		t.Fatalf("parsed %+v", m)
	}
	m, _ = ParseGloom([]byte(`{"action":"respond","body":null}`))
	if m.Body == nil || string(m.Body) != "null" || m.ID != nil {
		t.Fatalf("a present null body must be kept, an absent id nil: %+v", m)
	}
}

func TestGloomPriority(t *testing.T) {
	for raw, want := range map[string]int{"0": 0, "7": 7, "-3": -3, "2147483647": 2147483647} {
		if n, ok := GloomPriority(json.RawMessage(raw)); !ok || n != want {
			t.Errorf("%s: %d %v", raw, n, ok)
		}
	}
	if n, ok := GloomPriority(nil); !ok || n != 0 {
		t.Errorf("absent: %d %v", n, ok)
	}
	for _, raw := range []string{`1.5`, `1e2`, `"1"`, `null`, `true`, `2147483648`, `[1]`} {
		if _, ok := GloomPriority(json.RawMessage(raw)); ok {
			t.Errorf("%s accepted as a priority", raw)
		}
	}
}

// The frames a gloom client compares whole.
func TestGloomEncoders(t *testing.T) {
	check := func(name string, frame []byte, want string) {
		t.Helper()
		got, err := ReadGloomFrame(bytes.NewReader(frame))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: not JSON: %s", name, got)
		}
		json.Unmarshal([]byte(want), &w)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: got %s, want %s", name, got, want)
		}
	}
	check("job", GloomJobFrame(json.RawMessage(`"J1"`), "fo\"o", json.RawMessage(`{"a":1}`)), `{"action":"job","id":"J1","type":"fo\"o","body":{"a":1}}`)
	check("job, null body", GloomJobFrame(json.RawMessage(`5`), "t", nil), `{"action":"job","id":5,"type":"t","body":null}`)
	check("result", GloomResult(json.RawMessage(`"J1"`), json.RawMessage(`[1,2]`)), `{"id":"J1","body":[1,2]}`)
	check("ok", GloomOK(), `{"ok":true}`)
	check("submitted", GloomSubmitted(json.RawMessage(`"J1"`)), `{"ok":true,"id":"J1"}`)
	check("error", GloomError(GloomSizeError, "length too large"), `{"error":"size_error","reason":"length too large"}`)
	check("error with a raw id", GloomError(GloomJobFailed, json.RawMessage(`42`)), `{"error":"job_failed","reason":42}`)
}

// FuzzGloomFrame feeds arbitrary bytes to the frame reader and the parser:
// nothing panics, no frame exceeds the limit, what is read re-frames to the
// same bytes, and a parsed message re-encodes as valid JSON.
func FuzzGloomFrame(f *testing.F) {
	f.Add(frameOf(`{"action":"join","type":"foo"}`))
	f.Add(frameOf(`{"action":"submit","id":"A","type":"t","body":{"x":1},"priority":2}`))
	f.Add([]byte{0x40, 0, 0, 0})
	f.Add([]byte{0x80, 0, 0, 0})
	f.Add(frameOf(`foo`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			off := len(data) - r.Len()
			p, err := ReadGloomFrame(r)
			if err != nil {
				if errors.Is(err, ErrGloomTooLarge) {
					if n := binary.BigEndian.Uint32(data[off:]); n <= MaxGloomFrame {
						t.Fatalf("length %d refused as too large", n)
					}
				}
				return
			}
			if len(p) > MaxGloomFrame {
				t.Fatalf("a %d-byte frame was accepted", len(p))
			}
			again, err := ReadGloomFrame(bytes.NewReader(AppendGloomFrame(nil, p)))
			if err != nil || !bytes.Equal(again, p) {
				t.Fatalf("round trip: %v", err)
			}
			m, prob := ParseGloom(p)
			if prob != nil {
				if prob.Fatal == json.Valid(p) {
					t.Fatalf("fatal=%v for valid=%v: %q", prob.Fatal, json.Valid(p), p)
				}
				continue
			}
			if !json.Valid(p) {
				t.Fatalf("invalid JSON parsed: %q", p)
			}
			id := m.ID
			if id == nil {
				id = json.RawMessage(`"x"`)
			}
			for _, fr := range [][]byte{GloomJobFrame(id, m.Action, m.Body), GloomResult(id, m.Body), GloomSubmitted(id), GloomError(GloomJobFailed, id)} {
				q, err := ReadGloomFrame(bytes.NewReader(fr))
				if err != nil || !json.Valid(q) {
					t.Fatalf("encoder made invalid JSON: %q", q)
				}
			}
			if n, ok := GloomPriority(m.Priority); ok && m.Priority != nil {
				var back int
				if json.Unmarshal(m.Priority, &back) != nil || back != n {
					t.Fatalf("priority %s read as %d", m.Priority, n)
				}
			}
		}
	})
}
