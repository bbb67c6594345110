package client

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/wire"
)

var fastStrings = []string{
	"", "true", "make -C src", `sh -c "echo \"hi\""`, `back\slash`, "a<b>&c", "tab\there", "nl\n",
	"\x00\x1f\x7f", "héllo", "日本", "\xff\xfe bad utf-8", "\u2028\u2029", strings.Repeat("x", 300) + "...",
}

// The hand-written slot messages are byte for byte json.Marshal's.
func TestFastEncodeMatchesJSON(t *testing.T) {
	marshal := func(m *wire.Msg) string {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, cmd := range fastStrings {
		for _, k := range []int{0, 1, 7} {
			for _, timeout := range []time.Duration{-1, 0, 1500 * time.Microsecond, 5 * time.Second} {
				for _, pid := range []int{0, 1, 4194304} {
					m := &wire.Msg{Cmd: wire.CmdAcquire, Slots: k, PID: pid, Command: cmd}
					if timeout >= 0 {
						ms := int64(timeout / time.Millisecond)
						m.TimeoutMS = &ms
					}
					if got, want := string(appendAcquire(nil, k, timeout, pid, cmd)), marshal(m); got != want {
						t.Errorf("acquire:\n got %s\nwant %s", got, want)
					}
				}
			}
		}
		for _, lease := range []uint64{0, 1, 1<<64 - 1} {
			want := marshal(&wire.Msg{Cmd: wire.CmdStarted, Lease: lease, PID: 42, Command: cmd})
			if got := string(appendStarted(nil, lease, 42, cmd)); got != want {
				t.Errorf("started:\n got %s\nwant %s", got, want)
			}
			want = marshal(&wire.Msg{Cmd: wire.CmdRelease, Lease: lease})
			if got := string(appendRelease(nil, lease)); got != want {
				t.Errorf("release:\n got %s\nwant %s", got, want)
			}
		}
	}
}

var decodeCases = []string{
	`{"cmd":"lease","slots":1,"lease":402,"fifo":"/tmp/js/jobserver.fifo","total":2}`,
	`{"cmd":"released","lease":7}`,
	`{"cmd":"error","code":"blocked","message":"no free slot"}`,
	`{"cmd":"pong"}`,
	`{}`,
	` { "cmd" : "lease" , "lease" : 3 } `,
	"{\t\"cmd\":\"x\"\r\n}",
	`{"cmd":"a","cmd":"b"}`,
	`{"lease":18446744073709551615}`,
	`{"lease":123456789012345678}`,
	`{"lease":1234567890123456789}`,
	`{"slots":0}`, `{"slots":01}`, `{"slots":-1}`, `{"slots":1.0}`, `{"slots":1e2}`, `{"slots":1E2}`,
	`{"slots":"1"}`, `{"cmd":1}`, `{"cmd":null}`, `{"cmd":true}`, `{"slots":null}`,
	`{"cmd":"esc\"aped"}`, `{"cmd":"\u0041"}`, `{"cmd":"héllo"}`, "{\"cmd\":\"\xff\"}", "{\"cmd\":\"a\tb\"}",
	`{"CMD":"lease"}`, `{"Cmd":"lease"}`, `{"req":1,"cmd":"lease"}`, `{"id":"j1","cmd":"did","res":3}`,
	`{"status":{"a":1}}`, `{"unknown":1}`, `{"cmd":"x",}`, `{"cmd":"x"`, `{"cmd":"x"} x`, `{"cmd":"x"}}`,
	`[]`, `null`, ``, `   `, `{`, `}`, `{"cmd"}`, `{"cmd":}`, `{:"x"}`, `{"cmd":"x" "lease":1}`,
	`{"lease":1x}`, `{"lease":1-2}`, `{"lease":}`, `{"message":""}`, `{"fifo":"","total":9}`,
}

// Every line the fast reader takes decodes to what encoding/json makes of it,
// and every line it leaves goes to encoding/json.
func TestFastDecodeMatchesJSON(t *testing.T) {
	for _, line := range decodeCases {
		checkDecode(t, []byte(line))
	}
	if _, ok := wire.DecodeFlat([]byte(decodeCases[0])); !ok {
		t.Error("the fast reader refused a lease reply")
	}
}

func checkDecode(t *testing.T, line []byte) {
	t.Helper()
	var want wire.Msg
	wantErr := json.Unmarshal(line, &want)
	if m, ok := wire.DecodeFlat(line); ok {
		if wantErr != nil {
			t.Fatalf("%q: fast reader took a line encoding/json refuses (%v)", line, wantErr)
		}
		if !reflect.DeepEqual(*m, want) {
			t.Fatalf("%q:\nfast %+v\njson %+v", line, *m, want)
		}
	}
	got, err := decodeMsg(line)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, encoding/json's %v", line, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(*got, want) {
		t.Fatalf("%q:\ngot  %+v\njson %+v", line, *got, want)
	}
}

func FuzzFastDecode(f *testing.F) {
	for _, line := range decodeCases {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkDecode(t, line) })
}
