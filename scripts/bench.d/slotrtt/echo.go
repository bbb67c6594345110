package main

// The floor of W6 in the same run: the same two line exchanges (a request
// line out, a reply line back, twice) with another Go process that only
// echoes each line on a unix socket. What a slot round trip through any
// daemon costs on this machine before the daemon does anything: two
// wake-ups of another process each way.

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// echoServe is `slotrtt -echo-server PATH`: echo each line of each
// connection on the unix socket PATH until killed.
func echoServe(path string) error {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				l, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				if _, err := c.Write(l); err != nil {
					return
				}
			}
		}()
	}
}

// echoFloor starts `slotrtt -echo-server` in a temporary directory and
// measures two exchanges with it per round trip.
func echoFloor(n, warmup int, limit time.Duration) ([]float64, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "slotrtt-echo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "echo.sock")
	cmd := exec.Command(self, "-echo-server", sock)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var c *client
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err = dial(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("echo server: not accepting after 10 s: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer c.close()
	line := acquireLine
	exchange := func() error {
		if _, err := c.conn.Write(line); err != nil {
			return err
		}
		reply, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(reply) != len(line) {
			return errors.New("echo server: a reply that is not the line sent")
		}
		return nil
	}
	return measure(n, warmup, limit, func() error {
		if err := exchange(); err != nil {
			return err
		}
		return exchange()
	})
}
