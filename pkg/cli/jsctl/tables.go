package jsctl

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/js-toolkit/js/pkg/status"
)

func (e *env) jobsTable(jobs []status.Job, now time.Time) {
	if len(jobs) == 0 {
		fmt.Fprintln(e.stdio.Out, "no jobs (submit one with: jsrun --type T -- CMD)")
		return
	}
	t := newTable("ID", "TYPE", "STATE", "PRIO", "TRIES", "SUBMITTED", "RUNTIME", "EXIT", "ERROR")
	for _, j := range jobs {
		t.row(j.ID, j.Type, j.State, itoaOmit(j.Priority), itoaOmit(j.Attempts), ago(now.Sub(j.Submitted))+" ago",
			msOmit(j.RuntimeMS), exitText(j.Exit), j.Error)
	}
	t.print(e.stdio.Out)
}

func (e *env) workersTable(ws []status.Worker) {
	if len(ws) == 0 {
		fmt.Fprintln(e.stdio.Out, "no workers (start one with: jsworker --type T -- HANDLER)")
		return
	}
	t := newTable("ID", "TYPES", "HOST", "PID", "BUSY", "DONE")
	for _, w := range ws {
		t.row(strconv.FormatUint(w.ID, 10), strings.Join(w.Types, ","), w.Host, itoaOmit(w.PID),
			fmt.Sprintf("%d/%d", w.Busy, w.Capacity), strconv.Itoa(w.Done))
	}
	t.print(e.stdio.Out)
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
