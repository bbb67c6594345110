package jsctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/status"
)

// WaitReadyCmd waits until jsd's status file says it serves.
type WaitReadyCmd struct {
	StatusFile string  `help:"The status file to watch (default: DIR/status.json). Neither it nor its directory need exist yet." placeholder:"PATH"`
	Timeout    float64 `help:"Give up after this many seconds (exit 75; default 30); 0: wait as long as it takes." default:"30" placeholder:"SECONDS"`
	JSON       bool    `help:"Once ready, print the status file's document as JSON."`
}

// readiness is what a status file says about its jsd.
type readiness int

const (
	notThere readiness = iota // no file (yet)
	unreadable
	notYet // starting, stopping or stopped
	ready
	dead // says running, but its pid is gone
	failed
)

// Run implements the command: 0 as soon as the file says running and its
// pid is alive, 1 when it says failed (with its error), 75 on timeout.
// inotify wakes it: nothing is polled.
func (c *WaitReadyCmd) Run(e *env) error {
	if c.Timeout < 0 {
		return cmdline.Errorf(ExitUsage, "give a number of seconds > 0, or 0 to wait as long as it takes", "--timeout %v must not be negative", c.Timeout)
	}
	path := c.StatusFile
	if path == "" {
		path = e.paths().Status
	}
	// Watch first, then look: a change between the two is not lost.
	fw, err := watchFile(path)
	if err != nil {
		return err
	}
	defer fw.close()
	ctx := context.Background()
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.Timeout*float64(time.Second)))
		defer cancel()
	}
	for {
		r, doc, raw, err := readReadiness(path)
		switch r {
		case ready:
			if c.JSON {
				var b bytes.Buffer
				if json.Indent(&b, raw, "", "  ") == nil {
					fmt.Fprintln(e.stdio.Out, b.String())
				}
			}
			return nil
		case failed:
			return cmdline.WithHint(fmt.Errorf("jsd failed: %s", orDash(clean(doc.Error))), ExitFailed,
				fmt.Sprintf("that is what %s says; fix it and start jsd again", path))
		}
		if werr := fw.next(ctx); werr != nil {
			if ctx.Err() == nil {
				return werr
			}
			return c.timeout(path, r, doc, err)
		}
	}
}

// timeout explains why jsd was not ready, from what the file said last.
func (c *WaitReadyCmd) timeout(path string, r readiness, doc *status.Doc, readErr error) error {
	after := fmt.Sprintf("jsd not ready after %vs", c.Timeout)
	start := "start one with 'jsd --dir DIR &' (DIR holding the status file), or point --status-file at the file it writes"
	switch r {
	case notThere:
		return cmdline.WithHint(fmt.Errorf("%s: %s does not exist", after, path), ExitTimeout, start)
	case unreadable:
		return cmdline.WithHint(fmt.Errorf("%s: %v", after, readErr), ExitTimeout, "the file is not a jsd status document")
	case dead:
		return cmdline.WithHint(fmt.Errorf("%s: %s says running, but pid %d is dead", after, path, doc.PID), ExitTimeout,
			"that jsd died without cleaning up (killed with SIGKILL?); "+start)
	}
	if doc.Status == status.Stopping || doc.Status == status.Stopped {
		return cmdline.WithHint(fmt.Errorf("%s: the status file says %s", after, doc.Status), ExitTimeout,
			"that jsd stopped; "+start)
	}
	return cmdline.WithHint(fmt.Errorf("%s: the status file says %q", after, doc.Status), ExitTimeout,
		"jsd is slow to start, or a launcher wrote the file and no jsd took it over; see jsd's stderr")
}

// readReadiness reads the status file and says how ready its jsd is.
func readReadiness(path string) (readiness, *status.Doc, []byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return notThere, nil, nil, err
	}
	if err != nil {
		return unreadable, nil, nil, err
	}
	doc, err := status.Parse(raw, path)
	if err != nil {
		return unreadable, nil, raw, err
	}
	switch doc.Status {
	case status.Failed:
		return failed, doc, raw, nil
	case status.Running:
		if !procAlive(doc.PID, doc.StartedAt) {
			return dead, doc, raw, nil
		}
		return ready, doc, raw, nil
	}
	return notYet, doc, raw, nil
}
