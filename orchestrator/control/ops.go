package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sluicehq/sluice/conversation"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/ctxtime"
	"github.com/sluicehq/sluice/wire"
)

// DefaultStopSettle is StopConfig.Settle's default.
const DefaultStopSettle = 2 * time.Second

// Defaults of TopErrorsReport.
const (
	DefaultTopWindow = 5 * time.Minute
	DefaultTopLimit  = 20
)

// StopConfig configures StopConversation.
type StopConfig struct {
	// Purge removes a conversation's queued messages from the stream and
	// returns how many it removed (orchestrator.PurgeConversation). Required.
	Purge func(ctx context.Context, tenant, conversation string) (uint64, error)
	// Settle is how long a stop waits between setting the state and
	// purging, so that every worker has seen the state and finished the
	// sends it had begun: a message whose send is still running when the
	// purge removes it would be counted both delivered and purged. It must
	// cover the time for a change to reach the workers (milliseconds) plus a
	// typical send. Default DefaultStopSettle (2s).
	Settle time.Duration
}

// ConversationInfo is one conversation's control state, as the admin
// conversation routes answer it.
type ConversationInfo struct {
	Tenant       string            `json:"tenant"`
	Conversation string            `json:"conversation"`
	State        ConversationState `json:"state"`
	Reason       string            `json:"reason,omitempty"`
	UpdatedBy    string            `json:"updated_by,omitempty"`
	UpdatedAt    *time.Time        `json:"updated_at,omitempty"`
	// Previous is the state replaced by this change (changes only).
	Previous ConversationState `json:"previous,omitempty"`
	// Purged is how many queued messages this stop removed (stop only).
	Purged *uint64 `json:"purged,omitempty"`
}

// ConversationList is the body of GET /v1/admin/conversations.
type ConversationList struct {
	Conversations []ConversationInfo `json:"conversations"`
}

