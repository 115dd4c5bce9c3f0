package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/feedback"
	"github.com/sluicehq/sluice/suppression"
)

// FeedbackConfig configures POST /v1/feedback.
type FeedbackConfig struct {
	// Store is the suppression lists; nil (no mask key) answers 503.
	Store *suppression.Store
	// Counts keeps the per-conversation feedback totals. Required.
	Counts *feedback.Store
	// Thresholds decide when a conversation is paused; zero fields take
	// the feedback package's defaults.
	Thresholds feedback.Thresholds
	// Pause quarantines a conversation (control.Store's Quarantine).
	// Required.
	Pause func(ctx context.Context, tenant, conversation, reason string) (bool, error)
}

// Feedback serves POST /v1/feedback (a tenant key with admin): bounces and
// complaints, in the shapes package feedback reads (generic, SES, SES in
// SNS). Hard bounces and complaints put the address on the tenant's
// suppression list (source feedback, reason hard_bounce or complaint);
// soft bounces are only counted. Events naming a conversation are counted
// against it, and a conversation whose hard-bounce or complaint share of
// its delivered messages passes the thresholds is quarantined (paused for
// an operator, like the invalid-address quarantine). The answer counts
// what was done: {"events", "suppressed", "soft_bounces", "paused"}.
type Feedback struct {
	c   *Campaigns
	cfg FeedbackConfig
}

// maxFeedbackBody bounds a report (SES notifications are a few KB; the
// generic shape carries up to feedback.MaxEvents events).
const maxFeedbackBody = 1 << 20

// NewFeedback returns the feedback route, authenticated and instrumented
// by c.
func NewFeedback(c *Campaigns, cfg FeedbackConfig) (*Feedback, error) {
	switch {
	case c == nil:
		return nil, errors.New("api: NewFeedback needs the Campaigns (authentication, metrics)")
	case cfg.Counts == nil:
		return nil, errors.New("api: FeedbackConfig.Counts is required")
	case cfg.Pause == nil:
		return nil, errors.New("api: FeedbackConfig.Pause is required")
	}
	cfg.Thresholds.SetDefaults()
	if err := cfg.Thresholds.Validate(); err != nil {
		return nil, err
	}
	return &Feedback{c: c, cfg: cfg}, nil
}

// Register adds the route to s.
func (f *Feedback) Register(s *Server) {
	f.c.handle(s, "POST /v1/feedback", ScopeAdmin, f.post)
}

type feedbackResult struct {
	Events      int      `json:"events"`
	Suppressed  int      `json:"suppressed"`
	SoftBounces int      `json:"soft_bounces"`
	Paused      []string `json:"paused"`
}

func (f *Feedback) post(w http.ResponseWriter, r *http.Request) {
	if f.cfg.Store == nil {
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "Suppression not configured",
			"this server has no mask key (SLUICE_ERRORLOG_MASK_KEY) to hash addresses with")
		return
	}
	// SNS posts text/plain; any content type is read as JSON.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFeedbackBody))
	if err != nil {
		problem(w, http.StatusRequestEntityTooLarge, ProblemInvalidRequest, "Report too large", "at most 1 MiB")
		return
	}
	evs, err := feedback.Parse(body)
	if err != nil {
		problem(w, http.StatusUnprocessableEntity, ProblemInvalidRequest, "Invalid feedback", err.Error())
		return
	}
	p, _ := PrincipalFrom(r.Context())
	res, err := f.apply(r.Context(), p.Tenant, evs)
	if err != nil {
		f.c.log.Error("feedback failed", "tenant", p.Tenant, "err", err)
		w.Header().Set("Retry-After", "2")
		problem(w, http.StatusServiceUnavailable, ProblemUnavailable, "", "the feedback could not be stored; retry (applying it twice is harmless for suppression, but counts it twice)")
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// judge returns why a conversation's feedback over the thresholds' window
// should pause it, or "" (also for a conversation that does not exist:
// its feedback is counted, it is never paused).
func (f *Feedback) judge(ctx context.Context, tenant, conversation string) (string, error) {
	if _, err := ConversationCounts(ctx, f.c.pool, tenant, conversation); errors.Is(err, ErrConversationNotFound) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	since := time.Now().Add(-f.cfg.Thresholds.Window)
	c, err := f.cfg.Counts.Since(ctx, tenant, conversation, since)
	if err != nil {
		return "", err
	}
	delivered, err := errorlog.DeliveredSince(ctx, f.c.pool, tenant, conversation, since)
	if err != nil {
		return "", err
	}
	return f.cfg.Thresholds.Exceeded(c, delivered), nil
}

// apply suppresses, counts and pauses for evs.
func (f *Feedback) apply(ctx context.Context, tenant string, evs []feedback.Event) (feedbackResult, error) {
	res := feedbackResult{Events: len(evs), Paused: []string{}}
	paused := map[string]bool{}
	for _, e := range evs {
		if e.Suppresses() {
			if _, _, err := f.cfg.Store.Add(ctx, tenant, e.Address, e.Reason(), suppression.SourceFeedback); err != nil {
				return res, err
			}
			res.Suppressed++
		} else {
			res.SoftBounces++
		}
		if err := f.cfg.Counts.Add(ctx, tenant, e); err != nil {
			return res, err
		}
		if e.Conversation == "" || paused[e.Conversation] {
			continue
		}
		why, err := f.judge(ctx, tenant, e.Conversation)
		if err != nil {
			return res, err
		}
		if why != "" {
			ok, err := f.cfg.Pause(ctx, tenant, e.Conversation, why)
			if err != nil {
				return res, err
			}
			if ok {
				paused[e.Conversation] = true
				res.Paused = append(res.Paused, e.Conversation)
			}
		}
	}
	return res, nil
}
