package jsctl

import (
	"os"

	"github.com/mattn/go-isatty"
	"golang.org/x/sys/unix"
)

// output is how this run of jsctl may write to stdout: colour only when
// stdout is a terminal and NO_COLOR is not set (or --color says so), lines
// cut to the terminal's width only on a terminal (a pipe gets them whole).
type output struct {
	tty    bool // stdout is a terminal
	color  bool
	width  int // columns a line may take; 0: no limit
	height int // rows of the terminal; 0: not a terminal
}

// fdWriter is an output stream with a file descriptor (an *os.File).
type fdWriter interface{ Fd() uintptr }

// output looks at stdout now (the terminal may have been resized).
func (e *env) output() output {
	var o output
	f, ok := e.stdio.Out.(fdWriter)
	if ok && isatty.IsTerminal(f.Fd()) {
		o.tty = true
		o.width, o.height = 80, 24
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			o.width = int(ws.Col)
			if ws.Row > 0 {
				o.height = int(ws.Row)
			}
		}
	}
	switch e.g.Color {
	case "always":
		o.color = true
	case "never":
	default:
		// no-color.org: set to anything but the empty string.
		o.color = o.tty && os.Getenv("NO_COLOR") == ""
	}
	return o
}

// SGR sequences jsctl uses.
const (
	sgrReset   = "\x1b[0m"
	sgrBold    = "\x1b[1m"
	sgrDim     = "\x1b[2m"
	sgrRed     = "\x1b[31m"
	sgrGreen   = "\x1b[32m"
	sgrYellow  = "\x1b[33m"
	sgrMagenta = "\x1b[35m"
)

// paint wraps s in an SGR sequence when colour is on.
func (o output) paint(sgr, s string) string {
	if !o.color || sgr == "" || s == "" {
		return s
	}
	return sgr + s + sgrReset
}

// stateColor is the colour of a job's or jsd's state: running green,
// failed red, queued (and jsd starting or stopping) yellow, lost and
// cancelled magenta.
func stateColor(state string) string {
	switch state {
	case "running":
		return sgrGreen
	case "failed":
		return sgrRed
	case "queued", "starting", "stopping":
		return sgrYellow
	case "lost", "cancelled":
		return sgrMagenta
	case "stopped":
		return sgrDim
	}
	return ""
}
