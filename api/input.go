package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// Bad input is answered as bad input: a request whose body is not JSON is
// 400, one whose fields cannot be used (a NUL byte, invalid UTF-8, an unknown
// value) is 422 naming the field, and both are decided before anything is
// stored. Postgres refuses some of the same things (NUL in text or jsonb,
// invalid byte sequences); if one of them gets past the checks, its error is
// still the client's (422, see inputError), never a 5xx that invites a retry.

// checkText refuses a string that Postgres cannot store as text or jsonb
// (a NUL byte) or that is not UTF-8, naming field.
func checkText(field, s string) error {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s: contains a NUL byte (\\u0000)", field)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not valid UTF-8", field)
	}
	return nil
}

// readJSON reads one JSON object of at most maxBytes from r's body into v,
// refusing unknown fields and trailing data. On failure it answers (413 for
// a body too large, 422 naming the field for invalid UTF-8, which the JSON
// decoder would otherwise replace silently, 400 for anything else) and
// returns false.
func readJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		problem(w, http.StatusRequestEntityTooLarge, ProblemInvalidRequest, "Request too large",
			fmt.Sprintf("the body is larger than %d bytes", maxBytes))
		return false
	case err != nil:
		problem(w, http.StatusBadRequest, ProblemBodyUnreadable, "Body unreadable", "the request body could not be read")
		return false
	case !utf8.Valid(body):
		problem(w, http.StatusUnprocessableEntity, ProblemInvalidRequest, "Invalid request",
			invalidUTF8Field(body, "")+": not valid UTF-8")
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Malformed request", "body: "+jsonErrorDetail(err))
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		problem(w, http.StatusBadRequest, ProblemInvalidRequest, "Malformed request", "body: more than one JSON value")
		return false
	}
	return true
}

// invalidUTF8Field names the member of a JSON document that holds invalid
// UTF-8 ("template.subject"), or "body" when it cannot tell.
func invalidUTF8Field(raw []byte, path string) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if utf8.Valid(obj[k]) {
				continue
			}
			name := k
			if path != "" {
				name = path + "." + k
			}
			return invalidUTF8Field(obj[k], name)
		}
	}
	if path == "" {
		return "body"
	}
	return path
}

// inputError reports whether err is Postgres refusing a value (SQLSTATE
// class 22, data exception: 22021 a byte sequence invalid in the encoding,
// 22P05 a character jsonb cannot hold, 22001 a value too long...): the
// request's fault, answered 422, not the server's.
func inputError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

// refuseInput answers 422 for an error that inputError recognised.
func refuseInput(w http.ResponseWriter, what string) {
	problem(w, http.StatusUnprocessableEntity, ProblemInvalidRequest, "Invalid request",
		what+" holds a value the database cannot store (a NUL byte or an invalid character?)")
}
