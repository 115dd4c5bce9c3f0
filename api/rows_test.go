package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/wire"
)

// readAll frames every row of body; it returns the rows and the error that
// ended it (nil at a clean end).
func readAll(rr rowReader) ([]string, error) {
	var rows []string
	for {
		raw, err := rr.next()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, string(raw))
	}
}

func TestRowReadersAgree(t *testing.T) {
	t.Parallel()
	rows := []string{`{"to":"a"}`, `{"to":"b","vars":{"x":"[1, 2]"}}`, `{"to":"c\n"}`}
	nd, err := readAll(newNDJSONReader(strings.NewReader(strings.Join(rows, "\r\n")+"\n\n"), 64))
	if err != nil || strings.Join(nd, "|") != strings.Join(rows, "|") {
		t.Fatalf("ndjson: %q, %v", nd, err)
	}
	arr, err := readAll(newArrayReader(strings.NewReader("[\n"+strings.Join(rows, " ,\n")+"\n]\n"), 64))
	if err != nil || strings.Join(arr, "|") != strings.Join(rows, "|") {
		t.Fatalf("array: %q, %v", arr, err)
	}
}

// TestArrayReaderBoundedRead: a huge element is refused after reading about
// one row's worth of it, not the whole.
func TestArrayReaderBoundedRead(t *testing.T) {
	t.Parallel()
	src := &countingReader{r: io.MultiReader(strings.NewReader(`[{"to":"`), infiniteX{})}
	_, err := readAll(newArrayReader(src, 1024))
	var re *rowError
	if !errors.As(err, &re) || re.kind != rowTooLarge || re.row != 1 {
		t.Fatalf("err = %v", err)
	}
	if src.n > 1024+arraySlack+len(`[`) {
		t.Fatalf("read %d bytes of an endless row", src.n)
	}
}

type infiniteX struct{}

func (infiniteX) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzRowReaders: whatever the body, the readers never return a row longer
// than the limit, and every row they return (for a JSON array) is one JSON
// value; decodeRow never panics.
func FuzzRowReaders(f *testing.F) {
	for _, s := range []string{
		`[{"to":"a"},{"to":"b"}]`, "{\"to\":\"a\"}\n{\"to\":\"b\"}", `[`, `]`, `[{"to":1}]`, "\n\n", `[{}] [`,
		`[{"to":"a","vars":{"k":"v"},"id":"x"}]`, `{"to":"a"} {"to":"b"}`, `[[[[[[[[`, `"str"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		const max = 64
		for _, rr := range []rowReader{newNDJSONReader(bytes.NewReader(body), max), newArrayReader(bytes.NewReader(body), max)} {
			_, isArray := rr.(*arrayReader)
			for i := 0; i < 1000; i++ {
				raw, err := rr.next()
				if err != nil {
					var re *rowError
					if !errors.Is(err, io.EOF) && !errors.As(err, &re) {
						t.Fatalf("unexpected error %v", err)
					}
					break
				}
				if len(raw) > max {
					t.Fatalf("row of %d bytes", len(raw))
				}
				if isArray && !json.Valid(raw) {
					t.Fatalf("array row %q is not JSON", raw)
				}
				_, _ = decodeRow(raw, wire.DefaultMaxVarsBytes)
			}
		}
	})
}

func TestDecodeRow(t *testing.T) {
	t.Parallel()
	r, err := decodeRow([]byte(`{"to":"","vars":{"a":"b"},"id":"row-1"}`), wire.DefaultMaxVarsBytes)
	if err != nil || r.to != "" || r.vars["a"] != "b" || r.id != "row-1" {
		t.Fatalf("%+v, %v", r, err)
	}
}
