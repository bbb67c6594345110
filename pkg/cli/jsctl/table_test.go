package jsctl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/js-toolkit/js/pkg/status"
)

func TestTextWidth(t *testing.T) {
	cases := []struct {
		name string
		s    string
		want int
	}{
		{"plain", "make -C src", 11},
		{"colour codes take no column", "\x1b[32mrunning\x1b[0m", 7},
		{"two sequences", "\x1b[0;2mLEASE\x1b[0m  \x1b[1mx\x1b[0m", 8},
		{"ellipsis", "ab…", 3},
		{"wide runes", "构建", 4},
		{"combining mark", "e\u0301", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := textWidth(tc.s); got != tc.want {
				t.Errorf("textWidth(%q) = %d, want %d", tc.s, got, tc.want)
			}
		})
	}
}

func TestFitKeepsColourAndWidth(t *testing.T) {
	s := "\x1b[31m" + strings.Repeat("x", 50) + "\x1b[0m tail"
	got := fit(s, 20)
	if textWidth(got) != 20 || !strings.HasSuffix(got, "…"+sgrReset) || !strings.HasPrefix(got, "\x1b[31m") {
		t.Errorf("fit: %q (width %d)", got, textWidth(got))
	}
	if fit(s, 0) != s || fit("short", 20) != "short" {
		t.Error("fit changed a line that fits")
	}
}

// Colour in a cell before the last column neither shifts the columns nor
// makes the cut early or late: a cut line is exactly the width.
func TestTableColourDoesNotCount(t *testing.T) {
	for _, colour := range []bool{false, true} {
		tb := newTable("ID", "STATE", "EMPTY", "ERROR")
		tb.width = 40
		if colour {
			tb.color = func(col int, cell string) string {
				if col == 1 {
					return sgrRed + cell + sgrReset
				}
				return cell
			}
			tb.headf = func(s string) string { return sgrDim + s + sgrReset }
		}
		tb.row("j1", "failed", "", strings.Repeat("e", 60))
		tb.row("j22", "done", "", "ok\nwith a newline")
		var b bytes.Buffer
		tb.print(&b)
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("colour %v: %q", colour, b.String())
		}
		if strings.Contains(lines[0], "EMPTY") {
			t.Errorf("colour %v: a column no row uses is shown: %q", colour, lines[0])
		}
		if w := textWidth(lines[1]); w != 40 || !strings.HasSuffix(lines[1], "…") {
			t.Errorf("colour %v: cut line %q is %d columns, want 40 ending in …", colour, lines[1], w)
		}
		plain := func(s string) string { return strings.NewReplacer(sgrRed, "", sgrReset, "", sgrDim, "").Replace(s) }
		if got := plain(lines[2]); got != "j22  done    ok with a newline" {
			t.Errorf("colour %v: row %q", colour, got)
		}
		if i, j := strings.Index(plain(lines[0]), "ERROR"), strings.Index(plain(lines[1]), "eee"); i != j {
			t.Errorf("colour %v: columns shifted: header at %d, cell at %d", colour, i, j)
		}
	}
}

func TestTruncateNoWidthMeansWhole(t *testing.T) {
	tb := newTable("CMD")
	long := strings.Repeat("word ", 40)
	tb.row(long)
	var b bytes.Buffer
	tb.print(&b)
	if !strings.Contains(b.String(), strings.TrimSpace(long)) {
		t.Errorf("a table without a width cut its cells: %q", b.String())
	}
}

// The whole status view fits any terminal width, in colour or not.
func TestStatusFitsWidth(t *testing.T) {
	now := time.Now()
	exit := 2
	d := &status.Doc{PID: 42, Status: "running", Version: "1.2.3", StartedAt: now.Add(-time.Hour), Socket: "/run/user/1000/js/jsd.sock",
		Slots:    status.Slots{Total: 8, InUse: 8, Waiting: 3, Leased: 2, Reclaimed: 1},
		Leases:   []status.Lease{{ID: 1, PID: 100, Slots: 2, Command: "make -C " + strings.Repeat("deep/", 30), Since: now.Add(-time.Minute)}},
		Queues:   []status.Queue{{Type: "render", Queued: 3, Running: 1, Workers: 1, NextWaitingMS: 1500}},
		Workers:  []status.Worker{{ID: 1, Types: []string{"render", "encode"}, Host: "buildbox", PID: 7, Busy: 1, Capacity: 2, Done: 9, Since: now}},
		Jobs:     []status.Job{{ID: "j9", Type: "render", State: "failed", Priority: 3, Submitted: now.Add(-5 * time.Second), RuntimeMS: 1200, Exit: &exit, Error: strings.Repeat("boom ", 30)}},
		Warnings: []string{"serving deputy without a token on 0.0.0.0:11746"},
	}
	for _, width := range []int{30, 60, 80, 132} {
		for _, colour := range []bool{false, true} {
			var b bytes.Buffer
			writeStatus(&b, output{tty: true, color: colour, width: width, height: 50}, d, now, false)
			for _, l := range strings.Split(b.String(), "\n") {
				if w := textWidth(l); w > width {
					t.Errorf("width %d colour %v: line of %d columns: %q", width, colour, w, l)
				}
			}
			if colour != strings.Contains(b.String(), "\x1b[") {
				t.Errorf("colour %v but output %q", colour, b.String())
			}
		}
	}
}

func TestScreenFitsHeight(t *testing.T) {
	body := strings.Repeat("line\n", 30)
	got := screen(output{tty: true, width: 80, height: 10}, body, "footer")
	lines := strings.Split(got, "\r\n")
	if len(lines) != 10 || !strings.Contains(lines[8], "22 more lines") || !strings.Contains(lines[9], "footer") {
		t.Errorf("screen of 10 rows: %d lines: %q", len(lines), got)
	}
	if !strings.HasPrefix(got, home) || !strings.HasSuffix(got, eraseBelow) {
		t.Errorf("screen does not redraw in place: %q", got)
	}
}

func TestSince(t *testing.T) {
	now := time.Date(2025, 1, 2, 12, 0, 0, 0, time.Local)
	cases := map[string]time.Time{
		"just now":         now.Add(-300 * time.Millisecond),
		"3s ago":           now.Add(-3 * time.Second),
		"2m05s ago":        now.Add(-125 * time.Second),
		"2024-12-31 09:00": time.Date(2024, 12, 31, 9, 0, 0, 0, time.Local),
		"":                 {},
	}
	for want, at := range cases {
		if got := since(now, at); got != want {
			t.Errorf("since(%v) = %q, want %q", at, got, want)
		}
	}
}

func TestSortJobs(t *testing.T) {
	at := time.Unix(100, 0)
	jobs := []status.Job{{ID: "j9", Submitted: at}, {ID: "j10", Submitted: at}, {ID: "old", Submitted: at.Add(-time.Second)}, {ID: "new", Submitted: at.Add(time.Second)}}
	sortJobs(jobs)
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	if got := strings.Join(ids, " "); got != "new j10 j9 old" {
		t.Errorf("order %s", got)
	}
}
