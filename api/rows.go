package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/wire"
)

// An activation request body is read row by row, never whole: a rowReader
// returns the raw bytes of one row at a time, valid until the next call.

// rowReader frames the rows of a body.
type rowReader interface {
	// next returns the next row, io.EOF after the last, a *rowError for a
	// row that cannot be framed, or the error reading the body.
	next() ([]byte, error)
	// position is the 1-based number of the row last returned (or failed),
	// and its line for NDJSON (0 for a JSON array).
	position() (row, line int64)
}

// Kinds of bad rows.
const (
	rowMalformed = iota // not JSON: 400
	rowInvalid          // JSON of the wrong shape: 422
	rowTooLarge         // longer than the limit: 413
)

// rowError is a row the request cannot use; it ends the request.
type rowError struct {
	kind   int
	row    int64
	line   int64 // NDJSON only
	detail string
}

func (e *rowError) Error() string {
	s := "row " + strconv.FormatInt(e.row, 10)
	if e.line > 0 {
		s += " (line " + strconv.FormatInt(e.line, 10) + ")"
	}
	return s + ": " + e.detail
}

// ndjsonReader reads one row per line. Blank lines are skipped and not
// counted as rows; lines are counted for messages.
type ndjsonReader struct {
	br        *bufio.Reader
	max       int
	row, line int64
	eof       bool
}

func newNDJSONReader(r io.Reader, maxRow int) *ndjsonReader {
	// Room for the row and its \r\n: a longer line fills the buffer.
	return &ndjsonReader{br: bufio.NewReaderSize(r, maxRow+2), max: maxRow}
}

func (n *ndjsonReader) position() (int64, int64) { return n.row, n.line }

func (n *ndjsonReader) next() ([]byte, error) {
	for !n.eof {
		b, err := n.br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			n.line++
			n.row++
			return nil, &rowError{kind: rowTooLarge, row: n.row, line: n.line,
				detail: fmt.Sprintf("longer than %d bytes", n.max)}
		case errors.Is(err, io.EOF):
			n.eof = true
		case err != nil:
			return nil, err
		}
		if len(b) == 0 {
			break
		}
		n.line++
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		n.row++
		if len(b) > n.max {
			return nil, &rowError{kind: rowTooLarge, row: n.row, line: n.line, detail: fmt.Sprintf("longer than %d bytes", n.max)}
		}
		return b, nil
	}
	return nil, io.EOF
}

// arrayReader reads the elements of one JSON array. A guard under the
// decoder stops it from buffering more than about one row, so a huge element
// is refused instead of read into memory.
type arrayReader struct {
	g       *guardReader
	dec     *json.Decoder
	max     int
	row     int64
	raw     json.RawMessage
	started bool
	done    bool
}

// arraySlack is what the guard lets the decoder read beyond the row limit:
// separators, whitespace, and the read-ahead of the next rows.
const arraySlack = 8 << 10

var errGuard = errors.New("api: row exceeds the limit")

func newArrayReader(r io.Reader, maxRow int) *arrayReader {
	g := &guardReader{r: r}
	dec := json.NewDecoder(g)
	dec.UseNumber() // Token must not fail converting a stray number
	return &arrayReader{g: g, dec: dec, max: maxRow}
}

func (a *arrayReader) position() (int64, int64) { return a.row, 0 }

func (a *arrayReader) next() ([]byte, error) {
	if a.done {
		return nil, io.EOF
	}
	a.g.limit = a.dec.InputOffset() + int64(a.max) + arraySlack
	if !a.started {
		tok, err := a.dec.Token()
		if err != nil {
			return nil, a.framingError(err, 1)
		}
		if tok != json.Delim('[') {
			return nil, &rowError{kind: rowMalformed, row: 1,
				detail: "the body must be a JSON array of rows (or NDJSON with Content-Type application/x-ndjson)"}
		}
		a.started = true
		a.g.limit = a.dec.InputOffset() + int64(a.max) + arraySlack
	}
	if !a.dec.More() {
		tok, err := a.dec.Token()
		if err != nil {
			return nil, a.framingError(err, a.row+1)
		}
		if tok != json.Delim(']') {
			return nil, &rowError{kind: rowMalformed, row: a.row + 1, detail: "expected a row or the end of the array"}
		}
		if _, err := a.dec.Token(); !errors.Is(err, io.EOF) {
			if err != nil && !isBodyJSONError(err) && !errors.Is(err, errGuard) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, err
			}
			return nil, &rowError{kind: rowMalformed, row: a.row + 1, detail: "data after the end of the array"}
		}
		a.done = true
		return nil, io.EOF
	}
	a.row++
	a.raw = a.raw[:0]
	if err := a.dec.Decode(&a.raw); err != nil {
		return nil, a.framingError(err, a.row)
	}
	if len(a.raw) > a.max {
		return nil, &rowError{kind: rowTooLarge, row: a.row, detail: fmt.Sprintf("longer than %d bytes", a.max)}
	}
	return a.raw, nil
}

