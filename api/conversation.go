package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/conversation"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/jsensure"
	"github.com/sluicehq/sluice/wire"
)

// ConversationsBucket is the NATS KV bucket the API publishes conversations
// to and the workers watch, one key per conversation: <tenant>.<id>, value
// a JSON ConversationEntry.
const ConversationsBucket = "sluice_conversations"

// Conversation states, the values of conversations.state and of
// ConversationEntry.State. The API creates conversations active; the others
// are set by operations (pause, quarantine, stop).
const (
	StateActive      = conversation.StateActive
	StatePaused      = conversation.StatePaused
	StateQuarantined = conversation.StateQuarantined
	StateStopped     = conversation.StateStopped
)

// Template is the message of a conversation, in Go template syntax with the
// activation's vars as {{.name}} (see dispatch.ParseTemplate). Email needs
// Subject and Text or HTML; SMS needs Text only; push needs Text, and
// Subject is its title.
type Template = conversation.Template

// ConversationEntry is the value of a conversation in ConversationsBucket:
// what a worker needs to send its messages, without asking Postgres. State
// is the state at the last write of the entry (active at creation); where a
// control plane keeps the live state (CampaignDeps.ConversationState), that
// one decides.
type ConversationEntry struct {
	Tenant          string           `json:"tenant"`
	ID              string           `json:"id"`
	Channel         dispatch.Channel `json:"channel"`
	Lane            wire.Lane        `json:"lane"`
	Template        Template         `json:"template"`
	TemplateVersion int              `json:"template_version"`
	State           string           `json:"state"`
	UpdatedAt       time.Time        `json:"updated_at"`
}

// ConversationKey is the key of a conversation in ConversationsBucket.
func ConversationKey(tenant, id string) string { return tenant + "." + id }

// EnsureConversationsBucket returns ConversationsBucket, creating it when
// missing with a history of 5 values per key and the given replicas (0: 1),
// and scaling an existing one to them (jsensure.KeyValue). logger may be nil.
func EnsureConversationsBucket(ctx context.Context, js jetstream.JetStream, replicas int, logger *slog.Logger) (jetstream.KeyValue, error) {
	kv, err := jsensure.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      ConversationsBucket,
		Description: "sluice conversations (<tenant>.<id>): channel, lane, template and state for the workers",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return kv, nil
}

