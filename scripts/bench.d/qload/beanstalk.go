package main

// beanstalkd's text protocol (doc/protocol.txt in its source):
//
//	use TUBE            -> USING TUBE
//	watch TUBE          -> WATCHING N;  ignore TUBE -> WATCHING N
//	put PRI DELAY TTR BYTES\r\nBODY\r\n -> INSERTED ID
//	reserve             -> RESERVED ID BYTES\r\nBODY\r\n (blocks)
//	delete ID           -> DELETED
//
// The producer puts each 16-byte payload into the jobs tube on one
// connection and reserves the replies from its own reply tube on a second
// one (a reserve blocks its connection). A worker reserves a job, puts
// "ID PAYLOAD" into the reply tube, deletes the job and reserves the next,
// those three in one write.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
)

type beanstalkSystem struct{}

type bsConn struct {
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte
}

func bsDial(addr string) (*bsConn, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	return &bsConn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}, nil
}

func (c *bsConn) Close() error { return c.c.Close() }
func (c *bsConn) flush() error { return c.w.Flush() }

// setup sends commands and checks each reply's first word.
func (c *bsConn) setup(cmds ...string) error {
	for _, cmd := range cmds {
		c.w.WriteString(cmd + "\r\n")
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	for _, cmd := range cmds {
		l, err := readLine(c.r)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		want := "USING"
		if cmd[0] != 'u' {
			want = "WATCHING"
		}
		if !bytes.HasPrefix(l, []byte(want+" ")) {
			return fmt.Errorf("%s: %q", cmd, l)
		}
	}
	return nil
}

// reserved parses "RESERVED ID BYTES" and reads the body (valid until the
// next read).
func (c *bsConn) reserved(l []byte) (id []byte, body []byte, err error) {
	f := bytes.Fields(l)
	if len(f) != 3 || string(f[0]) != "RESERVED" {
		return nil, nil, fmt.Errorf("beanstalkd: unexpected %q", l)
	}
	n, ok := parseUint(f[2])
	if !ok || n > 1<<20 {
		return nil, nil, fmt.Errorf("beanstalkd: bad size in %q", l)
	}
	id = append(c.buf[:0], f[1]...) // f[1] points into the reader's buffer
	c.buf = id
	body = make([]byte, n+2)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, nil, err
	}
	if body[n] != '\r' || body[n+1] != '\n' {
		return nil, nil, fmt.Errorf("beanstalkd: body of job %s not ended by CRLF", id)
	}
	return id, body[:n], nil
}

func (c *bsConn) put(body ...[]byte) {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	c.w.WriteString("put 1024 0 60 ")
	var nb [20]byte
	c.w.Write(strconv.AppendInt(nb[:0], int64(n), 10))
	c.w.WriteString("\r\n")
	for _, b := range body {
		c.w.Write(b)
	}
	c.w.WriteString("\r\n")
}

func (beanstalkSystem) worker(addr, q string, _ int, s sink) (closer, error) {
	c, err := bsDial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.setup("watch "+q, "ignore default", "use "+q+"-reply"); err != nil {
		c.Close()
		return nil, fmt.Errorf("beanstalkd worker: %w", err)
	}
	c.w.WriteString("reserve\r\n")
	if err := c.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		space := []byte{' '}
		for {
			l, err := readLine(c.r)
			if err != nil {
				s.fail(fmt.Errorf("beanstalkd worker: read: %w", err))
				return
			}
			switch {
			case bytes.HasPrefix(l, []byte("INSERTED ")), bytes.Equal(l, []byte("DELETED")):
				continue
			case bytes.HasPrefix(l, []byte("RESERVED ")):
			default:
				s.fail(fmt.Errorf("beanstalkd worker: unexpected %q", l))
				return
			}
			id, body, err := c.reserved(l)
			if err != nil {
				s.fail(fmt.Errorf("beanstalkd worker: %w", err))
				return
			}
			c.put(id, space, body)
			c.w.WriteString("delete ")
			c.w.Write(id)
			c.w.WriteString("\r\nreserve\r\n")
			if err := c.w.Flush(); err != nil {
				s.fail(fmt.Errorf("beanstalkd worker: write: %w", err))
				return
			}
		}
	}()
	return c, nil
}

