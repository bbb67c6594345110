package jsctl

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// table prints aligned columns. A column no row uses is left out (the first
// one always shows); the last column is cut to fit the width (0: no limit)
// instead of wrapping, and so is any line still too wide. Widths count what
// the terminal shows: colour codes take no column, wide runes take two.
type table struct {
	head  []string
	rows  [][]string
	width int
	color func(col int, cell string) string // paints a body cell; nil: no colour
	headf func(string) string               // paints the header line; nil: none
}

func newTable(head ...string) *table { return &table{head: head} }

// row adds a row; cells are cleaned of control characters (a command line
// may hold newlines, tabs or escape sequences of its own).
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = clean(c)
	}
	for len(cells) < len(t.head) {
		cells = append(cells, "")
	}
	t.rows = append(t.rows, cells)
}

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
		widths[i] = textWidth(t.head[i])
		for _, r := range t.rows {
			widths[i] = max(widths[i], textWidth(r[i]))
		}
	}
	line := func(cells []string, paint func(col int, cell string) string) string {
		var b strings.Builder
		at := 0 // columns written so far
		for k, i := range cols {
			cell := cells[i]
			last := k == len(cols)-1
			if last && t.width > 0 {
				cell = truncate(cell, t.width-at)
			}
			shown := cell
			if paint != nil && cell != "" {
				shown = paint(i, cell)
			}
			b.WriteString(shown)
			at += textWidth(cell)
			if !last {
				pad := widths[i] - textWidth(cell) + 2
				b.WriteString(strings.Repeat(" ", pad))
				at += pad
			}
		}
		return fit(strings.TrimRight(b.String(), " "), t.width)
	}
	head := line(t.head, nil)
	if t.headf != nil {
		head = t.headf(head)
	}
	fmt.Fprintln(w, head)
	for _, r := range t.rows {
		fmt.Fprintln(w, line(r, t.color))
	}
}

// textWidth is the number of terminal columns s takes: SGR and other CSI
// escape sequences take none, East Asian wide runes two.
func textWidth(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if k := escapeLen(s[i:]); k > 0 {
			i += k
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		n += runeWidth(r)
		i += size
	}
	return n
}

// escapeLen is the length of the CSI escape sequence (ESC [ ... final byte)
// s starts with, or 0.
func escapeLen(s string) int {
	if len(s) < 2 || s[0] != 0x1b || s[1] != '[' {
		return 0
	}
	for i := 2; i < len(s); i++ {
		if s[i] >= 0x40 && s[i] <= 0x7e {
			return i + 1
		}
	}
	return len(s)
}

// runeWidth approximates wcwidth: 0 for combining and format runes, 2 for
// East Asian wide ones and emoji, 1 otherwise.
func runeWidth(r rune) int {
	switch {
	case r == 0 || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || unicode.Is(unicode.Cf, r):
		return 0
	case r >= 0x1100 && r <= 0x115f, // Hangul Jamo
		r >= 0x2e80 && r <= 0xa4cf && r != 0x303f,              // CJK ... Yi
		r >= 0xac00 && r <= 0xd7a3,                             // Hangul syllables
		r >= 0xf900 && r <= 0xfaff,                             // CJK compatibility ideographs
		r >= 0xfe30 && r <= 0xfe4f,                             // CJK compatibility forms
		r >= 0xff00 && r <= 0xff60, r >= 0xffe0 && r <= 0xffe6, // fullwidth forms
		r >= 0x1f300 && r <= 0x1faff, // emoji and pictographs
		r >= 0x20000 && r <= 0x3fffd: // CJK extensions
		return 2
	}
	return 1
}

// clean replaces control characters (newlines, tabs, escape sequences a
// command line may carry) with spaces so a cell stays one safe line.
func clean(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// truncate cuts plain text s to n columns, marking the cut with "…".
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if textWidth(s) <= n {
		return s
	}
	var b strings.Builder
	w := 0
	for _, r := range s {
		rw := runeWidth(r)
		if w+rw > n-1 {
			break
		}
		b.WriteRune(r)
		w += rw
	}
	return b.String() + "…"
}

// fit cuts a line that may hold colour codes to n columns (0: no limit),
// marking the cut with "…" and ending any colour it cut into.
func fit(s string, n int) string {
	if n <= 0 || textWidth(s) <= n {
		return s
	}
	var b strings.Builder
	w, colored := 0, false
	for i := 0; i < len(s); {
		if k := escapeLen(s[i:]); k > 0 {
			b.WriteString(s[i : i+k])
			colored = s[i:i+k] != sgrReset
			i += k
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		rw := runeWidth(r)
		if w+rw > n-1 {
			break
		}
		b.WriteRune(r)
		w += rw
		i += size
	}
	b.WriteString("…")
	if colored {
		b.WriteString(sgrReset)
	}
	return b.String()
}
