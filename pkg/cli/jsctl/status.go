package jsctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/js-toolkit/js/pkg/status"
)

// StatusCmd prints the slots and the leases.
type StatusCmd struct {
	JSON bool `help:"Print the status document as JSON (fields: docs/status.md)."`
}

// Run implements the command.
func (c *StatusCmd) Run(e *env) error {
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	doc, raw, err := conn.Status()
	if err != nil {
		return err
	}
	if c.JSON {
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return err
		}
		fmt.Fprintln(e.stdio.Out, b.String())
		return nil
	}
	printStatus(e.stdio.Out, doc, time.Now())
	return nil
}

func printStatus(w io.Writer, d *status.Doc, now time.Time) {
	s := d.Slots
	fmt.Fprintf(w, "jsd %s  pid %d  up %s  %s\n", d.Version, d.PID, ago(now.Sub(d.StartedAt)), d.Status)
	fmt.Fprintf(w, "slots: %d/%d in use, %d free, %d waiting, %d reclaimed\n", s.InUse, s.Total, s.Free, s.Waiting, s.Reclaimed)
	if len(d.Leases) == 0 {
		fmt.Fprintln(w, "leases: none (run a command in a slot with: jsrun -- CMD)")
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-6s %-8s %-5s %-9s %s\n", "LEASE", "PID", "SLOTS", "HELD FOR", "COMMAND")
	for _, l := range d.Leases {
		fmt.Fprintf(w, "%-6d %-8d %-5d %-9s %s\n", l.ID, l.PID, l.Slots, ago(now.Sub(l.Since)), strings.ReplaceAll(l.Command, "\n", " "))
	}
}

// ago prints a duration the way people read it: 850ms, 12s, 3m05s, 2h10m.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
