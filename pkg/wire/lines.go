package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxLine is the longest native line jsd accepts (16 MiB); a longer one gets
// a too_large error and the connection is closed, since the stream cannot be
// resynchronised without reading it all.
const MaxLine = 16 << 20

// ErrLineTooLong is returned by LineReader.Next for a line over the limit.
var ErrLineTooLong = errors.New("line too long")

// ReadBuffer is a connection's read buffer: big enough to take a burst of
// messages in one read, small enough for thousands of idle connections.
const ReadBuffer = 4 << 10

// LineReader splits a stream into lines ending in LF or CRLF.
type LineReader struct {
	r    *bufio.Reader
	max  int
	buf  []byte
	done bool // buf holds a line already returned
}

// NewLineReader reads lines of at most max bytes from r.
func NewLineReader(r io.Reader, max int) *LineReader {
	if br, ok := r.(*bufio.Reader); ok && br.Size() >= ReadBuffer {
		return &LineReader{r: br, max: max} // no second buffer on top of one
	}
	return &LineReader{r: bufio.NewReaderSize(r, ReadBuffer), max: max}
}

// HasLine reports whether a whole line is already buffered, so that Next
// returns it without reading.
func (l *LineReader) HasLine() bool {
	n := l.r.Buffered()
	if n == 0 {
		return false
	}
	b, _ := l.r.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// Idle reports whether the reader holds nothing: no part of a line, no bytes
// read ahead. Then the buffered reader underneath may be swapped (Swap).
func (l *LineReader) Idle() bool {
	return (l.done || len(l.buf) == 0) && (l.r == nil || l.r.Buffered() == 0)
}

// Swap puts br underneath in place of the current buffered reader (nil: none
// for now; Next and HasLine need one) and returns that one: a connection
// that waits for input without a buffer (jsd's idle ones) gives it back
// while it waits. The line returned last stays valid.
func (l *LineReader) Swap(br *bufio.Reader) *bufio.Reader {
	old := l.r
	l.r = br
	return old
}

// Reader is the buffered reader underneath, for sniffing the first bytes.
func (l *LineReader) Reader() *bufio.Reader { return l.r }

// Next returns the next line without its terminator. The slice is valid until
// the next call. A final line without a terminator is returned at EOF. After
// an error such as a read deadline, what was read of a line is kept and the
// next call goes on with it.
func (l *LineReader) Next() ([]byte, error) {
	if l.done {
		l.buf, l.done = l.buf[:0], false
	}
	for {
		chunk, err := l.r.ReadSlice('\n')
		if err == nil {
			l.done = true
			line := chunk
			if len(l.buf) > 0 {
				l.buf = append(l.buf, chunk...)
				line = l.buf
			}
			return l.checked(bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'}))
		}
		// Without its terminator a line may still end in the CR of a CRLF.
		if len(l.buf)+len(chunk) > l.max+1 {
			return nil, l.tooLong()
		}
		l.buf = append(l.buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(l.buf) > 0 {
			l.done = true
			return l.checked(bytes.TrimSuffix(l.buf, []byte{'\r'}))
		}
		return nil, err
	}
}

// checked returns line, or ErrLineTooLong when it is over the limit.
func (l *LineReader) checked(line []byte) ([]byte, error) {
	if len(line) > l.max {
		return nil, l.tooLong()
	}
	return line, nil
}

func (l *LineReader) tooLong() error {
	return fmt.Errorf("%w (over %d bytes)", ErrLineTooLong, l.max)
}

// CRLF ends every line jsd writes: deputy's own client splits on "\r\n" only.
var CRLF = []byte("\r\n")
