package jsctl

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// table prints aligned columns. A column no row uses is left out; the last
// column is cut to fit the width (0: no limit) instead of wrapping.
type table struct {
	head  []string
	rows  [][]string
	width int
	color func(col int, cell string) string // nil: no colour
}

func newTable(head ...string) *table { return &table{head: head} }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer) {
	used := make([]bool, len(t.head))
	for _, r := range t.rows {
		for i, c := range r {
			if c != "" {
				used[i] = true
			}
		}
	}
	var cols []int
	for i := range t.head {
		if used[i] || i == 0 {
			cols = append(cols, i)
		}
	}
	widths := make([]int, len(t.head))
	for _, i := range cols {
		widths[i] = utf8.RuneCountInString(t.head[i])
		for _, r := range t.rows {
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	line := func(cells []string, colored bool) {
		var b strings.Builder
		for k, i := range cols {
			cell := cells[i]
			last := k == len(cols)-1
			if last && t.width > 0 {
				room := t.width - utf8.RuneCountInString(b.String())
				cell = truncate(cell, room)
			}
			shown := cell
			if colored && t.color != nil {
				shown = t.color(i, cell)
			}
			b.WriteString(shown)
			if !last {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.head, false)
	for _, r := range t.rows {
		line(r, true)
	}
}

// truncate cuts s to n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
