package email

import (
	"bytes"
	"fmt"
	"maps"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dispatch"
)

// MessageID returns the Message-ID header value of the message with
// idempotency key id: "<" + escaped id + "@" + domain + ">". Every byte of
// id outside RFC 5322 atext, and '%' and '.', is written as %XX, so that
// any id yields a valid dot-atom and [IDFromMessageID] recovers it exactly.
func MessageID(id, domain string) string {
	var b strings.Builder
	b.Grow(len(id) + len(domain) + 3)
	b.WriteByte('<')
	for i := 0; i < len(id); i++ {
		c := id[i]
		if isAtext(c) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	b.WriteByte('@')
	b.WriteString(domain)
	b.WriteByte('>')
	return b.String()
}

// IDFromMessageID recovers the idempotency key from a Message-ID written by
// [MessageID]. It reports false when v does not have that shape.
func IDFromMessageID(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) < 3 || v[0] != '<' || v[len(v)-1] != '>' {
		return "", false
	}
	at := strings.LastIndexByte(v, '@')
	if at < 1 {
		return "", false
	}
	enc := v[1:at]
	var b strings.Builder
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(enc) {
			return "", false
		}
		hi, ok1 := unhex(enc[i+1])
		lo, ok2 := unhex(enc[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// isAtext reports whether c is RFC 5322 atext, less '%' (the escape).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&'*+-/=?^_`{|}~", c) >= 0
}

// Headers set on every message besides the usual ones, so that a relay's
// logs, a bounce or the sinks can tie a message to its conversation (the
// same idea as listmonk's X-Listmonk-Campaign).
const (
	HeaderTenant       = "X-Sluice-Tenant"
	HeaderConversation = "X-Sluice-Conversation"
)

// maxSubject bounds the subject so that its header line, once encoded and
// folded, stays far below the 998-octet line limit.
const maxSubject = 400

// compose renders m as an RFC 5322 message with CRLF line ends: a
// quoted-printable text/plain body, or multipart/alternative with an HTML
// part when m.HTML is set.
func compose(m *dispatch.Message, fromHeader, domain string, now time.Time) []byte {
	var b bytes.Buffer
	h := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteString("\r\n")
	}
	h("Date", now.Format(time.RFC1123Z))
	h("From", fromHeader)
	h("To", "<"+m.To+">")
	h("Subject", encodeSubject(m.SubjectOrDefault()))
	h("Message-ID", MessageID(m.ID, domain))
	h("MIME-Version", "1.0")
	if v, ok := headerSafe(m.Tenant); ok {
		h(HeaderTenant, v)
	}
	if v, ok := headerSafe(m.Conversation); ok {
		h(HeaderConversation, v)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		if v, ok := extraHeader(k, m.Headers[k]); ok {
			h(k, v)
		}
	}
	text := m.BodyOrDefault()
	if m.HTML == "" {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		writeQP(&b, text)
		return b.Bytes()
	}
	mw := multipart.NewWriter(&b)
	h("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	for _, part := range []struct{ typ, body string }{{"text/plain; charset=utf-8", text}, {"text/html; charset=utf-8", m.HTML}} {
		w, _ := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.typ},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		qw := quotedprintable.NewWriter(w)
		qw.Write([]byte(crlf(part.body)))
		qw.Close()
	}
	mw.Close()
	return b.Bytes()
}

func writeQP(b *bytes.Buffer, s string) {
	qw := quotedprintable.NewWriter(b)
	qw.Write([]byte(crlf(s)))
	qw.Close()
	b.WriteString("\r\n")
}

// crlf normalises line ends to CRLF, so that quoted-printable keeps them as
// hard line breaks.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// encodeSubject flattens line breaks, bounds the length and encodes
// non-ASCII text as RFC 2047 encoded words, folding between words.
func encodeSubject(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxSubject {
		cut := maxSubject
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut]
	}
	enc := mime.QEncoding.Encode("utf-8", s)
	if enc == s {
		return s
	}
	return strings.ReplaceAll(enc, "?= =?", "?=\r\n =?")
}

// headerSafe returns v if it is printable ASCII fit for a header value.
func headerSafe(v string) (string, bool) {
	if v == "" || len(v) > 200 {
		return "", false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", false
		}
	}
	return v, true
}

// composed are the headers compose writes itself; Message.Headers cannot
// replace them.
var composed = map[string]bool{
	"Date": true, "From": true, "To": true, "Subject": true, "Message-Id": true, "Mime-Version": true,
	"Content-Type": true, "Content-Transfer-Encoding": true, "Cc": true, "Bcc": true,
	textproto.CanonicalMIMEHeaderKey(HeaderTenant): true, textproto.CanonicalMIMEHeaderKey(HeaderConversation): true,
}

// extraHeader returns v if k is a header name compose does not write itself
// and v is printable ASCII short enough for one line (List-Unsubscribe
// carries a signed URL of a few hundred bytes).
func extraHeader(k, v string) (string, bool) {
	if k == "" || len(k) > 64 || composed[textproto.CanonicalMIMEHeaderKey(k)] || len(v) > 900 {
		return "", false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c > '~' || c == ':' {
			return "", false
		}
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", false
		}
	}
	return v, v != ""
}
