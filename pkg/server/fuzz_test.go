package server

import (
	"bufio"
	"encoding/json"
	"net"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeLine: any line decodes to a message or to an error message,
// never panics, and what jsd would echo back (req, id) is valid UTF-8.
func FuzzDecodeLine(f *testing.F) {
	for _, seed := range []string{
		`{"cmd":"do","id":"a","type":"t","arg":[1,2],"req":1}`,
		`{"cmd":"acquire","slots":2,"timeout_ms":0}`,
		`{"cmd":"can_do","types":["x"],"concurrency":4}`,
		`[1,2,3]`, `"str"`, `{"cmd":`, `{"cmd":"did","id":1e400,"res":null}`,
		"{\"cmd\":\"do\",\"req\":\"\xff\",\"id\":\"\xfe\"}", `{"id":{"nested":[[[[]]]]}}`, " \t{}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m := decodeLine(line)
		if m == nil {
			return
		}
		if m.Cmd == "" && m.Code == "" {
			t.Fatalf("neither a command nor an error: %+v", m)
		}
		for _, raw := range []json.RawMessage{m.Req, m.ID, m.Arg} {
			if len(raw) > 0 && !utf8.Valid(raw) {
				t.Fatalf("invalid UTF-8 would be echoed: %q", raw)
			}
		}
		if b, err := json.Marshal(m); err != nil || !utf8.Valid(b) {
			t.Fatalf("reply would not encode: %v %q", err, b)
		}
	})
}

// FuzzSniff: whatever bytes a TCP client sends first (JSON lines, gloom
// frames, HTTP, garbage), jsd survives and keeps serving another client.
func FuzzSniff(f *testing.F) {
	for _, seed := range []string{
		"{\"cmd\":\"ping\"}\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /jobs/t HTTP/1.1\r\nContent-Length: 3\r\n\r\n\"x\"",
		"\x00\x00\x00\x0e{\"action\":1}", "\x80\x00\x00\x00", "@\x00\x00\x00", "\x00\x00\x00\x02{}", "G", "\r\n\r\n", "\xff\xfe",
		"{\"cmd\":\"do\",\"type\":\"t\"", "PUT /run-transformation HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	fuzzServer := startTestServer(f, nil)
	fuzzCanary := dialBench(f, fuzzServer)
	f.Fuzz(func(t *testing.T, in []byte) {
		nc, err := net.Dial("tcp", fuzzServer.testAddr())
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(in)
		nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		bufio.NewReader(nc).ReadByte() // whatever comes back, if anything
		nc.Close()
		fuzzCanary.nc.SetDeadline(time.Now().Add(5 * time.Second))
		fuzzCanary.nc.Write([]byte(`{"cmd":"ping"}` + "\n"))
		if l := fuzzCanary.line(t); string(l) != "{\"cmd\":\"pong\"}\r\n" {
			t.Fatalf("canary got %q", l)
		}
	})
}
