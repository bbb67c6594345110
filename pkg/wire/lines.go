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
	r   *bufio.Reader
	max int
	buf []byte
}

// NewLineReader reads lines of at most max bytes from r.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Reader is the buffered reader underneath, for sniffing the first bytes.
func (l *LineReader) Reader() *bufio.Reader { return l.r }

// Next returns the next line without its terminator. The slice is valid until
// the next call. A final line without a terminator is returned at EOF.
func (l *LineReader) Next() ([]byte, error) {
	l.buf = l.buf[:0]
	for {
		chunk, err := l.r.ReadSlice('\n')
		if len(l.buf)+len(chunk) > l.max+2 {
			return nil, fmt.Errorf("%w (over %d bytes)", ErrLineTooLong, l.max)
		}
		if err == nil {
			var line []byte
			if len(l.buf) == 0 {
				line = chunk
			} else {
				l.buf = append(l.buf, chunk...)
				line = l.buf
			}
			line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
			return line, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			l.buf = append(l.buf, chunk...)
			continue
		}
		if err == io.EOF && len(l.buf)+len(chunk) > 0 {
			l.buf = append(l.buf, chunk...)
			return bytes.TrimSuffix(l.buf, []byte{'\r'}), nil
		}
		return nil, err
	}
}

// CRLF ends every line jsd writes: deputy's own client splits on "\r\n" only.
var CRLF = []byte("\r\n")
