package jsctl

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/js-toolkit/js/pkg/status"
)

// newTable is a table as wide as this output allows, its header dimmed
// when colour is on.
func (o output) newTable(head ...string) *table {
	t := newTable(head...)
	t.width = o.width
	if o.color {
		t.headf = func(s string) string { return o.paint(sgrDim, s) }
	}
	return t
}

// stateColumn colours column col by job state.
func stateColumn(o output, col int) func(int, string) string {
	if !o.color {
		return nil
	}
	return func(i int, cell string) string {
		if i == col {
			return o.paint(stateColor(cell), cell)
		}
		return cell
	}
}

func (o output) queuesTable() *table {
	t := o.newTable("TYPE", "QUEUED", "RUNNING", "WORKERS", "NEXT WAITING")
	if o.color {
		t.color = func(i int, cell string) string {
			switch {
			case cell == "0":
				if i == 3 { // nobody serves the type
					return o.paint(sgrRed, cell)
				}
				return cell
			case i == 1:
				return o.paint(sgrYellow, cell)
			case i == 2:
				return o.paint(sgrGreen, cell)
			}
			return cell
		}
	}
	return t
}

func (o output) workersTable(ws []status.Worker, now time.Time) *table {
	t := o.newTable("ID", "TYPES", "HOST/PID", "BUSY", "DONE", "CONNECTED")
	for _, w := range ws {
		where := w.Host
		if w.PID > 0 {
			if where != "" {
				where += "/"
			}
			where += strconv.Itoa(w.PID)
		}
		t.row(strconv.FormatUint(w.ID, 10), strings.Join(w.Types, ","), where,
			fmt.Sprintf("%d/%d", w.Busy, w.Capacity), strconv.Itoa(w.Done), since(now, w.Since))
	}
	if o.color {
		t.color = func(i int, cell string) string {
			if i == 3 && !strings.HasPrefix(cell, "0/") {
				return o.paint(sgrGreen, cell)
			}
			return cell
		}
	}
	return t
}

func (o output) jobsTable(w io.Writer, jobs []status.Job, now time.Time) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, fit("no jobs (submit one with 'jsrun --type T -- CMD')", o.width))
		return
	}
	t := o.newTable("ID", "TYPE", "STATE", "PRIO", "TRIES", "SUBMITTED", "RUNTIME", "EXIT", "ERROR")
	t.color = stateColumn(o, 2)
	for _, j := range jobs {
		t.row(j.ID, j.Type, j.State, itoaOmit(j.Priority), itoaOmit(j.Attempts), since(now, j.Submitted),
			msOmit(j.RuntimeMS), exitText(j.Exit), j.Error)
	}
	t.print(w)
}

// sortJobs orders a job list the same way every time: newest first, and
// among jobs submitted in the same millisecond the higher id first, digits
// compared as numbers (j10 after j9). jsd lists live jobs in no order.
func sortJobs(jobs []status.Job) {
	sort.SliceStable(jobs, func(a, b int) bool {
		if !jobs[a].Submitted.Equal(jobs[b].Submitted) {
			return jobs[a].Submitted.After(jobs[b].Submitted)
		}
		return naturalLess(jobs[b].ID, jobs[a].ID)
	})
}

// naturalLess compares ids with their trailing digits as numbers.
func naturalLess(a, b string) bool {
	pa, na := splitDigits(a)
	pb, nb := splitDigits(b)
	if pa != pb || len(na) == len(nb) {
		return a < b
	}
	return len(na) < len(nb)
}

func splitDigits(s string) (prefix, digits string) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	return s[:i], s[i:]
}

func itoaOmit(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func msOmit(ms int64) string {
	if ms == 0 {
		return ""
	}
	return ago(time.Duration(ms) * time.Millisecond)
}

func exitText(p *int) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(*p)
}
