package jsctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/outcome"
	"github.com/js-toolkit/js/pkg/client"
	"github.com/js-toolkit/js/pkg/launch"
	"github.com/js-toolkit/js/pkg/metrics"
	"github.com/js-toolkit/js/pkg/queue"
	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/wire"
)

// JobsCmd lists jobs.
type JobsCmd struct {
	Type  string `help:"Only jobs of this type." placeholder:"T"`
	State string `help:"Only jobs in this state: queued, running, done, failed, cancelled, lost." placeholder:"S"`
	JSON  bool   `help:"Print JSON (fields: docs/status.md, jobs[])."`
}

// Run implements the command.
func (c *JobsCmd) Run(e *env) error {
	if c.State != "" {
		if _, ok := queue.ParseState(c.State); !ok {
			return cmdline.Errorf(ExitUsage, "one of queued, running, done, failed, cancelled, lost", "--state %q is not a job state", c.State)
		}
	}
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	jobs, err := conn.Jobs(c.Type, c.State)
	if err != nil {
		return err
	}
	if jobs == nil {
		jobs = []status.Job{}
	}
	sortJobs(jobs)
	if c.JSON {
		return e.printJSON(jobs)
	}
	e.output().jobsTable(e.stdio.Out, jobs, time.Now())
	return nil
}

// WorkersCmd lists the connected workers.
type WorkersCmd struct {
	JSON bool `help:"Print JSON (fields: docs/status.md, workers[])."`
}

// Run implements the command.
func (c *WorkersCmd) Run(e *env) error {
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ws, err := conn.Workers()
	if err != nil {
		return err
	}
	if ws == nil {
		ws = []status.Worker{}
	}
	if c.JSON {
		return e.printJSON(ws)
	}
	o := e.output()
	if len(ws) == 0 {
		fmt.Fprintln(e.stdio.Out, fit("no workers (serve a job type with 'jsworker --type T -- HANDLER')", o.width))
		return nil
	}
	o.workersTable(ws, time.Now()).print(e.stdio.Out)
	return nil
}

// WaitCmd waits for jobs to end and prints their results.
type WaitCmd struct {
	IDs     []string `arg:"" name:"ID" help:"Job ids."`
	Timeout float64  `help:"Give up after this many seconds (exit 75); 0: wait forever." placeholder:"SECONDS"`
	JSON    bool     `help:"Print each outcome as a JSON line (id, state, res, enc, error, exit: docs/status.md) instead of the job's output."`
}

// Run implements the command. The exit status is the first job's that did
// not succeed (its own status, 76 lost, 77 cancelled), else 0.
func (c *WaitCmd) Run(e *env) error {
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	var deadline time.Time
	if c.Timeout > 0 {
		deadline = time.Now().Add(time.Duration(c.Timeout * float64(time.Second)))
	}
	status := 0
	for _, id := range c.IDs {
		o, err := conn.Wait(id, deadline)
		if errors.Is(err, client.ErrTimeout) {
			return cmdline.WithHint(fmt.Errorf("job %s did not end within %vs", id, c.Timeout), outcome.ExitTimeout, "")
		}
		if err != nil {
			if client.IsCode(err, wire.CodeNotFound) {
				return cmdline.WithHint(err, ExitFailed, "see 'jsctl jobs' for the jobs jsd knows; a detached job's result is given out once")
			}
			return err
		}
		var code int
		if c.JSON {
			e.printJSONLine(outcomeJSON{ID: o.ID, State: o.State, Res: o.Res, Enc: o.Enc, Error: o.Error, Exit: o.Exit})
			code = outcome.Show(o, discard{}, discard{}, "jsctl")
		} else {
			code = outcome.Show(o, e.stdio.Out, e.stdio.Err, "jsctl")
		}
		if status == 0 {
			status = code
		}
	}
	if status != 0 {
		return exitError(status)
	}
	return nil
}

// outcomeJSON is one line of 'jsctl wait --json'.
type outcomeJSON struct {
	ID    string          `json:"id"`
	State string          `json:"state"` // done, failed, lost, cancelled
	Res   json.RawMessage `json:"res,omitempty"`
	Enc   string          `json:"enc,omitempty"`
	Error string          `json:"error,omitempty"`
	Exit  *int            `json:"exit,omitempty"`
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// CancelCmd cancels jobs.
type CancelCmd struct {
	IDs    []string `arg:"" name:"ID" help:"Job ids."`
	Signal string   `help:"Signal for a running job's handler (its process group); SIGKILL follows after the worker's grace period." default:"TERM" placeholder:"SIG"`
}

// Run implements the command: exit 0 when every job was cancelled, 1 when
// any was not (unknown, or ended already).
func (c *CancelCmd) Run(e *env) error {
	if _, err := launch.ParseSignal(c.Signal); err != nil {
		return cmdline.Errorf(ExitUsage, "", "--signal: %v", err)
	}
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	failed := 0
	for _, id := range c.IDs {
		if err := conn.Cancel(id, strings.TrimPrefix(strings.ToUpper(c.Signal), "SIG")); err != nil {
			if client.IsCode(err, wire.CodeFDLimit) {
				return err // jsd refused the connection: no job was asked
			}
			fmt.Fprintf(e.stdio.Err, "jsctl: error: cancel %s: %v\n", id, err)
			failed++
		}
	}
	if failed > 0 {
		return exitError(ExitFailed)
	}
	return nil
}

// MetricsCmd prints jsd's counters.
type MetricsCmd struct {
	JSON       bool `help:"Print JSON (deputy's metric names plus ours, and the histograms: docs/status.md)."`
	Prometheus bool `help:"Print the Prometheus text format that GET /metrics serves."`
}

// Run implements the command.
func (c *MetricsCmd) Run(e *env) error {
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	raw, err := conn.Metrics()
	if err != nil {
		return err
	}
	snap, counters, err := metrics.Decode(raw)
	if err != nil {
		return fmt.Errorf("bad metrics from jsd: %w", err)
	}
	switch {
	case c.JSON:
		return e.printJSON(raw)
	case c.Prometheus:
		metrics.Prometheus(e.stdio.Out, snap, counters)
	default:
		for _, k := range slices.Sorted(maps.Keys(counters)) {
			fmt.Fprintf(e.stdio.Out, "%-20s %s\n", k, strconv.FormatFloat(counters[k], 'f', -1, 64))
		}
		for _, name := range slices.Sorted(maps.Keys(snap.Histograms)) {
			for _, typ := range slices.Sorted(maps.Keys(snap.Histograms[name])) {
				h := snap.Histograms[name][typ]
				label := name
				if typ != "" {
					label += "{" + typ + "}"
				}
				mean := 0.0
				if h.Count > 0 {
					mean = h.Sum / float64(h.Count)
				}
				fmt.Fprintf(e.stdio.Out, "%-20s count %d, mean %s\n", label, h.Count, ago(time.Duration(mean*float64(time.Second))))
			}
		}
	}
	return nil
}

// ResizeCmd changes the pool's size at runtime.
type ResizeCmd struct {
	Slots int `arg:"" name:"N" help:"The new number of slots (1..65535)."`
}

// Run implements the command: growing adds tokens at once; shrinking takes
// tokens back as they return, never revoking a running lease.
func (c *ResizeCmd) Run(e *env) error {
	if c.Slots < 1 || c.Slots > 65535 {
		return cmdline.Errorf(ExitUsage, "the pool holds 1 to 65535 slots", "%d slots is out of range", c.Slots)
	}
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Call(&wire.Msg{Cmd: wire.CmdResize, Slots: c.Slots})
	return err
}
