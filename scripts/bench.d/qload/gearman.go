package main

// gearmand's binary protocol (PROTOCOL in gearmand's source): a packet is
// "\0REQ" (to the server) or "\0RES" (from it), a 4-byte big-endian type, a
// 4-byte big-endian size, then the arguments separated by NUL bytes.
//
// The producer submits foreground jobs (SUBMIT_JOB function, unique, data;
// JOB_CREATED handle comes back, then WORK_COMPLETE handle, data). A worker
// says CAN_DO, then GRAB_JOB; on NO_JOB it sends PRE_SLEEP and waits for a
// NOOP; on JOB_ASSIGN (handle, function, data) it answers WORK_COMPLETE and
// grabs the next job in the same write.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
)

const (
	gmCanDo        = 1
	gmPreSleep     = 4
	gmNoop         = 6
	gmSubmitJob    = 7
	gmJobCreated   = 8
	gmGrabJob      = 9
	gmNoJob        = 10
	gmJobAssign    = 11
	gmWorkComplete = 13
	gmSubmitJobBG  = 18
	gmError        = 19
)

type gearmanSystem struct{}

type gmConn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	rbuf []byte
	num  []byte
}

func gmDial(addr string) (*gmConn, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	return &gmConn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}, nil
}

func (c *gmConn) Close() error { return c.c.Close() }
func (c *gmConn) flush() error { return c.w.Flush() }

// send buffers one request packet.
func (c *gmConn) send(typ uint32, args ...[]byte) {
	size := 0
	for i, a := range args {
		if i > 0 {
			size++
		}
		size += len(a)
	}
	var h [12]byte
	copy(h[:4], "\x00REQ")
	binary.BigEndian.PutUint32(h[4:8], typ)
	binary.BigEndian.PutUint32(h[8:12], uint32(size))
	c.w.Write(h[:])
	for i, a := range args {
		if i > 0 {
			c.w.WriteByte(0)
		}
		c.w.Write(a)
	}
}

// recv reads one response packet; data is valid until the next recv.
func (c *gmConn) recv() (uint32, []byte, error) {
	var h [12]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	if string(h[:4]) != "\x00RES" {
		return 0, nil, fmt.Errorf("gearmand: bad magic %q", h[:4])
	}
	typ := binary.BigEndian.Uint32(h[4:8])
	n := binary.BigEndian.Uint32(h[8:12])
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("gearmand: packet of %d bytes", n)
	}
	if cap(c.rbuf) < int(n) {
		c.rbuf = make([]byte, n)
	}
	data := c.rbuf[:n]
	if _, err := io.ReadFull(c.r, data); err != nil {
		return 0, nil, err
	}
	if typ == gmError {
		return 0, nil, fmt.Errorf("gearmand: ERROR %q", bytes.ReplaceAll(data, []byte{0}, []byte{' '}))
	}
	return typ, data, nil
}

func (gearmanSystem) worker(addr, q string, _ int, s sink) (closer, error) {
	c, err := gmDial(addr)
	if err != nil {
		return nil, err
	}
	c.send(gmCanDo, []byte(q))
	c.send(gmGrabJob)
	if err := c.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		sleeping := false
		for {
			typ, data, err := c.recv()
			if err != nil {
				s.fail(fmt.Errorf("gearmand worker: %w", err))
				return
			}
			switch typ {
			case gmNoJob:
				c.send(gmPreSleep)
				sleeping = true
			case gmNoop:
				if !sleeping {
					continue
				}
				sleeping = false
				c.send(gmGrabJob)
			case gmJobAssign:
				parts := bytes.SplitN(data, []byte{0}, 3)
				if len(parts) != 3 {
					s.fail(fmt.Errorf("gearmand worker: JOB_ASSIGN %q", data))
					return
				}
				c.send(gmWorkComplete, parts[0], parts[2])
				c.send(gmGrabJob)
			default:
				s.fail(fmt.Errorf("gearmand worker: unexpected packet type %d", typ))
				return
			}
			if err := c.w.Flush(); err != nil {
				s.fail(fmt.Errorf("gearmand worker: write: %w", err))
				return
			}
		}
	}()
	return c, nil
}

type gmProducer struct {
	*gmConn
	q    []byte
	corr *correlator
}

func (gearmanSystem) producer(addr, q string, s sink) (producer, error) {
	c, err := gmDial(addr)
	if err != nil {
		return nil, err
	}
	p := &gmProducer{gmConn: c, q: []byte(q), corr: newCorrelator(s)}
	go func() {
		for {
			typ, data, err := c.recv()
			if err != nil {
				s.fail(fmt.Errorf("gearmand producer: %w", err))
				return
			}
			switch typ {
			case gmJobCreated:
				p.corr.created(data)
			case gmWorkComplete:
				h, payload, ok := bytes.Cut(data, []byte{0})
				if !ok {
					s.fail(fmt.Errorf("gearmand producer: WORK_COMPLETE %q", data))
					return
				}
				p.corr.completed(h, payload)
			default:
				s.fail(fmt.Errorf("gearmand producer: unexpected packet type %d (%q)", typ, data))
				return
			}
		}
	}()
	return p, nil
}

// submit: the unique id is the job's id (distinct, so nothing coalesces).
func (p *gmProducer) submit(id uint64, payload []byte) error {
	p.corr.sent(id)
	p.num = strconv.AppendUint(p.num[:0], id, 10)
	p.send(gmSubmitJob, p.q, p.num, payload)
	return nil
}

// gmFill submits background jobs to a function nobody serves and counts
// JOB_CREATED.
type gmFill struct {
	*gmConn
	q []byte
}

func gearmanFiller(addr, q string, ack func(uint64), t *tracker) (filler, error) {
	c, err := gmDial(addr)
	if err != nil {
		return nil, err
	}
	go func() {
		var seq uint64
		for {
			typ, _, err := c.recv()
			if err != nil {
				t.fail(fmt.Errorf("gearmand: %w", err))
				return
			}
			if typ != gmJobCreated {
				t.fail(fmt.Errorf("gearmand: unexpected packet type %d", typ))
				return
			}
			seq++
			ack(seq)
		}
	}()
	return gmFill{c, []byte(q)}, nil
}

func (c gmFill) submit(seq uint64, payload []byte) error {
	c.num = strconv.AppendUint(c.num[:0], seq, 10)
	c.send(gmSubmitJobBG, c.q, c.num, payload)
	return nil
}
