package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// chunkReader hands out its data in pieces of the given sizes (cycling), so
// lines arrive split at every possible place.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = max(c.sizes[c.i%len(c.sizes)], 1)
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// readAll reads lines until an error and returns copies of them.
func readAll(lr *LineReader) ([]string, error) {
	var out []string
	for {
		line, err := lr.Next()
		if err != nil {
			return out, err
		}
		out = append(out, string(line))
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 100<<10) // longer than the 64 KiB buffer
	cases := []struct {
		name   string
		in     string
		max    int
		want   []string
		tooBig bool // the last read fails with ErrLineTooLong
	}{
		{name: "empty", in: "", max: 10},
		{name: "LF", in: "a\nbc\n", max: 10, want: []string{"a", "bc"}},
		{name: "CRLF", in: "a\r\nbc\r\n", max: 10, want: []string{"a", "bc"}},
		{name: "mixed", in: "a\r\nb\nc\r\n", max: 10, want: []string{"a", "b", "c"}},
		{name: "empty lines", in: "\n\r\n\n", max: 10, want: []string{"", "", ""}},
		{name: "final line without terminator", in: "a\nbc", max: 10, want: []string{"a", "bc"}},
		{name: "final CR only", in: "a\nbc\r", max: 10, want: []string{"a", "bc"}},
		{name: "CR inside a line is kept", in: "a\rb\n", max: 10, want: []string{"a\rb"}},
		{name: "only the last CR goes", in: "a\r\r\n", max: 10, want: []string{"a\r"}},
		{name: "exactly max with LF", in: "abcd\n", max: 4, want: []string{"abcd"}},
		{name: "exactly max with CRLF", in: "abcd\r\n", max: 4, want: []string{"abcd"}},
		{name: "exactly max at EOF", in: "abcd", max: 4, want: []string{"abcd"}},
		{name: "max+1 with LF", in: "ok\nabcde\n", max: 4, want: []string{"ok"}, tooBig: true},
		{name: "max+1 with CRLF", in: "ok\nabcde\r\n", max: 4, want: []string{"ok"}, tooBig: true},
		{name: "max+1 at EOF", in: "ok\nabcde", max: 4, want: []string{"ok"}, tooBig: true},
		{name: "max+1 with CR at EOF", in: "ok\nabcde\r", max: 4, want: []string{"ok"}, tooBig: true},
		{name: "longer than the buffer", in: long + "\r\nz\n", max: len(long), want: []string{long, "z"}},
		{name: "longer than the buffer and max", in: long + "\n", max: len(long) - 1, tooBig: true},
	}
	for _, tc := range cases {
		for _, sizes := range [][]int{nil, {1}, {3, 1, 2}, {64 << 10}} {
			lr := NewLineReader(&chunkReader{data: []byte(tc.in), sizes: sizes}, tc.max)
			got, err := readAll(lr)
			if !equalLines(got, tc.want) {
				t.Errorf("%s (chunks %v): lines %s, want %s", tc.name, sizes, brief(got), brief(tc.want))
			}
			switch {
			case tc.tooBig && !errors.Is(err, ErrLineTooLong):
				t.Errorf("%s (chunks %v): error %v, want ErrLineTooLong", tc.name, sizes, err)
			case !tc.tooBig && err != io.EOF:
				t.Errorf("%s (chunks %v): error %v, want io.EOF", tc.name, sizes, err)
			}
		}
	}
}

// brief shows lines for an error message, long ones by their length.
func brief(lines []string) string {
	var b strings.Builder
	b.WriteString("[")
	for i, l := range lines {
		if i > 0 {
			b.WriteString(" ")
		}
		if len(l) > 40 {
			fmt.Fprintf(&b, "<%d bytes>", len(l))
		} else {
			fmt.Fprintf(&b, "%q", l)
		}
	}
	return b.String() + "]"
}

func equalLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// stallReader returns a deadline error once after each piece, as a
// connection with a read deadline does.
type stallReader struct {
	pieces []string
	stall  bool
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.stall {
		s.stall = false
		return 0, os.ErrDeadlineExceeded
	}
	if len(s.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.pieces[0])
	s.pieces[0] = s.pieces[0][n:]
	if s.pieces[0] == "" {
		s.pieces = s.pieces[1:]
		s.stall = true
	}
	return n, nil
}

