package main

// relay is W3's floor: the least any broker between a producer and its
// workers can do. It speaks only the part of jsd's native protocol qload
// uses, without parsing it: a line starting {"cmd":"can_do", marks its
// connection a worker; a {"cmd":"do", line goes as it is to the next
// worker (round robin; it waits for the first can_do); a {"cmd":"did", line goes as it is to the last
// connection that sent a "do". No queue, no ids, no JSON: a round trip
// through it is the four cross-process hops of one through jsd
// (producer -> server -> worker -> server -> producer) and nothing else.
// One goroutine per connection; writes straight to the socket.
//
//	qload relay -listen ADDR     (ADDR: host:port on loopback, or unix:PATH)
//
// `qload lat -system jsd -addr ADDR` measures it.

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
)

var relayCanDo = []byte(`{"cmd":"can_do",`)

type relayConn struct {
	c  net.Conn
	mu sync.Mutex // one line at a time
}

func (r *relayConn) write(l []byte) {
	r.mu.Lock()
	r.c.Write(l)
	r.mu.Unlock()
}

type relayState struct {
	mu       sync.Mutex
	joined   *sync.Cond // a worker registered
	workers  []*relayConn
	next     int
	producer *relayConn
}

func relay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	addr := fs.String("listen", "", "host:port (loopback) or unix:PATH")
	fs.Parse(args)
	var ln net.Listener
	var err error
	if p, ok := strings.CutPrefix(*addr, "unix:"); ok {
		ln, err = net.Listen("unix", p)
	} else if host, _, e := net.SplitHostPort(*addr); e != nil {
		return e
	} else if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: only loopback addresses here", *addr)
	} else {
		ln, err = net.Listen("tcp", *addr)
	}
	if err != nil {
		return err
	}
	st := &relayState{}
	st.joined = sync.NewCond(&st.mu)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			fmt.Fprintf(os.Stderr, "qload relay: accept: %v\n", err)
			continue
		}
		go st.serve(&relayConn{c: c})
	}
}

func (st *relayState) serve(rc *relayConn) {
	defer rc.c.Close()
	r := bufio.NewReaderSize(rc.c, 64<<10)
	for {
		l, err := r.ReadSlice('\n')
		if err != nil {
			st.drop(rc)
			return
		}
		switch {
		case bytes.HasPrefix(l, jsdDo):
			// A worker's can_do may still be on its way: wait for one
			// (qload connects the workers first; its watchdog bounds a
			// run that never gets one).
			st.mu.Lock()
			st.producer = rc
			for len(st.workers) == 0 {
				st.joined.Wait()
			}
			w := st.workers[st.next%len(st.workers)]
			st.next++
			st.mu.Unlock()
			w.write(l)
		case bytes.HasPrefix(l, jsdDid):
			st.mu.Lock()
			p := st.producer
			st.mu.Unlock()
			if p != nil {
				p.write(l)
			}
		case bytes.HasPrefix(l, relayCanDo):
			st.mu.Lock()
			st.workers = append(st.workers, rc)
			st.joined.Broadcast()
			st.mu.Unlock()
		}
	}
}

func (st *relayState) drop(rc *relayConn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, w := range st.workers {
		if w == rc {
			st.workers = append(st.workers[:i], st.workers[i+1:]...)
			break
		}
	}
	if st.producer == rc {
		st.producer = nil
	}
}