// Conversation is the API's view of a conversation.
type Conversation struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	Channel         string   `json:"channel"`
	Lane            string   `json:"lane"`
	Template        Template `json:"template"`
	TemplateVersion int      `json:"template_version"`
	State           string   `json:"state"`
	// TTL is the default time-to-live of the conversation's messages in
	// seconds (0: none).
	TTL       int       `json:"ttl,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Counts    *Counts   `json:"counts,omitempty"`
}

// Counts are the exact counts of a conversation. At rest,
// Accepted = Delivered + Invalid + Failed + Suppressed + Expired + Purged.
// Every outcome is the one the pipeline decided and stored with the count
// (errorlog.Counts); nothing here re-derives it from a reason.
type Counts struct {
	// Accepted activations: stored in the stream (conversations.accepted).
	Accepted int64 `json:"accepted"`
	// Delivered to a provider, each activation once.
	Delivered int64 `json:"delivered"`
	// Invalid: the address or the message could not be used.
	Invalid int64 `json:"invalid"`
	// Failed: refused by the provider or out of delivery attempts.
	Failed int64 `json:"failed"`
	// Suppressed: the recipient is on the tenant's suppression list.
	Suppressed int64 `json:"suppressed"`
	// Expired: waited longer than the conversation allows.
	Expired int64 `json:"expired"`
	// Purged from the queue by a stop (conversations.purged).
	Purged int64 `json:"purged"`
	// Pending is Accepted minus the rest, and never below 0: while a request
	// is being published, workers may count a message before the API has
	// recorded its acceptance.
	Pending int64 `json:"pending"`
	// InvalidReasons and FailedReasons split Invalid and Failed by reason.
	InvalidReasons map[string]int64 `json:"invalid_reasons"`
	FailedReasons  map[string]int64 `json:"failed_reasons"`
}

// Querier is what ConversationCounts needs: *pgxpool.Pool, *pgx.Conn and
// pgx.Tx have it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrConversationNotFound is returned for a conversation that does not exist
// (in this tenant).
var ErrConversationNotFound = errors.New("api: conversation not found")

// ConversationCounts returns the counts of a conversation. Pass a REPEATABLE
// READ transaction for counts from one snapshot.
func ConversationCounts(ctx context.Context, q Querier, tenant, id string) (Counts, error) {
	var c Counts
	var err error
	c.Accepted, c.Purged, err = conversation.Totals(ctx, q, tenant, id)
	if errors.Is(err, conversation.ErrNotFound) {
		return Counts{}, ErrConversationNotFound
	}
	if err != nil {
		return Counts{}, fmt.Errorf("api: counts: %w", err)
	}
	o, err := errorlog.Counts(ctx, q, tenant, id)
	if err != nil {
		return Counts{}, err
	}
	return CountsFrom(c.Accepted, c.Purged, o), nil
}

// CountsFrom assembles a conversation's Counts from the conversations
// table's accepted and purged and the pipeline's stored outcomes, for
// readers of many conversations at once (the console's list).
func CountsFrom(accepted, purged int64, o errorlog.Outcomes) Counts {
	c := Counts{Accepted: accepted, Purged: purged}
	c.Delivered = o.Count[wire.OutcomeDelivered]
	c.Invalid, c.Failed = o.Count[wire.OutcomeInvalid], o.Count[wire.OutcomeFailed]
	c.Suppressed, c.Expired = o.Count[wire.OutcomeSuppressed], o.Count[wire.OutcomeExpired]
	c.InvalidReasons, c.FailedReasons = orEmpty(o.Reasons[wire.OutcomeInvalid]), orEmpty(o.Reasons[wire.OutcomeFailed])
	c.Pending = max(0, c.Accepted-c.Delivered-c.Invalid-c.Failed-c.Suppressed-c.Expired-c.Purged)
	return c
}

// orEmpty returns m, or an empty map for nil, so JSON shows {} not null.
func orEmpty(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

// createRequest is the body of POST /v1/conversations.
type createRequest struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Channel  string   `json:"channel"`
	Lane     string   `json:"lane"`
	Template Template `json:"template"`
	// TTL, in seconds, makes every activation without its own expires_at
	// expire that long after it is accepted. Optional.
	TTL int `json:"ttl"`
}

// Limits of a conversation definition.
const (
	maxCreateBody    = 512 << 10
	maxNameBytes     = 200
	maxSubjectBytes  = 998 // an RFC 5322 line
	maxTemplateBytes = 256 << 10
	maxTTLSeconds    = 30 * 24 * 3600
)

func (r *createRequest) validate() error {
	if r.ID != "" && !wire.ValidToken(r.ID) {
		return errors.New("id: want 1-64 of [A-Za-z0-9_-], or leave it out to have one generated")
	}
	if strings.TrimSpace(r.Name) == "" || len(r.Name) > maxNameBytes {
		return fmt.Errorf("name: required, at most %d bytes", maxNameBytes)
	}
	for _, f := range []struct{ name, value string }{
		{"name", r.Name}, {"template.subject", r.Template.Subject}, {"template.text", r.Template.Text}, {"template.html", r.Template.HTML},
	} {
		if err := checkText(f.name, f.value); err != nil {
			return err
		}
	}
	if _, err := dispatch.ParseChannel(r.Channel); err != nil {
		return fmt.Errorf("channel: want email, sms or push")
	}
	if !wire.Lane(r.Lane).Valid() {
		return errors.New("lane: want transactional or bulk")
	}
	if r.TTL < 0 || r.TTL > maxTTLSeconds {
		return fmt.Errorf("ttl: want seconds from 1 to %d, or leave it out", maxTTLSeconds)
	}
	t := r.Template
	if len(t.Subject)+len(t.Text)+len(t.HTML) > maxTemplateBytes {
		return fmt.Errorf("template: larger than %d bytes", maxTemplateBytes)
	}
	switch dispatch.Channel(r.Channel) {
	case dispatch.ChannelEmail:
		if t.Subject == "" || len(t.Subject) > maxSubjectBytes || strings.ContainsAny(t.Subject, "\r\n") {
			return fmt.Errorf("template.subject: required for email, one line of at most %d bytes", maxSubjectBytes)
		}
		if t.Text == "" && t.HTML == "" {
			return errors.New("template: email needs text or html")
		}
	case dispatch.ChannelPush:
		if t.Text == "" {
			return errors.New("template.text: required for push")
		}
		if t.HTML != "" {
			return errors.New("template: push takes text and an optional subject (the title), not html")
		}
	default:
		if t.Text == "" {
			return fmt.Errorf("template.text: required for %s", r.Channel)
		}
		if t.Subject != "" || t.HTML != "" {
			return fmt.Errorf("template: %s takes text only, not subject or html", r.Channel)
		}
	}
	// Parsed as the workers will (Go templates: {{.name}}), so a broken
	// template is refused here rather than failing every message.
	if _, err := dispatch.ParseTemplate(dispatch.TemplateSource{Subject: t.Subject, Text: t.Text, HTML: t.HTML}); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "dispatch: "))
	}
	return nil
}

func (c *Campaigns) createConversation(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	if !jsonContent(w, r) {
		return
	}
	var req createRequest
	if !readJSON(w, r, maxCreateBody, &req) {
		return
	}
	if err := req.validate(); err != nil {
		problem(w, http.StatusUnprocessableEntity, ProblemInvalidRequest, "Invalid conversation", err.Error())
		return
	}
	if req.ID == "" {
		req.ID = "cv_" + randomHex(10)
	}
	conv, created, err := c.insertConversation(r.Context(), p.Tenant, &req)
	switch {
	case errors.Is(err, errConversationConflict):
		problem(w, http.StatusConflict, ProblemConversationExists, "Conversation exists",
			"conversation "+req.ID+" already exists with a different definition")
		return
	case inputError(err):
		refuseInput(w, "the conversation")
		return
	case err != nil:
		c.log.Error("create conversation failed", "tenant", p.Tenant, "conversation", req.ID, "err", err)
		w.Header().Set("Retry-After", "2")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the conversation could not be stored; retry")
		return
	}
	w.Header().Set("Location", "/v1/conversations/"+conv.ID)
	status := http.StatusOK // the same definition again: an idempotent retry
	if created {
		status = http.StatusCreated
		c.log.Info("conversation created", "tenant", p.Tenant, "conversation", conv.ID,
			"channel", conv.Channel, "lane", conv.Lane, "key_id", p.KeyID)
	}
	writeJSON(w, status, conv)
}

var errConversationConflict = errors.New("api: conversation exists with a different definition")

// insertConversation stores the conversation and publishes it to the KV
// bucket before committing, so a conversation the API acknowledges is always
// in both. An identical definition under an existing id returns the
// existing conversation with created false.
func (c *Campaigns) insertConversation(ctx context.Context, tenant string, req *createRequest) (Conversation, bool, error) {
	conv := Conversation{
		ID: req.ID, Name: req.Name, Channel: req.Channel, Lane: req.Lane,
		Template: req.Template, TemplateVersion: 1, State: StateActive, TTL: req.TTL,
	}
	tx, err := c.pool.Begin(ctx)
	if err != nil {
		return Conversation{}, false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	row := conversation.Row{Tenant: tenant, ID: req.ID, Name: req.Name, Channel: req.Channel, Lane: req.Lane, Template: req.Template, TTLSeconds: req.TTL}
	created, err := conversation.Insert(ctx, tx, &row)
	if err != nil {
		return Conversation{}, false, err
	}
	if !created {
		existing, err := loadConversation(ctx, tx, tenant, req.ID)
		if err != nil {
			return Conversation{}, false, err
		}
		if existing.Name != req.Name || existing.Channel != req.Channel || existing.Lane != req.Lane || existing.Template != req.Template || existing.TTL != req.TTL {
			return Conversation{}, false, errConversationConflict
		}
		return existing, false, nil
	}
	conv.CreatedAt, conv.TemplateVersion, conv.State = row.CreatedAt, row.TemplateVersion, row.State
	updated := row.UpdatedAt
	entry, err := json.Marshal(ConversationEntry{
		Tenant: tenant, ID: conv.ID, Channel: dispatch.Channel(conv.Channel), Lane: wire.Lane(conv.Lane),
		Template: conv.Template, TemplateVersion: conv.TemplateVersion, State: conv.State, UpdatedAt: updated,
	})
	if err != nil {
		return Conversation{}, false, err
	}
	if _, err := c.kv.Put(ctx, ConversationKey(tenant, conv.ID), entry); err != nil {
		return Conversation{}, false, fmt.Errorf("publish to %s: %w", ConversationsBucket, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Conversation{}, false, err
	}
	return conv, true, nil
}

func loadConversation(ctx context.Context, q Querier, tenant, id string) (Conversation, error) {
	r, err := conversation.Load(ctx, q, tenant, id)
	if errors.Is(err, conversation.ErrNotFound) {
		return Conversation{}, ErrConversationNotFound
	}
	if err != nil {
		return Conversation{}, fmt.Errorf("api: %w", err)
	}
	return Conversation{ID: r.ID, Name: r.Name, Channel: r.Channel, Lane: r.Lane, Template: r.Template,
		TemplateVersion: r.TemplateVersion, State: r.State, TTL: r.TTLSeconds, CreatedAt: r.CreatedAt}, nil
}

func (c *Campaigns) getConversation(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	id := r.PathValue("id")
	if !wire.ValidToken(id) {
		notFound(w, id)
		return
	}
	ctx := r.Context()
	var conv Conversation
	err := pgx.BeginTxFunc(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if conv, err = loadConversation(ctx, tx, p.Tenant, id); err != nil {
			return err
		}
		counts, err := ConversationCounts(ctx, tx, p.Tenant, id)
		conv.Counts = &counts
		return err
	})
	if err == nil && c.deps.ConversationState != nil {
		conv.State, err = c.deps.ConversationState(ctx, p.Tenant, id)
	}
	switch {
	case errors.Is(err, ErrConversationNotFound):
		notFound(w, id)
	case err != nil:
		c.log.Error("read conversation failed", "tenant", p.Tenant, "conversation", id, "err", err)
		w.Header().Set("Retry-After", "2")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the conversation could not be read; retry")
	default:
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, conv)
	}
}

// notFound answers 404 for a conversation, whether it does not exist or
// belongs to another tenant.
func notFound(w http.ResponseWriter, id string) {
	problem(w, http.StatusNotFound, ProblemNotFound, "Conversation not found",
		"no conversation "+truncate(id, 64)+" in this tenant")
}

// jsonContent accepts a body declared as JSON (or undeclared), and answers
// 415 otherwise.
func jsonContent(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return true
	}
	problem(w, http.StatusUnsupportedMediaType, ProblemUnsupportedMedia, "",
		"send Content-Type: application/json (curl: -H 'Content-Type: application/json')")
	return false
}

// jsonErrorDetail describes a decoding error without echoing input, which
// may hold addresses.
func jsonErrorDetail(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s: want %s, got %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("want %s, got %s", typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	default:
		return strings.TrimPrefix(err.Error(), "json: ")
	}
}
