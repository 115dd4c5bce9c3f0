package console

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/conversation"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/orchestrator"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
	"github.com/sluicehq/sluice/wire"
)

// scopeTenant is the tenant whose data p may read: "" (every tenant's) for
// an operator, its own otherwise.
func scopeTenant(p api.Principal) string {
	if p.Operator() {
		return ""
	}
	return p.Tenant
}

// convRow is one conversation with its exact counts.
type convRow struct {
	Tenant, ID, Name, State, Channel, Lane string
	CreatedAt                              time.Time
	Counts                                 api.Counts
}

// Done is how many messages have an outcome.
func (c convRow) Done() int64 { return max(0, c.Counts.Accepted-c.Counts.Pending) }

// Handled is how many went through a worker (every outcome but purged).
func (c convRow) Handled() int64 {
	k := c.Counts
	return k.Delivered + k.Invalid + k.Failed + k.Suppressed + k.Expired
}

// InvalidShare is the share of invalid among the handled, in percent.
func (c convRow) InvalidShare() float64 {
	if c.Handled() == 0 {
		return 0
	}
	return 100 * float64(c.Counts.Invalid) / float64(c.Handled())
}

// Key is the row's DOM id part.
func (c convRow) Key() string { return c.Tenant + "-" + c.ID }

// listRows returns the conversations f selects with their counts.
func (c *Console) listRows(ctx context.Context, f conversation.ListFilter) ([]convRow, error) {
	ls, err := conversation.List(ctx, c.cfg.Pool, f)
	if err != nil {
		return nil, err
	}
	byTenant := map[string][]string{}
	for _, l := range ls {
		byTenant[l.Tenant] = append(byTenant[l.Tenant], l.ID)
	}
	outcomes := map[string]map[string]errorlog.Outcomes{}
	for tenant, ids := range byTenant {
		if outcomes[tenant], err = errorlog.CountsOf(ctx, c.cfg.Pool, tenant, ids); err != nil {
			return nil, err
		}
	}
	rows := make([]convRow, len(ls))
	for i, l := range ls {
		rows[i] = convRow{Tenant: l.Tenant, ID: l.ID, Name: l.Name, State: l.State, Channel: l.Channel, Lane: l.Lane,
			CreatedAt: l.CreatedAt, Counts: api.CountsFrom(l.Accepted, l.Purged, outcomes[l.Tenant][l.ID])}
	}
	return rows, nil
}

// oneRow returns one conversation with its counts, if p may see it.
func (c *Console) oneRow(ctx context.Context, p api.Principal, tenant, id string) (convRow, error) {
	if !wire.ValidToken(tenant) || !wire.ValidToken(id) || !api.MayAct(p, tenant) {
		return convRow{}, notFound("conversation")
	}
	row, err := conversation.Load(ctx, c.cfg.Pool, tenant, id)
	if errors.Is(err, conversation.ErrNotFound) {
		return convRow{}, notFound("conversation")
	}
	if err != nil {
		return convRow{}, err
	}
	counts, err := api.ConversationCounts(ctx, c.cfg.Pool, tenant, id)
	if err != nil {
		return convRow{}, err
	}
	return convRow{Tenant: tenant, ID: id, Name: row.Name, State: row.State, Channel: row.Channel, Lane: row.Lane,
		CreatedAt: row.CreatedAt, Counts: counts}, nil
}

// listBody is the conversations page.
type listBody struct {
	Search, State string
	States        []string
	Rows          []convRow
}

func (c *Console) listModel(ctx context.Context, p api.Principal, search, state string) (listBody, error) {
	states := []string{conversation.StateActive, conversation.StatePaused, conversation.StateQuarantined, conversation.StateStopped}
	if state != "" && !slices.Contains(states, state) {
		return listBody{}, badRequest("state: want active, paused, quarantined or stopped")
	}
	rows, err := c.listRows(ctx, conversation.ListFilter{Tenant: scopeTenant(p), Search: search, State: state})
	return listBody{Search: search, State: state, States: states, Rows: rows}, err
}

// stormRow is a conversation of the storm view.
type stormRow struct {
	convRow
	// Errors are its undeliverable messages over the window.
	Errors  int64
	Reasons []errorlog.ReasonCount
	// Quarantine is set for a quarantined conversation.
	Quarantine *quarantine
}

// quarantine is when and after what a conversation was quarantined: the
// audit entry's time, the time since the conversation was created, the
// messages handled before (its counts stop moving once it is held) and
// those held.
type quarantine struct {
	At      time.Time
	After   time.Duration
	Handled int64
	Held    int64
	Reason  string
}

// stormBody is the storm view.
type stormBody struct {
	Window string
	Rows   []stormRow
}