type bsProducer struct {
	put, rep *bsConn
	corr     *correlator
}

func (beanstalkSystem) producer(addr, q string, s sink) (producer, error) {
	p := &bsProducer{corr: newCorrelator(s)}
	var err error
	if p.put, err = bsDial(addr); err != nil {
		return nil, err
	}
	if p.rep, err = bsDial(addr); err != nil {
		p.put.Close()
		return nil, err
	}
	if err := p.put.setup("use " + q); err != nil {
		p.Close()
		return nil, fmt.Errorf("beanstalkd producer: %w", err)
	}
	if err := p.rep.setup("watch "+q+"-reply", "ignore default"); err != nil {
		p.Close()
		return nil, fmt.Errorf("beanstalkd producer: %w", err)
	}
	p.rep.w.WriteString("reserve\r\n")
	if err := p.rep.w.Flush(); err != nil {
		p.Close()
		return nil, err
	}
	// INSERTED replies, in submission order.
	go func() {
		for {
			l, err := readLine(p.put.r)
			if err != nil {
				s.fail(fmt.Errorf("beanstalkd producer: read: %w", err))
				return
			}
			h, ok := bytes.CutPrefix(l, []byte("INSERTED "))
			if !ok {
				s.fail(fmt.Errorf("beanstalkd producer: put: %q", l))
				return
			}
			p.corr.created(h)
		}
	}()
	// The replies: "JOBID PAYLOAD" from the reply tube, each deleted.
	go func() {
		c := p.rep
		for {
			l, err := readLine(c.r)
			if err != nil {
				s.fail(fmt.Errorf("beanstalkd producer: read replies: %w", err))
				return
			}
			if bytes.Equal(l, []byte("DELETED")) {
				continue
			}
			id, body, err := c.reserved(l)
			if err != nil {
				s.fail(fmt.Errorf("beanstalkd producer: %w", err))
				return
			}
			c.w.WriteString("delete ")
			c.w.Write(id)
			c.w.WriteString("\r\nreserve\r\n")
			if err := c.w.Flush(); err != nil {
				s.fail(fmt.Errorf("beanstalkd producer: write: %w", err))
				return
			}
			h, payload, ok := bytes.Cut(body, []byte{' '})
			if !ok {
				s.fail(fmt.Errorf("beanstalkd producer: reply %q", body))
				return
			}
			p.corr.completed(h, payload)
		}
	}()
	return p, nil
}

func (p *bsProducer) submit(id uint64, payload []byte) error {
	p.corr.sent(id)
	p.put.put(payload)
	return nil
}

func (p *bsProducer) flush() error { return p.put.w.Flush() }

func (p *bsProducer) Close() error {
	p.put.Close()
	return p.rep.Close()
}

// bsFill puts into a tube nobody watches and counts INSERTED.
type bsFill struct{ *bsConn }

func beanstalkFiller(addr, q string, ack func(uint64), t *tracker) (filler, error) {
	c, err := bsDial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.setup("use " + q); err != nil {
		c.Close()
		return nil, fmt.Errorf("beanstalkd: %w", err)
	}
	go func() {
		var seq uint64
		for {
			l, err := readLine(c.r)
			if err != nil {
				t.fail(fmt.Errorf("beanstalkd: read: %w", err))
				return
			}
			if !bytes.HasPrefix(l, []byte("INSERTED ")) {
				t.fail(fmt.Errorf("beanstalkd: put: %q", l))
				return
			}
			seq++
			ack(seq)
		}
	}()
	return bsFill{c}, nil
}

func (c bsFill) submit(_ uint64, payload []byte) error {
	c.put(payload)
	return nil
}
