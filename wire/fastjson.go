package wire

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// The envelope is decoded and encoded on every message, by every worker and
// every publisher, and encoding/json's reflection was the largest single cost
// of the bulk lane in the profiles (BENCHMARKS.md, issue 14). The functions in
// this file read and write the envelope as this build and the API write it
// (one flat object of the known keys, strings without escapes) directly, and
// give up on anything else, which then goes to encoding/json: both paths accept
// and reject the same input and decode it to the same value, and Encode's output
// is byte for byte json.Marshal's (TestFastDecodeAgreesWithJSON,
// TestFastEncodeAgreesWithJSON, FuzzDecode).

// scanner walks a JSON text; every method reports false on anything the fast
// path does not handle.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) eat(c byte) bool {
	if s.peek() != c {
		return false
	}
	s.i++
	return true
}

// literal consumes lit (null) if it is next.
func (s *scanner) literal(lit string) bool {
	s.ws()
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// str reads a string without escapes and returns its contents (a sub-slice
// of the input) and the quoted text.
func (s *scanner) str() (body, quoted []byte, ok bool) {
	if s.peek() != '"' {
		return nil, nil, false
	}
	start := s.i
	s.i++
	high := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			body = s.b[start+1 : s.i]
			s.i++
			if high && !utf8.Valid(body) {
				return nil, nil, false // encoding/json replaces invalid UTF-8
			}
			return body, s.b[start:s.i], true
		case c == '\\' || c < 0x20:
			return nil, nil, false
		case c >= utf8.RuneSelf:
			high = true
		}
		s.i++
	}
	return nil, nil, false
}

// integer reads a JSON integer that fits an int.
func (s *scanner) integer() (int, bool) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	n := s.i - digits
	if n == 0 || (n > 1 && s.b[digits] == '0') || n > 18 {
		return 0, false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	v, err := strconv.Atoi(string(s.b[start:s.i]))
	return v, err == nil
}

// decodeFast fills w from data, or reports false having left w in any state.
func decodeFast(data []byte, w *wireActivation) bool {
	s := scanner{b: data}
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return s.peek() == 0 && s.i == len(s.b)
	}
	for {
		key, _, ok := s.str()
		if !ok || !s.eat(':') || !decodeField(&s, string(key), w) {
			return false
		}
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			return false
		}
		s.ws()
		return s.i == len(s.b)
	}
}

// decodeField reads the value of key into w.
func decodeField(s *scanner, key string, w *wireActivation) bool {
	var dst *string
	switch key {
	case "v":
		v, ok := s.integer()
		w.Version = v
		return ok
	case "id":
		dst = &w.ID
	case "tenant":
		dst = &w.Tenant
	case "conversation":
		dst = &w.Conversation
	case "lane":
		body, _, ok := s.str()
		w.Lane = Lane(known(body, string(LaneBulk), string(LaneTransactional)))
		return ok
	case "channel":
		body, _, ok := s.str()
		w.Channel = known(body, "email", "sms", "push")
		return ok
	case "to":
		dst = &w.To
	case "vars":
		return decodeVarsRaw(s, w)
	case "enqueued_at":
		return decodeTime(s, &w.EnqueuedAt)
	case "expires_at":
		if s.literal("null") {
			w.ExpiresAt = nil
			return true
		}
		t := new(time.Time)
		w.ExpiresAt = t
		return decodeTime(s, t)
	default:
		return false // unknown, or another case of a known key
	}
	body, _, ok := s.str()
	*dst = string(body)
	return ok
}

// known returns body as a string, one of names without allocating when it
// is one (a lane or a channel: the same few values on every message). The
// channel names are package dispatch's; one it adds is decoded the same,
// with an allocation.
func known(body []byte, names ...string) string {
	for _, n := range names {
		if string(body) == n {
			return n
		}
	}
	return string(body)
}

func decodeTime(s *scanner, t *time.Time) bool {
	if s.literal("null") {
		return true // encoding/json leaves a time.Time as it was on null
	}
	_, quoted, ok := s.str()
	return ok && t.UnmarshalJSON(quoted) == nil
}

// decodeVarsRaw keeps the span of a flat object of strings (or null), as
// json.RawMessage would.
func decodeVarsRaw(s *scanner, w *wireActivation) bool {
	if s.literal("null") {
		w.Vars = json.RawMessage("null")
		return true
	}
	s.ws()
	start := s.i
	if !s.eat('{') {
		return false
	}
	if !s.eat('}') {
		for {
			if _, _, ok := s.str(); !ok || !s.eat(':') {
				return false
			}
			if _, _, ok := s.str(); !ok {
				return false
			}
			if s.eat(',') {
				continue
			}
			if !s.eat('}') {
				return false
			}
			break
		}
	}
	w.Vars = s.b[start:s.i]
	return true
}

// decodeVarsFast decodes a span decodeVarsRaw accepted.
func decodeVarsFast(raw []byte) (map[string]string, bool) {
	s := scanner{b: raw}
	if !s.eat('{') {
		return nil, false
	}
	m := make(map[string]string)
	if s.eat('}') {
		return m, true
	}
	for {
		k, _, ok := s.str()
		if !ok || !s.eat(':') {
			return nil, false
		}
		v, _, ok := s.str()
		if !ok {
			return nil, false
		}
		m[string(k)] = string(v)
		if s.eat(',') {
			continue
		}
		return m, s.eat('}')
	}
}

// plain reports whether json.Marshal writes s as itself between quotes.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func appendString(b []byte, s string) []byte {
	if plain(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// encodeFast writes a as json.Marshal would, or reports false.
func encodeFast(a *Activation) ([]byte, bool) {
	b := make([]byte, 0, 256+32*len(a.Vars))
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(a.Version), 10)
	for _, f := range [...]struct{ k, v string }{
		{`,"id":`, a.ID}, {`,"tenant":`, a.Tenant}, {`,"conversation":`, a.Conversation},
		{`,"lane":`, string(a.Lane)}, {`,"channel":`, a.Channel}, {`,"to":`, a.To},
	} {
		b = append(b, f.k...)
		b = appendString(b, f.v)
	}
	if len(a.Vars) > 0 {
		keys := make([]string, 0, len(a.Vars))
		for k := range a.Vars {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, `,"vars":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, a.Vars[k])
		}
		b = append(b, '}')
	}
	var ok bool
	b = append(b, `,"enqueued_at":`...)
	if b, ok = appendTime(b, a.EnqueuedAt); !ok {
		return nil, false
	}
	if a.ExpiresAt != nil {
		b = append(b, `,"expires_at":`...)
		if b, ok = appendTime(b, *a.ExpiresAt); !ok {
			return nil, false
		}
	}
	return append(b, '}'), true
}

func appendTime(b []byte, t time.Time) ([]byte, bool) {
	q, err := t.MarshalJSON()
	if err != nil {
		return nil, false // a year outside 0-9999: json.Marshal says why
	}
	return append(b, q...), true
}