func (a *arrayReader) framingError(err error, row int64) error {
	a.row = row
	switch {
	case errors.Is(err, errGuard):
		return &rowError{kind: rowTooLarge, row: row, detail: fmt.Sprintf("longer than %d bytes", a.max)}
	case isBodyJSONError(err):
		return &rowError{kind: rowMalformed, row: row, detail: jsonErrorDetail(err)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &rowError{kind: rowMalformed, row: row, detail: "the body ends before the JSON array does"}
	}
	return err
}

func isSyntax(err error) bool {
	var syn *json.SyntaxError
	return errors.As(err, &syn)
}

// isBodyJSONError reports an error in the body's JSON itself, not in reading
// it.
func isBodyJSONError(err error) bool {
	var typ *json.UnmarshalTypeError
	return isSyntax(err) || errors.As(err, &typ)
}

// guardReader fails with errGuard once more than limit bytes in total have
// been read.
type guardReader struct {
	r     io.Reader
	n     int64
	limit int64
}

func (g *guardReader) Read(p []byte) (int, error) {
	room := g.limit - g.n
	if room <= 0 {
		return 0, errGuard
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	return n, err
}

// row is one decoded activation row.
type row struct {
	to        string
	vars      map[string]string
	id        string
	expiresAt *time.Time
}

type wireRow struct {
	To        *string           `json:"to"`
	Vars      map[string]string `json:"vars"`
	ID        string            `json:"id"`
	ExpiresAt *time.Time        `json:"expires_at"`
}

// decodeRow checks the shape of a row: an object with "to" (a string, which
// may be empty: address validity is the workers' outcome), optional "vars"
// (an object of strings), optional "id" (1-64 of [A-Za-z0-9_-]) and
// optional "expires_at" (RFC 3339; a time already past makes the message
// count expired, never sent), nothing else; vars of more than maxVars bytes once encoded (wire.VarsSize,
// the size the workers bound) are too large. The returned error is a
// *rowError without position.
func decodeRow(raw []byte, maxVars int) (row, error) {
	if len(raw) == 0 || raw[0] != '{' {
		if json.Valid(raw) {
			return row{}, &rowError{kind: rowInvalid, detail: `want an object {"to": ..., "vars": {...}}`}
		}
		return row{}, &rowError{kind: rowMalformed, detail: "not JSON"}
	}
	var w wireRow
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		kind := rowInvalid
		if isSyntax(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			kind = rowMalformed
		}
		return row{}, &rowError{kind: kind, detail: jsonErrorDetail(err)}
	}
	if dec.InputOffset() != int64(len(raw)) {
		return row{}, &rowError{kind: rowMalformed, detail: "more than one JSON value in the row"}
	}
	if w.To == nil {
		return row{}, &rowError{kind: rowInvalid, detail: `"to" is required (a string)`}
	}
	if w.ID != "" && !wire.ValidToken(w.ID) {
		return row{}, &rowError{kind: rowInvalid, detail: `"id": want 1-64 of [A-Za-z0-9_-]`}
	}
	if n := wire.VarsSize(w.Vars); n > maxVars {
		return row{}, &rowError{kind: rowTooLarge, detail: fmt.Sprintf(`"vars": %d bytes encoded, more than the limit of %d`, n, maxVars)}
	}
	if w.ExpiresAt != nil {
		t := w.ExpiresAt.UTC()
		w.ExpiresAt = &t
	}
	return row{to: *w.To, vars: w.Vars, id: w.ID, expiresAt: w.ExpiresAt}, nil
}
