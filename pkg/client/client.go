// Package client talks to jsd over its unix socket with the native protocol.
// It is what jsrun, jsctl and jsworker use; docs/protocol.md is the contract.
package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/wire"
)

// Error is an error reply from jsd.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message + " (" + e.Code + ")" }

// IsCode reports whether err is an error reply with that code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// ErrNoDaemon wraps dial failures: nothing listens on the socket.
var ErrNoDaemon = errors.New("no jsd is running there")

// Conn is one connection to jsd, used by one goroutine at a time.
type Conn struct {
	nc Transport
	lr *wire.LineReader
}

// Transport is the byte stream under a Conn: a net.Conn (TCP, see
// NewConn), an *os.File in Go's poller (Dial) or a plain blocking
// descriptor (DialDirect).
type Transport interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
}

// Dial connects to jsd's unix socket. The connection is in Go's network
// poller: a Read blocked in one goroutine ends when another closes it.
// (The package does not import net: jsrun, which starts once per command,
// would pay for its initialisation every time.)
func Dial(socket string) (*Conn, error) {
	fd, err := dialUnixFD(socket, true)
	if err != nil {
		return nil, dialError(socket, err)
	}
	return newConn(os.NewFile(uintptr(fd), socket)), nil
}

// NewConn speaks the native protocol over an open stream, such as a TCP
// connection to jsd's port (jsworker --connect). With a token, it is
// presented first; a refused one closes the stream and is the error.
func NewConn(t Transport, token string) (*Conn, error) {
	c := newConn(t)
	if token != "" {
		if _, err := c.call(&wire.Msg{Cmd: wire.CmdAuth, Token: token}); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func newConn(nc Transport) *Conn {
	return &Conn{nc: nc, lr: wire.NewLineReader(nc, wire.MaxLine)}
}

// dialError names what a failed dial of jsd's socket means.
func dialError(socket string, err error) error {
	if errors.Is(err, os.ErrNotExist) || isConnRefused(err) {
		return fmt.Errorf("%w (socket %s)", ErrNoDaemon, socket)
	}
	return fmt.Errorf("connect to jsd at %s: %w", socket, err)
}

var errDeadline = os.ErrDeadlineExceeded

// SetReadDeadline bounds the next reads.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// Close closes the connection; jsd ends whatever it held.
func (c *Conn) Close() error { return c.nc.Close() }

// File returns a duplicate of the connection's descriptor (to keep a lease
// alive in a process that outlives this one).
func (c *Conn) File() (*os.File, error) {
	switch t := c.nc.(type) {
	case *fdConn:
		return dupFile(t.fd, t.path)
	case *os.File:
		// Not t.Fd(): it would turn the descriptor blocking under the poller.
		rc, err := t.SyscallConn()
		if err != nil {
			return nil, err
		}
		var f *os.File
		if cerr := rc.Control(func(fd uintptr) { f, err = dupFile(int(fd), t.Name()) }); cerr != nil {
			return nil, cerr
		}
		return f, err
	case interface{ File() (*os.File, error) }: // a *net.UnixConn or *net.TCPConn
		return t.File()
	}
	return nil, fmt.Errorf("a %T has no descriptor", c.nc)
}

// dupFile returns a close-on-exec duplicate of fd.
func dupFile(fd int, name string) (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("dup", err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// Call sends a request and returns its reply (an error reply as *Error).
func (c *Conn) Call(m *wire.Msg) (*wire.Msg, error) { return c.call(m) }

// Send writes one message.
func (c *Conn) Send(m *wire.Msg) error {
	if b, ok := wire.AppendMsg(nil, m); ok {
		return c.sendLine(b)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.sendLine(b)
}

// sendLine writes one encoded message with its CRLF in one write.
func (c *Conn) sendLine(b []byte) error {
	_, err := c.nc.Write(append(b, wire.CRLF...))
	return err
}

// Recv reads one message.
func (c *Conn) Recv() (*wire.Msg, error) {
	line, err := c.lr.Next()
	if err != nil {
		return nil, fmt.Errorf("connection to jsd lost: %w", err)
	}
	m, err := decodeMsg(line)
	if err != nil {
		return nil, fmt.Errorf("bad reply from jsd: %w", err)
	}
	return m, nil
}

// call sends a request and returns the reply, or the error reply as *Error.
func (c *Conn) call(m *wire.Msg) (*wire.Msg, error) {
	if err := c.Send(m); err != nil {
		return nil, c.sendFailed(fmt.Errorf("send to jsd: %w", err))
	}
	r, err := c.Recv()
	if err != nil {
		return nil, err
	}
	if r.Cmd == wire.CmdError {
		return nil, &Error{Code: r.Code, Message: r.Message}
	}
	return r, nil
}

// sendFailed is the error of a request whose send failed. When jsd closed
// the connection (EPIPE, ECONNRESET), it may have said why first, without
// waiting for the request (fd_limit: it refuses connections at its
// open-file limit): that error reply, already in our receive buffer, is
// the error then. Only for a connection no other goroutine reads.
func (c *Conn) sendFailed(err error) error {
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		return err
	}
	// What jsd wrote before it closed is there at once; the deadline only
	// guards against a peer that is not jsd.
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	line, rerr := c.lr.Next()
	c.nc.SetReadDeadline(time.Time{})
	if rerr != nil {
		return err
	}
	if m, derr := decodeMsg(line); derr == nil && m.Cmd == wire.CmdError {
		return &Error{Code: m.Code, Message: m.Message}
	}
	return err
}

// Lease is a granted slot lease.
type Lease struct {
	ID    uint64
	Slots int
	Fifo  string // the pool's FIFO
	Total int    // the pool's size
}

// Acquire waits for k slots. timeout < 0 waits forever; 0 does not wait.
func (c *Conn) Acquire(k int, timeout time.Duration, pid int, command string) (*Lease, error) {
	if err := c.SendAcquire(k, timeout, pid, command); err != nil {
		return nil, err
	}
	return c.AwaitLease(time.Time{})
}

// SendAcquire asks for k slots without waiting for the answer.
func (c *Conn) SendAcquire(k int, timeout time.Duration, pid int, command string) error {
	if err := c.sendLine(appendAcquire(make([]byte, 0, 128+len(command)), k, timeout, pid, command)); err != nil {
		return c.sendFailed(err)
	}
	return nil
}

// ErrNotYet is returned by AwaitLease when its deadline passes first; the
// request stays queued in jsd.
var ErrNotYet = errors.New("no answer yet")

// AwaitLease waits for the answer to SendAcquire until deadline (zero:
// forever).
func (c *Conn) AwaitLease(deadline time.Time) (*Lease, error) {
	c.nc.SetReadDeadline(deadline)
	r, err := c.Recv()
	c.nc.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, ErrNotYet
		}
		return nil, err
	}
	if r.Cmd == wire.CmdError {
		return nil, &Error{Code: r.Code, Message: r.Message}
	}
	if r.Cmd != wire.CmdLease {
		return nil, fmt.Errorf("unexpected reply %q to acquire", r.Cmd)
	}
	return &Lease{ID: r.Lease, Slots: r.Slots, Fifo: r.Fifo, Total: r.Total}, nil
}

// Started tells jsd which process group runs on a lease.
func (c *Conn) Started(lease uint64, pid int, command string) error {
	return c.sendLine(appendStarted(make([]byte, 0, 128+len(command)), lease, pid, command))
}

// SendRelease gives a lease back without waiting for jsd's "released":
// jsd handles a connection's messages in order, so what follows on this
// connection (or its close) comes after the release.
func (c *Conn) SendRelease(lease uint64) error {
	return c.sendLine(appendRelease(make([]byte, 0, 64), lease))
}

// Release gives a lease back.
func (c *Conn) Release(lease uint64) error {
	_, err := c.call(&wire.Msg{Cmd: wire.CmdRelease, Lease: lease})
	return err
}

// Status fetches the status document.
func (c *Conn) Status() (*status.Doc, json.RawMessage, error) {
	r, err := c.call(&wire.Msg{Cmd: wire.CmdStatus})
	if err != nil {
		return nil, nil, err
	}
	var d status.Doc
	if err := json.Unmarshal(r.Status, &d); err != nil {
		return nil, nil, fmt.Errorf("bad status from jsd: %w", err)
	}
	return &d, r.Status, nil
}

// Shutdown asks jsd to stop: it grants nothing new and exits once the leases
// held now are released.
func (c *Conn) Shutdown(drain bool) error {
	_, err := c.call(&wire.Msg{Cmd: wire.CmdShutdown, Drain: drain})
	return err
}