// stormModel lists the conversations writing the most errors over the
// window and every quarantined one, quarantined first (latest first).
func (c *Console) stormModel(ctx context.Context, p api.Principal) (stormBody, error) {
	body := stormBody{Window: c.cfg.StormWindow.String()}
	top, err := c.cfg.Control.TopErrorsReport(ctx, c.cfg.StormWindow, errorlog.MaxTopLimit)
	if err != nil {
		return body, err
	}
	held, err := c.cfg.Control.Conversations(ctx, scopeTenant(p), control.StateQuarantined)
	if err != nil {
		return body, err
	}
	seen := map[[2]string]int{}
	add := func(tenant, id string) (*stormRow, error) {
		if i, ok := seen[[2]string{tenant, id}]; ok {
			return &body.Rows[i], nil
		}
		row, err := c.oneRow(ctx, p, tenant, id)
		if err != nil {
			return nil, err
		}
		seen[[2]string{tenant, id}] = len(body.Rows)
		body.Rows = append(body.Rows, stormRow{convRow: row})
		return &body.Rows[len(body.Rows)-1], nil
	}
	for _, h := range held {
		r, err := add(h.Tenant, h.Conversation)
		if err != nil {
			return body, ignoreGone(err)
		}
		if r.Quarantine, err = c.quarantineOf(ctx, r.convRow, h.Reason); err != nil {
			return body, err
		}
	}
	for _, t := range top.Conversations {
		if !api.MayAct(p, t.Tenant) || len(body.Rows) >= 50 && seen[[2]string{t.Tenant, t.Conversation}] == 0 {
			continue
		}
		r, err := add(t.Tenant, t.Conversation)
		if err != nil {
			return body, ignoreGone(err)
		}
		r.Errors, r.Reasons = t.Total, t.Reasons
	}
	slices.SortStableFunc(body.Rows, func(a, b stormRow) int {
		if (a.Quarantine != nil) != (b.Quarantine != nil) {
			return map[bool]int{true: -1, false: 1}[a.Quarantine != nil]
		}
		if a.Quarantine != nil {
			return b.Quarantine.At.Compare(a.Quarantine.At)
		}
		return cmp.Compare(b.Errors, a.Errors)
	})
	return body, nil
}

// ignoreGone drops a not-found error: a conversation listed by the control
// plane but missing from the table is skipped, not a failure.
func ignoreGone(err error) error {
	var pe *pageError
	if errors.As(err, &pe) && pe.status == http.StatusNotFound {
		return nil
	}
	return err
}

// quarantineOf reads a quarantined conversation's quarantine from the
// audit trail.
func (c *Console) quarantineOf(ctx context.Context, row convRow, reason string) (*quarantine, error) {
	key, err := control.ConversationKey(row.Tenant, row.ID)
	if err != nil {
		return nil, err
	}
	es, err := c.cfg.Control.Audit(ctx, control.AuditFilter{KeyPrefix: key, Actor: control.ActorQuarantine, Limit: 1})
	if err != nil {
		return nil, err
	}
	q := &quarantine{Handled: row.Handled(), Held: row.Counts.Pending, Reason: reason}
	if len(es) == 1 {
		q.At = es[0].At
		q.After = q.At.Sub(row.CreatedAt).Round(100 * time.Millisecond)
	}
	return q, nil
}

// detailBody is one conversation's page.
type detailBody struct {
	convRow
	Control control.ConversationInfo
	Queued  uint64
	Minutes []minuteBar
	Audit   []control.AuditEntry
}

func (c *Console) detailModel(ctx context.Context, p api.Principal, tenant, id string) (detailBody, error) {
	row, err := c.oneRow(ctx, p, tenant, id)
	if err != nil {
		return detailBody{}, err
	}
	b := detailBody{convRow: row}
	if b.Control, err = c.cfg.Control.ConversationInfo(ctx, tenant, id); err != nil {
		return b, err
	}
	if b.Queued, err = orchestrator.QueuedConversation(ctx, c.cfg.JS, tenant, id); err != nil {
		return b, err
	}
	ms, err := errorlog.Minutes(ctx, c.cfg.Pool, tenant, id, time.Now().Add(-time.Hour))
	if err != nil {
		return b, err
	}
	b.Minutes = minuteBars(ms)
	key, _ := control.ConversationKey(tenant, id)
	b.Audit, err = c.cfg.Control.Audit(ctx, control.AuditFilter{KeyPrefix: key, Limit: 10})
	return b, err
}

// overviewBody is the overview: the fleet for an operator, the tenant's
// conversations for a tenant's admin.
type overviewBody struct {
	Operator bool
	Report   status.Report
	Lanes    []laneChart
	Modes    []control.AuditEntry
	Rows     []convRow
	// Channels have a switch each.
	Channels []dispatch.Channel
}

func (c *Console) overviewModel(ctx context.Context, p api.Principal) (overviewBody, error) {
	if !p.Operator() {
		rows, err := c.listRows(ctx, conversation.ListFilter{Tenant: p.Tenant, Limit: 20})
		return overviewBody{Rows: rows}, err
	}
	b := overviewBody{Operator: true, Report: c.cfg.Status(ctx),
		Channels: []dispatch.Channel{dispatch.ChannelEmail, dispatch.ChannelSMS, dispatch.ChannelPush}}
	b.Lanes = c.sampler.charts(b.Report.Lanes)
	modes, err := c.cfg.Control.Audit(ctx, control.AuditFilter{KeyPrefix: control.KeyErrorLogMode, Limit: 5})
	if err != nil && !errors.Is(err, control.ErrNoDatabase) {
		c.log.Warn("console: read the error-log mode's changes", "err", err)
	}
	b.Modes = modes
	return b, nil
}

// auditBody is the audit page.
type auditBody struct {
	Key, Actor, Since string
	Entries           []control.AuditEntry
	// Older is the id to page back from ("" when this is the end).
	Older int64
}

func (c *Console) auditModel(ctx context.Context, r *http.Request, p api.Principal) (auditBody, error) {
	q := r.URL.Query()
	f, err := api.AuditQuery(q, p, time.Now())
	if err != nil {
		return auditBody{}, badRequest(err.Error())
	}
	f.Limit = 100
	b := auditBody{Key: q.Get("key"), Actor: q.Get("actor"), Since: q.Get("since")}
	b.Entries, err = c.cfg.Control.Audit(ctx, f)
	if errors.Is(err, control.ErrInvalid) {
		return b, badRequest(err.Error())
	}
	if len(b.Entries) == f.Limit {
		b.Older = b.Entries[len(b.Entries)-1].ID
	}
	return b, err
}
