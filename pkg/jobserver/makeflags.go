package jobserver

import (
	"fmt"
	"strconv"
	"strings"
)

// Auth is the jobserver a MAKEFLAGS value names.
type Auth struct {
	// Fifo is the path of a named pipe (make >= 4.4's "fifo:PATH" form).
	Fifo string
	// R and W are inherited descriptors (the "R,W" form); valid when >= 0.
	R, W int
	// Jobs is the -jN value, 0 when absent.
	Jobs int
}

// IsFifo reports whether the auth names a FIFO path.
func (a Auth) IsFifo() bool { return a.Fifo != "" }

// ParseMakeflags finds the jobserver a MAKEFLAGS value names. It knows every
// form make has written: --jobserver-fds=R,W (<= 4.1), --jobserver-auth=R,W
// (4.2, 4.3) and --jobserver-auth=fifo:PATH (>= 4.4). When several appear the
// last one wins, as in make. Negative descriptors (make's "-2,-2" for
// non-recursive children) mean the jobserver is off: ok is false then.
func ParseMakeflags(s string) (a Auth, ok bool) {
	a.R, a.W = -1, -1
	words := strings.Fields(s)
	for _, w := range words {
		if w == "--" {
			break // variable overrides follow
		}
		var v string
		switch {
		case strings.HasPrefix(w, "--jobserver-auth="):
			v = strings.TrimPrefix(w, "--jobserver-auth=")
		case strings.HasPrefix(w, "--jobserver-fds="):
			v = strings.TrimPrefix(w, "--jobserver-fds=")
		case strings.HasPrefix(w, "-j") && len(w) > 2:
			if n, err := strconv.Atoi(w[2:]); err == nil && n > 0 && isDigits(w[2:]) {
				a.Jobs = n
			}
			continue
		default:
			continue
		}
		if path, isFifo := strings.CutPrefix(v, "fifo:"); isFifo {
			a.Fifo, a.R, a.W = path, -1, -1
			ok = path != ""
			continue
		}
		a.Fifo = ""
		r, w2, found := strings.Cut(v, ",")
		ri, err1 := strconv.Atoi(r)
		wi, err2 := strconv.Atoi(w2)
		if !found || err1 != nil || err2 != nil || ri < 0 || wi < 0 {
			a.R, a.W, ok = -1, -1, false
			continue
		}
		a.R, a.W, ok = ri, wi, true
	}
	return a, ok
}

// Style is how a pool is handed to a child in MAKEFLAGS.
type Style string

const (
	// StylePipe passes two inherited descriptors (make 4.3, cargo, rustc, gcc).
	StylePipe Style = "pipe"
	// StyleFifo passes the FIFO's path (ninja, make >= 4.4).
	StyleFifo Style = "fifo"
)

// ParseStyle checks a --jobserver-style value.
func ParseStyle(s string) (Style, error) {
	switch Style(s) {
	case StylePipe, StyleFifo:
		return Style(s), nil
	}
	return "", fmt.Errorf("unknown jobserver style %q (want pipe or fifo)", s)
}

// WithAuth returns old MAKEFLAGS with every -j and jobserver word replaced by
// "-jN --jobserver-auth=AUTH". Single-letter flags and variable overrides
// (after " -- ") are kept. The result never starts with a word holding 'n'
// (make would read it as -n, a dry run).
func WithAuth(old string, jobs int, auth string) string {
	words := strings.Fields(old)
	var flags, vars []string
	for i, w := range words {
		if w == "--" {
			vars = words[i:]
			break
		}
		if strings.HasPrefix(w, "--jobserver-auth=") || strings.HasPrefix(w, "--jobserver-fds=") ||
			w == "-j" || (strings.HasPrefix(w, "-j") && isDigits(w[2:])) {
			continue
		}
		flags = append(flags, w)
	}
	out := make([]string, 0, len(flags)+len(vars)+2)
	// make's first word may be its single-letter flags without a dash ("ks");
	// keep it first so make still reads it that way (only the first word is
	// read that way: a later one must not become first).
	if len(flags) > 0 && flags[0] == words[0] && !strings.HasPrefix(flags[0], "-") && !strings.Contains(flags[0], "=") {
		out = append(out, flags[0])
		flags = flags[1:]
	}
	out = append(out, "-j"+strconv.Itoa(jobs), "--jobserver-auth="+auth)
	out = append(out, flags...)
	out = append(out, vars...)
	s := strings.Join(out, " ")
	if !strings.HasPrefix(s, "-") {
		return s
	}
	return " " + s // make writes a leading space when there are no letter flags
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
