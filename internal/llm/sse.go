package llm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// errEventTooLarge reports an event whose data exceeds the reader's limit.
var errEventTooLarge = errors.New("llm: server-sent event over the size limit")

// eventReader reads the data of server-sent events (the text/event-stream
// format of the HTML standard) from a stream: "data:" lines, with or without
// a space after the colon, joined by newlines when an event has several; a
// blank line ends an event; comment lines (": keep-alive") and the fields
// event, id and retry are ignored. Lines end with LF or CRLF.
//
// It reads in place from its bufio.Reader, so an ordinary event costs no
// allocation.
type eventReader struct {
	r    *bufio.Reader
	max  int    // the most bytes of data an event may carry
	data []byte // the current event's data
	long []byte // a line longer than r's buffer, being assembled
	eof  bool   // r ended inside a line, which was returned
}

// newEventReader returns a reader of the events of r whose data is at most
// max bytes.
func newEventReader(r io.Reader, max int) *eventReader {
	return &eventReader{r: bufio.NewReaderSize(r, 16<<10), max: max}
}

// Next returns the data of the next event that carries any. The slice is
// valid until the following call. At the end of the stream it returns
// io.EOF, except for a final "[DONE]" event that lacks its blank line,
// which it returns like any other: an incomplete event is otherwise
// discarded, as the standard says.
func (e *eventReader) Next() ([]byte, error) {
	e.data = e.data[:0]
	hasData := false
	for {
		line, err := e.readLine()
		if err != nil {
			if err == io.EOF && hasData && bytes.Equal(bytes.TrimSpace(e.data), doneData) {
				return e.data, nil
			}
			return nil, err
		}
		if len(line) == 0 { // end of an event
			if len(bytes.TrimSpace(e.data)) > 0 {
				return e.data, nil
			}
			e.data, hasData = e.data[:0], false
			continue
		}
		if line[0] == ':' { // comment
			continue
		}
		field, value, _ := bytes.Cut(line, colon)
		if string(field) != "data" {
			continue
		}
		value = bytes.TrimPrefix(value, space)
		if hasData {
			e.data = append(e.data, '\n')
		}
		if len(e.data)+len(value) > e.max {
			return nil, errEventTooLarge
		}
		e.data = append(e.data, value...)
		hasData = true
	}
}

var (
	colon    = []byte(":")
	space    = []byte(" ")
	doneData = []byte("[DONE]")
)

// readLine returns the next line without its line ending. A last line
// without an ending is returned too; io.EOF comes after it.
func (e *eventReader) readLine() ([]byte, error) {
	if e.eof {
		return nil, io.EOF
	}
	line, err := e.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		e.long = append(e.long[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(e.long) > e.max+len("data: ") {
				return nil, errEventTooLarge
			}
			line, err = e.r.ReadSlice('\n')
			e.long = append(e.long, line...)
		}
		line = e.long
	}
	if err == io.EOF && len(line) > 0 {
		e.eof, err = true, nil
	}
	if err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}
