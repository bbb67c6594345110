package jsctl

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/js-toolkit/js/pkg/status"
)

// StatusCmd shows jsd at a glance, once or live.
type StatusCmd struct {
	JSON       bool   `help:"Print the status document as JSON (fields: docs/status.md). With --watch: one compact JSON line per change."`
	Watch      bool   `short:"w" help:"Keep showing the status, redrawn each time jsd rewrites its status file (read from the file, not the socket). On a non-terminal: one JSON line per change. Ctrl-C or q ends it."`
	StatusFile string `help:"The status file --watch reads (default: DIR/status.json)." placeholder:"PATH"`
}

// Run implements the command.
func (c *StatusCmd) Run(e *env) error {
	if c.Watch {
		return c.watch(e)
	}
	conn, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	doc, _, err := conn.Status()
	if err != nil {
		return err
	}
	if c.JSON {
		// Through status.Doc: exactly the documented fields.
		return e.printJSON(doc)
	}
	o := e.output()
	writeStatus(e.stdio.Out, o, doc, time.Now(), false)
	return nil
}

func (c *StatusCmd) statusFile(e *env) string {
	if c.StatusFile != "" {
		return c.StatusFile
	}
	return e.paths().Status
}

// recentShown is how many of the recent jobs the status view lists.
const recentShown = 8

// writeStatus prints the human view of a status document: a headline, then
// the leases, queues, workers and recent jobs. fromFile: the document was
// read from the status file (its pid may be dead; it is not a live answer).
func writeStatus(w io.Writer, o output, d *status.Doc, now time.Time, fromFile bool) {
	line := func(s string) { fmt.Fprintln(w, fit(s, o.width)) }
	title := func(s string) { line(o.paint(sgrBold, s)) }

	// Headline: who, state, uptime, where.
	state := d.Status
	if state == "" {
		state = "unknown"
	}
	head := []string{o.paint(sgrBold, "jsd "+orDash(d.Version)), o.paint(stateColor(d.Status), state)}
	if d.PID > 0 {
		head = append(head, "pid "+strconv.Itoa(d.PID))
	}
	if !d.StartedAt.IsZero() && (d.Status == status.Running || d.Status == status.Stopping) {
		head = append(head, "up "+ago(now.Sub(d.StartedAt)))
	}
	if d.Socket != "" {
		head = append(head, filepath.Dir(d.Socket))
	}
	if d.Port > 0 {
		head = append(head, fmt.Sprintf("tcp %s:%d", d.Host, d.Port))
	}
	line(strings.Join(head, "  "))
	if d.Error != "" {
		line(o.paint(sgrRed, "error: "+clean(d.Error)))
	}
	if fromFile && d.Status == status.Running && d.PID > 0 && !procAlive(d.PID, d.StartedAt) {
		line(o.paint(sgrRed, fmt.Sprintf("pid %d is gone: this status file is stale (was jsd killed?)", d.PID)))
	}
	for _, warn := range d.Warnings {
		line(o.paint(sgrYellow, "warning: "+clean(warn)))
	}
	s := d.Slots
	inUse := fmt.Sprintf("%d/%d in use", s.InUse, s.Total)
	if s.Total > 0 && s.InUse >= s.Total {
		inUse = o.paint(sgrYellow, inUse)
	}
	counts := []string{"slots " + o.paint(sgrBold, inUse), fmt.Sprintf("%d free", s.Free)}
	waiting := fmt.Sprintf("%d waiting", s.Waiting)
	if s.Waiting > 0 {
		waiting = o.paint(sgrYellow, waiting)
	}
	counts = append(counts, waiting)
	reclaimed := fmt.Sprintf("%d reclaimed", s.Reclaimed)
	if s.Reclaimed > 0 {
		reclaimed = o.paint(sgrMagenta, reclaimed)
	}
	counts = append(counts, reclaimed)
	line(strings.Join(counts, ", "))

	// Slot leases.
	fmt.Fprintln(w)
	if len(d.Leases) == 0 {
		line("Leases: none (run a command in a slot with 'jsrun -- CMD')")
	} else {
		title(fmt.Sprintf("Leases (%d)", len(d.Leases)))
		t := o.newTable("LEASE", "PID", "SLOTS", "HELD FOR", "COMMAND")
		for _, l := range d.Leases {
			t.row(strconv.FormatUint(l.ID, 10), itoaOmit(l.PID), strconv.Itoa(l.Slots), ago(now.Sub(l.Since)), l.Command)
		}
		t.print(w)
	}

	// The jsds sharing the queues (jsd --nats / --nats-embed).
	if c := d.Cluster; c != nil {
		fmt.Fprintln(w)
		title(fmt.Sprintf("Cluster: this jsd is %q (nats-server %s, %d replica(s)), %d jsd(s)", c.Name, c.Server, c.Replicas, len(c.Peers)))
		if c.Error != "" {
			line(o.paint(sgrRed, "error: "+clean(c.Error)))
		}
		t := o.newTable("JSD", "SLOTS", "WORKERS", "UP", "SEEN")
		for _, p := range c.Peers {
			name := p.Name
			if name == c.Name {
				name += " (this one)"
			}
			t.row(name, fmt.Sprintf("%d/%d", p.SlotsInUse, p.Slots), strconv.Itoa(p.Workers), ago(now.Sub(p.Since)), since(now, p.Seen))
		}
		t.print(w)
	}

	// Queues per type.
	fmt.Fprintln(w)
	if len(d.Queues) == 0 {
		line("Queues: none (submit a job with 'jsrun --type T -- CMD')")
	} else {
		what := "Queues"
		if d.Cluster != nil {
			what = "Queues, cluster-wide (workers: this jsd's)"
		}
		title(fmt.Sprintf("%s (%d)", what, len(d.Queues)))
		t := o.queuesTable()
		for _, q := range d.Queues {
			t.row(q.Type, strconv.Itoa(q.Queued), strconv.Itoa(q.Running), strconv.Itoa(q.Workers), msOmit(q.NextWaitingMS))
		}
		t.print(w)
	}

	// Workers.
	fmt.Fprintln(w)
	if len(d.Workers) == 0 {
		line("Workers: none (serve a job type with 'jsworker --type T -- HANDLER')")
	} else {
		title(fmt.Sprintf("Workers (%d)", len(d.Workers)))
		o.workersTable(d.Workers, now).print(w)
	}

	// The jobs that ended last.
	fmt.Fprintln(w)
	if len(d.Jobs) == 0 {
		line("Recent jobs: none yet ('jsctl jobs' lists the queued and running ones)")
		return
	}
	jobs := d.Jobs
	more := ""
	if len(jobs) > recentShown {
		more = fmt.Sprintf(", %d shown: all with 'jsctl jobs'", recentShown)
		jobs = jobs[:recentShown]
	}
	title(fmt.Sprintf("Recent jobs (%d%s)", len(d.Jobs), more))
	t := o.newTable("ID", "TYPE", "STATE", "PRIO", "RUNTIME", "EXIT", "SUBMITTED", "ERROR")
	t.color = stateColumn(o, 2)
	for _, j := range jobs {
		t.row(j.ID, j.Type, j.State, itoaOmit(j.Priority), msOmit(j.RuntimeMS), exitText(j.Exit), since(now, j.Submitted), j.Error)
	}
	t.print(w)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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

// since prints when something happened: relative for the last day ("3s
// ago", "just now"), the local date and time before that; "" for no time.
func since(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < 24*time.Hour:
		return ago(d.Truncate(time.Second)) + " ago"
	}
	return t.Local().Format("2006-01-02 15:04")
}
