package jsctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/js-toolkit/js/pkg/status"
	"golang.org/x/sys/unix"
)

// watch is 'jsctl status --watch': the status file, shown again each time
// jsd rewrites it. jsd is never asked: the file is read when inotify says it
// changed. SIGINT and SIGTERM end it with status 0.
func (c *StatusCmd) watch(e *env) error {
	fw, err := watchFile(c.statusFile(e))
	if err != nil {
		return err
	}
	defer fw.close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o := e.output(); c.JSON || !o.tty {
		return watchJSON(ctx, e.stdio.Out, fw)
	}
	return watchScreen(ctx, e, fw)
}

// watchJSON prints the status file as one compact JSON line now (when it
// exists) and again each time it changes.
func watchJSON(ctx context.Context, w io.Writer, fw *fileWatch) error {
	var last []byte
	emit := func() error {
		b, err := os.ReadFile(fw.path)
		if err != nil {
			return nil // not there (yet, or any more): nothing to print
		}
		var buf bytes.Buffer
		if json.Compact(&buf, b) != nil || bytes.Equal(buf.Bytes(), last) {
			return nil // not a JSON document (someone else's write), or no change
		}
		last = bytes.Clone(buf.Bytes())
		buf.WriteByte('\n')
		_, err = w.Write(buf.Bytes())
		return err
	}
	for {
		if err := emit(); err != nil {
			return err
		}
		if err := fw.next(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// Terminal control sequences of the live view.
const (
	altScreenOn  = "\x1b[?1049h\x1b[?25l" // alternate screen, cursor hidden
	altScreenOff = "\x1b[?25h\x1b[?1049l"
	home         = "\x1b[H"
	eraseLine    = "\x1b[2K"
	eraseBelow   = "\x1b[J"
)

// watchScreen is the live view on a terminal: the alternate screen,
// redrawn in place when the file changes, every second (for the relative
// times) and when the terminal is resized; q or Ctrl-C ends it and gives the
// terminal back as it was.
func watchScreen(ctx context.Context, e *env, fw *fileWatch) error {
	out := e.stdio.Out
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	keys, restore := keyInput(e.stdio.In)
	defer restore()
	io.WriteString(out, altScreenOn)
	defer io.WriteString(out, altScreenOff)

	var doc *status.Doc
	var asOf time.Time // when jsd wrote it
	var problem string
	load := func() {
		d, err := status.Read(fw.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			doc, problem = nil, fmt.Sprintf("waiting for jsd: %s does not exist yet (start one with 'jsd --dir %s &')", fw.path, e.paths().Dir)
		case err != nil:
			problem = err.Error() // keep showing the last good view
		default:
			doc, problem, asOf = d, "", time.Now()
			if fi, err := os.Stat(fw.path); err == nil {
				asOf = fi.ModTime()
			}
		}
	}
	draw := func() error {
		o := e.output()
		var b bytes.Buffer
		if doc != nil {
			writeStatus(&b, o, aged(doc, time.Since(asOf)), time.Now(), true)
		}
		if problem != "" {
			fmt.Fprintln(&b, fit(o.paint(sgrYellow, clean(problem)), o.width))
		}
		_, err := io.WriteString(out, screen(o, b.String(), "watching "+fw.path+" · q or Ctrl-C to quit"))
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	load()
	for {
		if err := draw(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case k := <-keys:
			if k == 'q' || k == 'Q' {
				return nil
			}
		case ev, ok := <-fw.w.Events:
			if !ok {
				return errors.New("file watch closed")
			}
			ch, err := fw.changed(ev)
			if err != nil {
				return err
			}
			if ch {
				load()
			}
		case _, ok := <-fw.w.Errors:
			if !ok {
				return errors.New("file watch closed")
			}
			// Events were lost (an overflow): look at everything again.
			if err := fw.arm(); err != nil {
				return err
			}
			load()
		case <-tick.C:
		case <-winch:
		}
	}
}

// aged is a document read from the file as it stands now: jsd rewrites the
// file only when something changes, so the waits it counted grew since.
func aged(d *status.Doc, age time.Duration) *status.Doc {
	if age <= 0 || len(d.Queues) == 0 {
		return d
	}
	c := *d
	c.Queues = append([]status.Queue(nil), d.Queues...)
	for i := range c.Queues {
		if c.Queues[i].Queued > 0 {
			c.Queues[i].NextWaitingMS += age.Milliseconds()
		}
	}
	return &c
}

// screen is one frame of the live view: body cut to the terminal's height
// (the last row is the footer), each line erased before it is written so
// nothing of the last frame stays, and the rest of the screen cleared.
func screen(o output, body, footer string) string {
	lines := strings.Split(strings.TrimRight(body, "\n"), "\n")
	if rows := o.height - 1; rows > 0 && len(lines) > rows {
		hidden := len(lines) - rows + 1
		lines = append(lines[:rows-1], o.paint(sgrDim, fmt.Sprintf("… %d more lines (a taller terminal shows them)", hidden)))
	}
	// The footer stays short of the last column: the cursor then never
	// waits to wrap, where erasing would eat the last character.
	lines = append(lines, fit(o.paint(sgrDim, footer), o.width-1))
	var b strings.Builder
	b.WriteString(home)
	for i, l := range lines {
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString(eraseLine)
		b.WriteString(l)
	}
	b.WriteString(eraseBelow)
	return b.String()
}

// keyInput turns off echo and line buffering on a terminal stdin, so single
// keys (q) reach the live view and typing does not scribble on it; Ctrl-C
// still sends SIGINT. restore puts the terminal back. Without a terminal on
// stdin, no key ever comes.
func keyInput(in *os.File) (keys <-chan byte, restore func()) {
	none := func() {}
	if in == nil {
		return nil, none
	}
	fd := int(in.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, none
	}
	// In the background (jsctl status --watch &), touching the terminal
	// would stop us (SIGTTOU, SIGTTIN): leave it alone.
	if fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err != nil || fg != unix.Getpgrp() {
		return nil, none
	}
	raw := *old
	raw.Lflag &^= unix.ECHO | unix.ICANON
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, none
	}
	ch := make(chan byte, 16)
	go func() {
		// Ends with the process: a read of a terminal cannot be cancelled.
		buf := make([]byte, 1)
		for {
			n, err := in.Read(buf)
			if err != nil {
				return
			}
			if n == 1 {
				select {
				case ch <- buf[0]:
				default:
				}
			}
		}
	}()
	return ch, func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}
