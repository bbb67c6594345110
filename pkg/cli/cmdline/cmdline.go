// Package cmdline is what the four binaries share about the command line:
// their standard streams, and errors shown as "TOOL: error: ..." with an
// optional "TOOL: hint: ..." line and an exit code. (Parsing with kong is
// pkg/cli/kongparse: jsrun parses its own and must not link kong.)
package cmdline

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Stdio are a tool's standard streams.
type Stdio struct {
	In       *os.File
	Out, Err io.Writer
}

// OS are the process's own streams.
func OS() Stdio { return Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

// Error is an error with a hint on how to fix it and the exit code to use.
type Error struct {
	Err  error
	Hint string
	Code int
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an *Error with an exit code and a hint ("" for none).
func Errorf(code int, hint, format string, args ...any) *Error {
	return &Error{Err: fmt.Errorf(format, args...), Hint: hint, Code: code}
}

// WithHint wraps err with an exit code and a hint.
func WithHint(err error, code int, hint string) *Error {
	return &Error{Err: err, Hint: hint, Code: code}
}

// Report prints err as "TOOL: error: ..." (plus the hint) and returns its
// exit code (fallback when err carries none).
func Report(stderr io.Writer, tool string, err error, fallback int) int {
	fmt.Fprintf(stderr, "%s: error: %v\n", tool, err)
	var e *Error
	if errors.As(err, &e) {
		if e.Hint != "" {
			fmt.Fprintf(stderr, "%s: hint: %s\n", tool, e.Hint)
		}
		if e.Code != 0 {
			return e.Code
		}
	}
	return fallback
}
