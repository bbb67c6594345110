// Package outcome is how jsrun --type and jsctl wait show a job's end: its
// output on stdout/stderr, and the exit status they return for it.
package outcome

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"

	"github.com/js-toolkit/js/pkg/client"
	"github.com/js-toolkit/js/pkg/worker"
)

// Exit statuses for outcomes that have none of their own.
const (
	ExitFailed    = 1  // a handler job failed without an exit status
	ExitTimeout   = 75 // it did not end in time
	ExitLost      = 76 // its worker died and its retries are spent
	ExitCancelled = 77 // it was cancelled
)

// Show writes what the job produced and returns the exit status that
// stands for it: a command line's own status; 0 for a done handler job; the
// handler's status (or 1) for a failed one; 76 lost; 77 cancelled.
func Show(o client.Outcome, stdout, stderr io.Writer, tool string) int {
	switch o.State {
	case "lost":
		fmt.Fprintf(stderr, "%s: error: job %s was lost: %s\n", tool, o.ID, o.Error)
		return ExitLost
	case "cancelled":
		fmt.Fprintf(stderr, "%s: error: job %s was cancelled\n", tool, o.ID)
		return ExitCancelled
	}
	if res, ok := commandResult(o.Res); ok {
		out, errb := []byte(res.Stdout), []byte(res.Stderr)
		if res.Enc == "base64" {
			out, _ = base64.StdEncoding.DecodeString(res.Stdout)
			errb, _ = base64.StdEncoding.DecodeString(res.Stderr)
		}
		stdout.Write(out)
		stderr.Write(errb)
		return res.Exit
	}
	stdout.Write(Text(o))
	if o.State == "failed" {
		fmt.Fprintf(stderr, "%s: error: job %s failed: %s\n", tool, o.ID, o.Error)
		if o.Exit != nil && *o.Exit != 0 {
			return *o.Exit
		}
		return ExitFailed
	}
	return 0
}

// Text is a handler job's result as bytes: a JSON string's text (decoded
// from base64 when enc says so), any other value as JSON and a newline.
func Text(o client.Outcome) []byte {
	var s string
	if json.Unmarshal(o.Res, &s) == nil {
		if o.Enc == "base64" {
			b, err := base64.StdEncoding.DecodeString(s)
			if err == nil {
				return b
			}
		}
		return []byte(s)
	}
	if len(o.Res) == 0 {
		return nil
	}
	return append(append([]byte{}, o.Res...), '\n')
}

// commandResult decodes a command-line job's result.
func commandResult(res json.RawMessage) (worker.CommandResult, bool) {
	var r worker.CommandResult
	if len(res) == 0 || res[0] != '{' {
		return r, false
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(res, &keys) != nil || keys["exit"] == nil {
		return r, false
	}
	return r, json.Unmarshal(res, &r) == nil
}
