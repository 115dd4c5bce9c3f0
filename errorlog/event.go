package errorlog

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/wire"
)

// Event is one message's outcome: delivered (counted only, never a row) or
// not delivered (counted, with a detail row where the mode keeps one).
type Event struct {
	// Outcome is what the pipeline decided: wire.OutcomeDelivered, or an
	// outcome of a message not delivered (invalid, failed, suppressed,
	// expired). It is stored with the count. Required.
	Outcome wire.Outcome
	// ID is stable per event: the activation id, or "seq:<stream seq>" for a
	// message that could not be decoded. Required.
	ID string
	// Time is the activation's enqueue time, stable across redeliveries; it
	// selects the day partition. Stored with microsecond precision. Required.
	Time time.Time
	// Tenant, Conversation, Lane and Channel say where the message belonged.
	Tenant, Conversation, Lane, Channel string
	// Reason is a short, low-cardinality cause, e.g. "invalid_address".
	Reason string
	// Detail is free text, capped at 1 KiB.
	Detail string
	// Address is the destination; masked unless Config.KeepAddresses.
	Address string
	// Seq is the activation stream's sequence of the message, stable across
	// redeliveries: counters skip a sequence an earlier batch counted, whatever
	// the message's delivery count says (a NATS node that lost its consumer
	// state redelivers as a first delivery). 0 means
	// unknown: the event is counted every time it is recorded.
	Seq uint64 `json:",omitempty"`
	// Source names the stream Seq belongs to (its name and creation time,
	// like Config.Source); empty means Config.Source. Each lane has its own
	// activation stream, so sequences alone do not identify a message.
	Source string `json:",omitempty"`
}

// Length caps, in bytes, applied by Record.
const (
	maxDetail  = 1024
	maxAddress = 512
	maxField   = 256
)

// ErrInvalidEvent is reported (wrapped) to done for an event that can never be
// stored: no ID, or a Time that is zero or outside years 1..9999. Retrying cannot
// help; it is a bug in the caller.
var ErrInvalidEvent = errors.New("errorlog: invalid event")

// check validates a prepared event.
func (ev *Event) check() error {
	switch ev.Outcome {
	case wire.OutcomeDelivered, wire.OutcomeInvalid, wire.OutcomeFailed, wire.OutcomeSuppressed, wire.OutcomeExpired:
	default:
		return fmt.Errorf("%w: event %q: Outcome %q is not a final outcome a worker decides", ErrInvalidEvent, ev.ID, ev.Outcome)
	}
	if ev.ID == "" {
		return fmt.Errorf("%w: empty ID (after removing NUL bytes)", ErrInvalidEvent)
	}
	if ev.Time.IsZero() || ev.Time.Year() < 1 || ev.Time.Year() > 9999 {
		return fmt.Errorf("%w: event %q: Time %v is zero or out of range", ErrInvalidEvent, ev.ID, ev.Time)
	}
	return nil
}

// cleaned returns the event as it will be stored, but for the address mask
// (applied only to rows that are kept): text sanitized and capped, time in UTC
// truncated to microseconds (as PostgreSQL stores it).
func (ev Event) cleaned() Event {
	ev.ID = cleanID(ev.ID)
	ev.Time = ev.Time.UTC().Truncate(time.Microsecond)
	ev.Tenant = clean(ev.Tenant, maxField)
	ev.Conversation = clean(ev.Conversation, maxField)
	ev.Lane = clean(ev.Lane, maxField)
	ev.Channel = clean(ev.Channel, maxField)
	ev.Reason = clean(ev.Reason, maxField)
	ev.Detail = clean(ev.Detail, maxDetail)
	ev.Address = clean(ev.Address, maxAddress)
	return ev
}

// clean makes s valid UTF-8 without NUL bytes (PostgreSQL text accepts neither)
// and at most max bytes, cut on a character boundary.
func clean(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) > max {
		for max > 0 && !utf8.RuneStart(s[max]) {
			max--
		}
		s = s[:max]
	}
	return s
}

// cleanID is clean for the identity column: an over-long ID keeps a prefix and
// gains a hash of the whole ID, so distinct IDs stay distinct and the same ID
// always maps to the same value.
func cleanID(id string) string {
	c := clean(id, len(id))
	if len(c) <= maxField {
		return c
	}
	sum := sha256.Sum256([]byte(id))
	return clean(c, maxField-17) + "~" + hex.EncodeToString(sum[:8])
}

// MaskAddress hides an address while keeping it useful for grouping: the same
// address (ignoring case) under the same key always gives the same mask.
// Emails keep their domain: "h:<16 hex>@example.com"; anything else becomes
// "h:<16 hex>". The hex is the first 8 bytes of HMAC-SHA256(key, lower-cased
// address). An empty address stays empty.
func MaskAddress(key []byte, addr string) string {
	return newMasker(key).mask(addr)
}

// masker is MaskAddress under one key, reusing its HMAC states: the writer
// masks every detailed row, and a new HMAC per address was a visible share
// of the bulk lane's profile.
type masker struct {
	macs sync.Pool // hash.Hash
}

func newMasker(key []byte) *masker {
	key = append([]byte(nil), key...)
	return &masker{macs: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

func (m *masker) mask(addr string) string {
	if addr == "" {
		return ""
	}
	lower := strings.ToLower(addr)
	mac := m.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write([]byte(lower))
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	m.macs.Put(mac)
	domain := ""
	if at := strings.LastIndexByte(lower, '@'); at >= 0 && at < len(lower)-1 {
		domain = lower[at:]
	}
	out := make([]byte, 0, 2+16+len(domain))
	out = append(out, "h:"...)
	out = hex.AppendEncode(out, sum[:8])
	return string(append(out, domain...))
}
