// Package feedback reads bounce and complaint reports, in sluice's generic
// shape and in Amazon SES's notification shape (raw or wrapped in an SNS
// notification), keeps per-conversation counts of them (it owns the
// feedback_counts table) and decides when a conversation's hard-bounce or
// complaint share calls for a pause.
//
// The generic shape:
//
//	{"events": [{"type": "bounce", "bounce_type": "hard", "address": "a@example.com", "conversation": "spring"},
//	            {"type": "complaint", "address": "b@example.com"}]}
//
// type is bounce or complaint; bounce_type hard (permanent) or soft
// (transient; the default); conversation is optional.
//
// SES: a Bounce notification with bounceType Permanent is a hard bounce of
// each bouncedRecipients[].emailAddress, Transient or Undetermined a soft
// one; a Complaint notification is a complaint of each
// complainedRecipients[].emailAddress. The conversation is read from the
// X-Sluice-Conversation header among mail.headers, which SES includes when
// the identity's "include original headers" is on.
package feedback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Types of an Event.
const (
	TypeBounce    = "bounce"
	TypeComplaint = "complaint"
	BounceHard    = "hard"
	BounceSoft    = "soft"
)

// Event is one recipient's bounce or complaint.
type Event struct {
	Type         string `json:"type"`
	BounceType   string `json:"bounce_type,omitempty"`
	Address      string `json:"address"`
	Conversation string `json:"conversation,omitempty"`
}

// Suppresses reports whether e puts its address on the suppression list:
// hard bounces and complaints do, soft bounces are only counted.
func (e Event) Suppresses() bool {
	return e.Type == TypeComplaint || (e.Type == TypeBounce && e.BounceType == BounceHard)
}

// Reason is the suppression reason of e: hard_bounce or complaint.
func (e Event) Reason() string {
	if e.Type == TypeComplaint {
		return "complaint"
	}
	return e.BounceType + "_bounce"
}

// ErrInvalid is matched by the errors of a body that is no known shape.
var ErrInvalid = errors.New("feedback: invalid report")

// MaxEvents bounds the events of one report.
const MaxEvents = 1000

// ConversationHeader is the header SES echoes that names the conversation
// (email.HeaderConversation).
const ConversationHeader = "X-Sluice-Conversation"