// A read deadline in the middle of a line loses nothing: the next call goes
// on with what was read (the client waits for a lease this way).
func TestLineReaderKeepsPartialLineAcrossDeadline(t *testing.T) {
	lr := NewLineReader(&stallReader{pieces: []string{`{"cmd":`, `"lease"}` + "\r\n" + `{"a"`, ":1}\n"}}, 100)
	var got []string
	timeouts := 0
	for {
		line, err := lr.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			timeouts++
			if timeouts > 10 {
				t.Fatal("no progress")
			}
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(line))
	}
	want := []string{`{"cmd":"lease"}`, `{"a":1}`}
	if !equalLines(got, want) || timeouts == 0 {
		t.Fatalf("got %q after %d deadlines, want %q", got, timeouts, want)
	}
}

// splitLines is the reference: lines end in LF, one CR before it (or before
// EOF) is dropped, a final unterminated line counts, and a line whose content
// is longer than max is an error at that point.
func splitLines(data []byte, max int) (lines []string, tooBig bool) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > max {
			return lines, true
		}
		lines = append(lines, string(line))
	}
	return lines, false
}

func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nb\r\nc"), 4, uint8(1))
	f.Add([]byte("{\"cmd\":\"ping\"}\r\n{\"cmd\":\"status\"}\n"), 64, uint8(0))
	f.Add([]byte("\r\n\r\n\n\r"), 1, uint8(2))
	f.Add([]byte("abcde\nabcd\r\n"), 4, uint8(3))
	f.Add([]byte("abcd\r"), 4, uint8(5))
	f.Add([]byte("abcde"), 4, uint8(7))
	f.Add([]byte("a\rb\r\r\n"), 3, uint8(1))
	f.Add(bytes.Repeat([]byte("y"), 70000), 70000, uint8(255))
	f.Fuzz(func(t *testing.T, data []byte, max int, chunk uint8) {
		if max < 0 || max > 1<<20 {
			return
		}
		wantLines, wantTooBig := splitLines(data, max)
		sizes := []int{int(chunk%16) + 1, int(chunk/16) + 1}
		if chunk == 255 {
			sizes = nil // everything at once
		}
		lr := NewLineReader(&chunkReader{data: append([]byte(nil), data...), sizes: sizes}, max)
		got, err := readAll(lr)
		for _, l := range got {
			if len(l) > max {
				t.Fatalf("returned a line of %d bytes over the limit %d", len(l), max)
			}
		}
		if !equalLines(got, wantLines) {
			t.Fatalf("lines %s, want %s", brief(got), brief(wantLines))
		}
		if wantTooBig != errors.Is(err, ErrLineTooLong) || (!wantTooBig && err != io.EOF) {
			t.Fatalf("error %v, want too long: %v", err, wantTooBig)
		}
	})
}

// A reader can give its buffer back between lines (Idle, Swap) and go on
// with another: the line returned last stays valid, nothing is lost, and a
// part of a line read before the swap is kept.
func TestLineReaderSwap(t *testing.T) {
	pr, pw := io.Pipe()
	lr := NewLineReader(bufio.NewReaderSize(pr, ReadBuffer), MaxLine)
	go func() {
		pw.Write([]byte("one\n"))
		pw.Write([]byte("tw"))
		pw.Write([]byte("o\r\nthree\n"))
		pw.Close()
	}()
	line, err := lr.Next()
	if err != nil || string(line) != "one" {
		t.Fatalf("Next = %q, %v", line, err)
	}
	if !lr.Idle() {
		t.Fatal("nothing buffered after a whole line, but not Idle")
	}
	old := lr.Swap(nil)
	if string(line) != "one" {
		t.Fatalf("the last line changed with the swap: %q", line)
	}
	lr.Swap(bufio.NewReaderSize(pr, ReadBuffer))
	if old == nil {
		t.Fatal("Swap returned no reader")
	}
	for _, want := range []string{"two", "three"} {
		if line, err := lr.Next(); err != nil || string(line) != want {
			t.Fatalf("Next = %q, %v; want %q", line, err, want)
		}
	}
	if _, err := lr.Next(); err != io.EOF {
		t.Fatalf("at the end: %v, want EOF", err)
	}
}
