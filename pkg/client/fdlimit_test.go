package client

import (
	"net"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/wire"
)

// jsd at its open-file limit writes an fd_limit error and closes at once,
// without reading the request. A client whose request then fails to send
// (EPIPE, ECONNRESET) still reports that error, for Dial and DialDirect,
// for a call and for an acquire.
func TestRefusedAtFDLimit(t *testing.T) {
	const line = `{"cmd":"error","code":"fd_limit","message":"jsd is at its open-file limit"}` + "\r\n"
	closed := make(chan struct{}, 4)
	sock := fakeJSD(t, func(c net.Conn) {
		c.Write([]byte(line))
		c.Close()
		closed <- struct{}{}
	})
	for _, tc := range []struct {
		name string
		dial func(string) (*Conn, error)
		req  func(*Conn) error
	}{
		{"Dial call", Dial, func(c *Conn) error { _, _, err := c.Status(); return err }},
		{"DialDirect call", DialDirect, func(c *Conn) error { _, _, err := c.Status(); return err }},
		{"Dial acquire", Dial, func(c *Conn) error { _, err := c.Acquire(1, -1, 1, "x"); return err }},
		{"DialDirect acquire", DialDirect, func(c *Conn) error { _, err := c.Acquire(1, -1, 1, "x"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			select {
			case <-closed: // the request is sent after jsd closed: it fails
			case <-time.After(10 * time.Second):
				t.Fatal("the fake jsd did not answer")
			}
			err = tc.req(c)
			if !IsCode(err, wire.CodeFDLimit) {
				t.Fatalf("got %v, want the fd_limit error", err)
			}
		})
	}
}
