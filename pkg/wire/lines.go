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

// LineReader splits a stream into lines ending in LF or CRLF.
type LineReader struct {
	r    *bufio.Reader
	max  int
	buf  []byte
	done bool // buf holds a line already returned
}

// NewLineReader reads lines of at most max bytes from r.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
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
		if len(l.buf)+len(chunk) > l.max+2 {
			return nil, fmt.Errorf("%w (over %d bytes)", ErrLineTooLong, l.max)
		}
		if err == nil {
			l.done = true
			var line []byte
			if len(l.buf) == 0 {
				line = chunk
			} else {
				l.buf = append(l.buf, chunk...)
				line = l.buf
			}
			return bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'}), nil
		}
		l.buf = append(l.buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(l.buf) > 0 {
			l.done = true
			return bytes.TrimSuffix(l.buf, []byte{'\r'}), nil
		}
		return nil, err
	}
}

// CRLF ends every line jsd writes: deputy's own client splits on "\r\n" only.
var CRLF = []byte("\r\n")
