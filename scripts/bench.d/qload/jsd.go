package main

// jsd's native protocol: JSON objects, one per line; jsd ends its lines
// with CRLF and accepts LF. A submitter sends
// {"cmd":"do","id":N,"type":Q,"arg":"PAYLOAD"} and gets
// {"cmd":"did","id":N,"res":"PAYLOAD"}; with "req" it first gets a
// {"cmd":"queued",...} ack. A worker sends {"cmd":"can_do","types":[Q]}
// (with "concurrency":C to take C jobs at once), gets "do" lines and answers
// each with "did".

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
)

type jsdSystem struct{}

type jsdConn struct {
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte
	q   string
}

func jsdDial(addr, q string) (*jsdConn, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	return &jsdConn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10), q: q}, nil
}

func (c *jsdConn) Close() error { return c.c.Close() }
func (c *jsdConn) flush() error { return c.w.Flush() }
func jsdUnexpected(who string, l []byte) error {
	return fmt.Errorf("jsd %s: unexpected line %q", who, l)
}

var (
	jsdDo     = []byte(`{"cmd":"do",`)
	jsdDid    = []byte(`{"cmd":"did",`)
	jsdQueued = []byte(`{"cmd":"queued",`)
)

func (jsdSystem) worker(addr, q string, concurrency int, s sink) (closer, error) {
	c, err := jsdDial(addr, q)
	if err != nil {
		return nil, err
	}
	reg := `{"cmd":"can_do","types":[` + strconv.Quote(q) + `]`
	if concurrency > 0 {
		reg += `,"concurrency":` + strconv.Itoa(concurrency)
	}
	if _, err := c.w.WriteString(reg + "}\n"); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		for {
			l, err := readLine(c.r)
			if err != nil {
				s.fail(fmt.Errorf("jsd worker: read: %w", err))
				return
			}
			if !bytes.HasPrefix(l, jsdDo) {
				s.fail(jsdUnexpected("worker", l))
				return
			}
			id, ok1 := field(l, "id")
			arg, ok2 := field(l, "arg")
			if !ok1 || !ok2 {
				s.fail(jsdUnexpected("worker", l))
				return
			}
			c.buf = append(c.buf[:0], `{"cmd":"did","id":`...)
			c.buf = append(c.buf, id...)
			c.buf = append(c.buf, `,"res":"`...)
			c.buf = append(c.buf, arg...)
			c.buf = append(c.buf, "\"}\n"...)
			c.w.Write(c.buf)
			// Answer everything already read in one write.
			if c.r.Buffered() == 0 {
				if err := c.w.Flush(); err != nil {
					s.fail(fmt.Errorf("jsd worker: write: %w", err))
					return
				}
			}
		}
	}()
	return c, nil
}

func (jsdSystem) producer(addr, q string, s sink) (producer, error) {
	c, err := jsdDial(addr, q)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			l, err := readLine(c.r)
			if err != nil {
				s.fail(fmt.Errorf("jsd producer: read: %w", err))
				return
			}
			if !bytes.HasPrefix(l, jsdDid) {
				s.fail(jsdUnexpected("producer", l))
				return
			}
			idb, ok1 := field(l, "id")
			res, ok2 := field(l, "res")
			id, ok3 := parseUint(idb)
			if !ok1 || !ok2 || !ok3 {
				s.fail(jsdUnexpected("producer", l))
				return
			}
			s.result(id, res)
		}
	}()
	return c, nil
}

func (c *jsdConn) submit(id uint64, payload []byte) error {
	c.buf = append(c.buf[:0], `{"cmd":"do","id":`...)
	c.buf = strconv.AppendUint(c.buf, id, 10)
	c.buf = append(c.buf, `,"type":"`...)
	c.buf = append(c.buf, c.q...)
	c.buf = append(c.buf, `","arg":"`...)
	c.buf = append(c.buf, payload...)
	c.buf = append(c.buf, "\"}\n"...)
	_, err := c.w.Write(c.buf)
	return err
}

// jsdFill submits with "req" (no id: jsd assigns one) and counts the
// "queued" acks, which come in the order of the submissions.
type jsdFill struct{ *jsdConn }

func jsdFiller(addr, q string, ack func(uint64), t *tracker) (filler, error) {
	c, err := jsdDial(addr, q)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			l, err := readLine(c.r)
			if err != nil {
				t.fail(fmt.Errorf("jsd: read: %w", err))
				return
			}
			req, ok := field(l, "req")
			seq, ok2 := parseUint(req)
			if !bytes.HasPrefix(l, jsdQueued) || !ok || !ok2 {
				t.fail(jsdUnexpected("submitter", l))
				return
			}
			ack(seq)
		}
	}()
	return jsdFill{c}, nil
}

func (c jsdFill) submit(seq uint64, payload []byte) error {
	c.buf = append(c.buf[:0], `{"cmd":"do","type":"`...)
	c.buf = append(c.buf, c.q...)
	c.buf = append(c.buf, `","arg":"`...)
	c.buf = append(c.buf, payload...)
	c.buf = append(c.buf, `","req":`...)
	c.buf = strconv.AppendUint(c.buf, seq, 10)
	c.buf = append(c.buf, "}\n"...)
	_, err := c.w.Write(c.buf)
	return err
}
