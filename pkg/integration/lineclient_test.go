package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// lineClient speaks JSON lines the way deputy's own client does: it splits
// what it reads on "\r\n" ONLY, so a server that ends lines with a bare LF
// is never heard.
type lineClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialLines(t testing.TB, dir string) *lineClient {
	t.Helper()
	nc, err := net.Dial("unix", filepath.Join(dir, "jsd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &lineClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// send writes raw text (add the line end yourself).
func (c *lineClient) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sendJSON writes one message ending in CRLF.
func (c *lineClient) sendJSON(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.send(string(b) + "\r\n")
}

// next reads one CRLF-terminated line within 10 s.
func (c *lineClient) next() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var line []byte
	for {
		b, err := c.r.ReadBytes('\n')
		line = append(line, b...)
		if err != nil {
			c.t.Fatalf("read: %v (got %q so far)", err, line)
		}
		if bytes.HasSuffix(line, []byte("\r\n")) {
			return string(line[:len(line)-2])
		}
	}
}

// msg reads one line as a JSON object.
func (c *lineClient) msg() map[string]any {
	c.t.Helper()
	line := c.next()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		c.t.Fatalf("not JSON: %q", line)
	}
	return m
}

// expect reads the next line and checks it is exactly want.
func (c *lineClient) expect(want string) {
	c.t.Helper()
	if got := c.next(); got != want {
		c.t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// closed reports whether the server closed the connection (within 10 s).
func (c *lineClient) closed() bool {
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := c.r.ReadByte(); err != nil {
			return true
		}
	}
}