// IntakeInfo is the body of the intake routes.
type IntakeInfo struct {
	Paused    bool       `json:"paused"`
	UpdatedBy string     `json:"updated_by,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// ChannelInfo is one channel's setting, as the channel routes answer it.
type ChannelInfo struct {
	Channel   dispatch.Channel `json:"channel"`
	Disabled  bool             `json:"disabled"`
	UpdatedBy string           `json:"updated_by,omitempty"`
	UpdatedAt *time.Time       `json:"updated_at,omitempty"`
}

// ChannelList is the body of GET /v1/admin/channels.
type ChannelList struct {
	Channels []ChannelInfo `json:"channels"`
}

// TopErrorsReport is the body of GET /v1/admin/errors/top.
type TopErrorsReport struct {
	// Window is the window asked for, as a Go duration ("5m0s").
	Window        string              `json:"window"`
	Conversations []errorlog.TopError `json:"conversations"`
}

// updated returns who changed a setting and when, or nothing for a setting
// never set.
func updated[T any](st Setting[T]) (by string, at *time.Time) {
	if st.Revision == 0 {
		return "", nil
	}
	t := st.At
	return st.By, &t
}

func convInfo(tenant, id string, st Setting[ConversationStatus]) ConversationInfo {
	ci := ConversationInfo{Tenant: tenant, Conversation: id, State: st.Value.State, Reason: st.Value.Reason}
	ci.UpdatedBy, ci.UpdatedAt = updated(st)
	return ci
}

// exists checks the conversation in Postgres, when there is a database.
func (s *Store) exists(ctx context.Context, tenant, id string) error {
	if _, err := ConversationKey(tenant, id); err != nil {
		return err
	}
	if s.pool == nil {
		return nil
	}
	err := conversation.Exists(ctx, s.pool, tenant, id)
	if errors.Is(err, conversation.ErrNotFound) {
		return fmt.Errorf("%w: %s/%s", ErrNotFound, tenant, id)
	}
	return err
}

// ConversationInfo returns a conversation's control state. With a database,
// a conversation that the conversations table does not hold is ErrNotFound.
func (s *Store) ConversationInfo(ctx context.Context, tenant, id string) (ConversationInfo, error) {
	if err := s.exists(ctx, tenant, id); err != nil {
		return ConversationInfo{}, err
	}
	st, err := s.Conversation(ctx, tenant, id)
	if err != nil {
		return ConversationInfo{}, err
	}
	return convInfo(tenant, id, st), nil
}

// ChangeConversation pauses (to StatePaused) or resumes (to StateActive,
// which also ends a quarantine) a conversation for the whole fleet, audited
// with actor, mirrors the state in Postgres and returns the new state with
// the one it replaced. A stopped conversation is ErrStopped; stopping is
// StopConversation. With a database, the conversation must exist
// (ErrNotFound).
func (s *Store) ChangeConversation(ctx context.Context, tenant, id string, to ConversationState, reason, actor string) (ConversationInfo, error) {
	if to != StatePaused && to != StateActive {
		return ConversationInfo{}, fmt.Errorf("%w: conversation change to %q: want paused or active", ErrInvalid, to)
	}
	old, auditErr, err := s.setState(ctx, tenant, id, to, reason, actor)
	if err != nil {
		return ConversationInfo{}, err
	}
	if err := s.record(ctx, tenant, id, to, 0); err != nil {
		s.log.Warn("conversation state applied but not recorded in Postgres", "tenant", tenant, "conversation", id, "err", err)
	}
	return s.changed(ctx, tenant, id, old, nil, auditErr)
}

// StopConversation stops a conversation for the whole fleet (final), then,
// after cfg.Settle, purges its queued messages and adds them to
// conversations.purged. Repeating it purges again (whatever was published
// since) and is harmless. The settle, purge and count go on if ctx ends: a
// client that hangs up must not leave a stop half done.
func (s *Store) StopConversation(ctx context.Context, tenant, id, reason, actor string, cfg StopConfig) (ConversationInfo, error) {
	if cfg.Purge == nil {
		return ConversationInfo{}, errors.New("control: stop is not available: no purge configured")
	}
	settle := cmp.Or(cfg.Settle, DefaultStopSettle)
	old, auditErr, err := s.setState(ctx, tenant, id, StateStopped, reason, actor)
	if err != nil {
		return ConversationInfo{}, err
	}
	// Let every worker see the stop and finish what it was sending, then
	// remove the rest.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settle+time.Minute)
	defer cancel()
	ctxtime.Sleep(pctx, settle)
	n, err := cfg.Purge(pctx, tenant, id)
	if err == nil {
		err = s.record(pctx, tenant, id, StateStopped, n)
	}
	if err != nil {
		s.log.Error("stop: purge or count failed; repeat the stop", "tenant", tenant, "conversation", id, "purged", n, "err", err)
		return ConversationInfo{}, fmt.Errorf("stopped, but the purge did not complete (%d removed and counted so far); repeat the stop: %w", n, err)
	}
	if s.events != nil {
		s.events.Purged(tenant, id, n)
	}
	return s.changed(ctx, tenant, id, old, &n, auditErr)
}

// setState checks that the conversation exists and sets its state. A change
// applied but not audited returns its error as auditErr, for the caller to
// return once the rest of the change is done.
func (s *Store) setState(ctx context.Context, tenant, id string, to ConversationState, reason, actor string) (old ConversationStatus, auditErr, err error) {
	if err := s.exists(ctx, tenant, id); err != nil {
		return ConversationStatus{}, nil, err
	}
	old, err = s.SetConversation(ctx, tenant, id, ConversationStatus{State: to, Reason: reason}, actor)
	if errors.Is(err, ErrAudit) {
		return old, err, nil
	}
	return old, nil, err
}

// changed reads a changed conversation's state back.
func (s *Store) changed(ctx context.Context, tenant, id string, old ConversationStatus, purged *uint64, auditErr error) (ConversationInfo, error) {
	if auditErr != nil {
		return ConversationInfo{}, auditErr
	}
	st, err := s.Conversation(ctx, tenant, id)
	if err != nil {
		return ConversationInfo{}, err
	}
	ci := convInfo(tenant, id, st)
	ci.Previous, ci.Purged = old.State, purged
	return ci, nil
}

// record mirrors a conversation's state in Postgres and adds the messages a
// stop purged to its purged count.
func (s *Store) record(ctx context.Context, tenant, id string, st ConversationState, purged uint64) error {
	if s.pool == nil {
		return nil
	}
	return conversation.RecordState(ctx, s.pool, tenant, id, string(st), purged)
}

// Conversations lists the conversations whose state is set in the control
// plane, of tenant only if tenant is not empty (every tenant's otherwise),
// in state want only if want is not empty, by tenant and id.
func (s *Store) Conversations(ctx context.Context, tenant string, want ConversationState) ([]ConversationInfo, error) {
	if want != "" && !want.Valid() {
		return nil, fmt.Errorf("%w: state %q: want active, paused, stopped or quarantined", ErrInvalid, want)
	}
	filter := conversationPrefix + ">"
	if tenant != "" {
		if !wire.ValidToken(tenant) {
			return nil, fmt.Errorf("%w: tenant id %q: want 1 to 64 of [A-Za-z0-9_-]", ErrInvalid, tenant)
		}
		filter = conversationPrefix + tenant + ".>"
	}
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("control: list conversations: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := []ConversationInfo{}
	for _, key := range keys {
		t, id, ok := ConversationOfKey(key)
		if !ok {
			continue
		}
		st, err := get(ctx, s, conversationKind, key)
		if errors.Is(err, ErrInvalid) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if want == "" || st.Value.State == want {
			out = append(out, convInfo(t, id, st))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Conversation < out[j].Conversation
	})
	return out, nil
}

func intakeInfo(st Setting[IntakeStatus]) IntakeInfo {
	ii := IntakeInfo{Paused: st.Value.Paused}
	ii.UpdatedBy, ii.UpdatedAt = updated(st)
	return ii
}

// IntakeInfo returns the intake setting with its last change.
func (s *Store) IntakeInfo(ctx context.Context) (IntakeInfo, error) {
	st, err := s.Intake(ctx)
	if err != nil {
		return IntakeInfo{}, err
	}
	return intakeInfo(st), nil
}

// ChangeIntake pauses or resumes intake for the whole fleet, audited with
// actor, and returns the new setting.
func (s *Store) ChangeIntake(ctx context.Context, paused bool, actor string) (IntakeInfo, error) {
	_, cur, err := s.setIntake(ctx, IntakeStatus{Paused: paused}, actor)
	if err != nil {
		return IntakeInfo{}, err
	}
	return intakeInfo(cur), nil
}

func channelInfo(ch dispatch.Channel, st Setting[ChannelStatus]) ChannelInfo {
	ci := ChannelInfo{Channel: ch, Disabled: st.Value.Disabled}
	ci.UpdatedBy, ci.UpdatedAt = updated(st)
	return ci
}

// ChannelList returns every channel's setting with its last change.
func (s *Store) ChannelList(ctx context.Context) (ChannelList, error) {
	out := ChannelList{}
	for _, ch := range []dispatch.Channel{dispatch.ChannelEmail, dispatch.ChannelSMS, dispatch.ChannelPush} {
		st, err := s.Channel(ctx, ch)
		if err != nil {
			return ChannelList{}, err
		}
		out.Channels = append(out.Channels, channelInfo(ch, st))
	}
	return out, nil
}

// ChangeChannel disables or enables a channel for the whole fleet, audited
// with actor, and returns the new setting. An unknown channel is ErrInvalid.
func (s *Store) ChangeChannel(ctx context.Context, ch dispatch.Channel, disabled bool, actor string) (ChannelInfo, error) {
	_, cur, err := s.setChannel(ctx, ch, ChannelStatus{Disabled: disabled}, actor)
	if err != nil {
		return ChannelInfo{}, err
	}
	return channelInfo(ch, cur), nil
}

// TopErrorsReport returns TopErrors over window and limit from the Store's
// database (ErrNoDatabase without one).
func (s *Store) TopErrorsReport(ctx context.Context, window time.Duration, limit int) (TopErrorsReport, error) {
	if s.pool == nil {
		return TopErrorsReport{}, ErrNoDatabase
	}
	top, err := errorlog.TopErrors(ctx, s.pool, window, limit)
	if errors.Is(err, errorlog.ErrInvalidQuery) {
		return TopErrorsReport{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err != nil {
		return TopErrorsReport{}, err
	}
	return TopErrorsReport{Window: window.String(), Conversations: top}, nil
}

// ActorQuarantine is the actor of automatic quarantines.
const ActorQuarantine = "quarantine"

// Quarantine sets an active conversation's state to quarantined, with actor
// "quarantine", audited as every change is, and mirrors the state in
// Postgres. It reports false, changing nothing, if the conversation is not
// active (an operator paused or stopped it, or another worker quarantined it
// first).
func (s *Store) Quarantine(ctx context.Context, tenant, conv, reason string) (bool, error) {
	key, err := ConversationKey(tenant, conv)
	if err != nil {
		return false, err
	}
	errNotActive := errors.New("not active")
	_, _, err = update(ctx, s, conversationKind, key, ActorQuarantine, func(old Setting[ConversationStatus]) (ConversationStatus, error) {
		if old.Value.State != StateActive {
			return ConversationStatus{}, errNotActive
		}
		return ConversationStatus{State: StateQuarantined, Reason: reason}, nil
	})
	if errors.Is(err, errNotActive) {
		return false, nil
	}
	if err != nil && !errors.Is(err, ErrAudit) {
		return false, err
	}
	if s.pool != nil {
		if perr := conversation.MarkQuarantined(ctx, s.pool, tenant, conv); perr != nil {
			s.log.Warn("quarantine applied but not recorded in Postgres", "tenant", tenant, "conv", conv, "err", perr)
		}
	}
	if s.events != nil {
		s.events.Quarantined(tenant, conv, reason)
	}
	return true, err
}

// SweepStopped purges what is still queued for a stopped conversation (an
// activation request that was publishing when the stop came, a stop whose
// purge failed half way) and adds it to conversations.purged. It does
// nothing, returning 0, unless the conversation was stopped at least minAge
// ago (longer than a stop's own settle and purge take, so that a sweep
// never purges a message a worker is still sending). Workers run it
// for stopped conversations that they see holding queued messages, so the
// accounting identity settles without an operator repeating the stop.
func (s *Store) SweepStopped(ctx context.Context, tenant, conversation string, minAge time.Duration, purge func(ctx context.Context, tenant, conversation string) (uint64, error)) (uint64, error) {
	st, err := s.Conversation(ctx, tenant, conversation)
	if err != nil || st.Value.State != StateStopped || s.now().Sub(st.At) < minAge {
		return 0, err
	}
	n, err := purge(ctx, tenant, conversation)
	if n > 0 && s.pool != nil {
		if rerr := s.record(ctx, tenant, conversation, StateStopped, n); rerr != nil {
			return n, errors.Join(err, fmt.Errorf("control: %d purged from %s/%s but not counted: %w", n, tenant, conversation, rerr))
		}
		if s.events != nil {
			s.events.Purged(tenant, conversation, n)
		}
	}
	return n, err
}