// Parse reads a report in any of the accepted shapes.
func Parse(body []byte) ([]Event, error) {
	var probe struct {
		Type             string          `json:"Type"`
		Message          string          `json:"Message"`
		NotificationType string          `json:"notificationType"`
		EventType        string          `json:"eventType"`
		Events           json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrInvalid, err)
	}
	var evs []Event
	var err error
	switch {
	case probe.Type == "SubscriptionConfirmation":
		return nil, fmt.Errorf("%w: an SNS subscription confirmation: confirm it by opening its SubscribeURL", ErrInvalid)
	case probe.Type == "Notification":
		return Parse([]byte(probe.Message))
	case probe.NotificationType != "" || probe.EventType != "":
		evs, err = parseSES(body)
	case probe.Events != nil:
		evs, err = parseGeneric(probe.Events)
	default:
		return nil, fmt.Errorf("%w: want {\"events\": [...]}, an SES notification or an SNS notification wrapping one", ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	if len(evs) > MaxEvents {
		return nil, fmt.Errorf("%w: %d events, at most %d per report", ErrInvalid, len(evs), MaxEvents)
	}
	return evs, nil
}

func parseGeneric(raw json.RawMessage) ([]Event, error) {
	var evs []Event
	if err := json.Unmarshal(raw, &evs); err != nil {
		return nil, fmt.Errorf("%w: events: %v", ErrInvalid, err)
	}
	for i := range evs {
		e := &evs[i]
		if e.Type == TypeBounce && e.BounceType == "" {
			e.BounceType = BounceSoft
		}
		switch {
		case e.Type != TypeBounce && e.Type != TypeComplaint:
			return nil, fmt.Errorf("%w: events[%d].type %q: want bounce or complaint", ErrInvalid, i, e.Type)
		case e.Type == TypeBounce && e.BounceType != BounceHard && e.BounceType != BounceSoft:
			return nil, fmt.Errorf("%w: events[%d].bounce_type %q: want hard or soft", ErrInvalid, i, e.BounceType)
		case strings.TrimSpace(e.Address) == "" || len(e.Address) > 320:
			return nil, fmt.Errorf("%w: events[%d].address: required, at most 320 bytes", ErrInvalid, i)
		}
		if e.Type == TypeComplaint {
			e.BounceType = ""
		}
	}
	return evs, nil
}

// sesNotification is the part of an SES notification (or event
// publishing record, eventType) that feedback reads.
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Bounce           struct {
		BounceType        string `json:"bounceType"`
		BouncedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Complaint struct {
		ComplainedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
	} `json:"complaint"`
	Mail struct {
		Headers []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"headers"`
	} `json:"mail"`
}

func parseSES(body []byte) ([]Event, error) {
	var n sesNotification
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("%w: SES notification: %v", ErrInvalid, err)
	}
	conv := ""
	for _, h := range n.Mail.Headers {
		if strings.EqualFold(h.Name, ConversationHeader) {
			conv = h.Value
		}
	}
	kind := n.NotificationType
	if kind == "" {
		kind = n.EventType
	}
	var evs []Event
	switch kind {
	case "Bounce":
		bt := BounceSoft
		if n.Bounce.BounceType == "Permanent" {
			bt = BounceHard
		}
		for _, r := range n.Bounce.BouncedRecipients {
			evs = append(evs, Event{Type: TypeBounce, BounceType: bt, Address: r.EmailAddress, Conversation: conv})
		}
	case "Complaint":
		for _, r := range n.Complaint.ComplainedRecipients {
			evs = append(evs, Event{Type: TypeComplaint, Address: r.EmailAddress, Conversation: conv})
		}
	case "Delivery", "Send", "Open", "Click", "Reject", "DeliveryDelay", "Rendering Failure", "Subscription":
		// Not feedback about a recipient: accepted and ignored.
	default:
		return nil, fmt.Errorf("%w: SES notification type %q", ErrInvalid, kind)
	}
	for i, e := range evs {
		if strings.TrimSpace(e.Address) == "" {
			return nil, fmt.Errorf("%w: SES recipient %d without emailAddress", ErrInvalid, i)
		}
	}
	return evs, nil
}

// Counts are one conversation's feedback totals.
type Counts struct {
	HardBounces int64 `json:"hard_bounces"`
	SoftBounces int64 `json:"soft_bounces"`
	Complaints  int64 `json:"complaints"`
}

// Store counts feedback per conversation and minute in feedback_counts.
// Safe for concurrent use.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Add counts e against its conversation in the current minute. An event
// without a conversation is not counted.
func (s *Store) Add(ctx context.Context, tenant string, e Event) error {
	if e.Conversation == "" {
		return nil
	}
	var hard, soft, compl int64
	switch {
	case e.Type == TypeComplaint:
		compl = 1
	case e.BounceType == BounceHard:
		hard = 1
	default:
		soft = 1
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO feedback_counts AS f (tenant, conversation, minute, hard_bounces, soft_bounces, complaints)
		VALUES ($1, $2, date_trunc('minute', now()), $3, $4, $5)
		ON CONFLICT (tenant, conversation, minute) DO UPDATE SET hard_bounces = f.hard_bounces + $3,
			soft_bounces = f.soft_bounces + $4, complaints = f.complaints + $5`, tenant, e.Conversation, hard, soft, compl)
	if err != nil {
		return fmt.Errorf("feedback: count: %w", err)
	}
	return nil
}

// Since returns a conversation's feedback counted in the minutes from the
// one that holds since on.
func (s *Store) Since(ctx context.Context, tenant, conversation string, since time.Time) (Counts, error) {
	var c Counts
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(hard_bounces), 0)::bigint, coalesce(sum(soft_bounces), 0)::bigint,
			coalesce(sum(complaints), 0)::bigint
		FROM feedback_counts WHERE tenant = $1 AND conversation = $2 AND minute >= date_trunc('minute', $3::timestamptz)`,
		tenant, conversation, since).Scan(&c.HardBounces, &c.SoftBounces, &c.Complaints)
	if err != nil {
		return Counts{}, fmt.Errorf("feedback: counts: %w", err)
	}
	return c, nil
}
