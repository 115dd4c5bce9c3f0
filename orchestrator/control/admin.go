package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/internal/ctxtime"
	"github.com/sluicehq/sluice/wire"
)

// DefaultStopSettle is OpsConfig.StopSettle's default.
const DefaultStopSettle = 2 * time.Second

// OpsConfig configures OpsRoutes.
type OpsConfig struct {
	// Purge removes a conversation's queued messages from the stream and
	// returns how many it removed (orchestrator.PurgeConversation). Required
	// for stop.
	Purge func(ctx context.Context, tenant, conversation string) (uint64, error)
	// StopSettle is how long a stop waits between setting the state and
	// purging, so that every worker has seen the state and finished the
	// sends it had begun: a message whose send is still running when the
	// purge removes it would be counted both delivered and purged. It must
	// cover the time for a change to reach the workers (milliseconds) plus a
	// typical send. Default DefaultStopSettle (2s).
	StopSettle time.Duration
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

// stateRequest is the optional body of the conversation changes.
type stateRequest struct {
	Reason string `json:"reason"`
}

// OpsRoutes returns the operators' controls by ServeMux pattern, mounted as
// AdminRoutes is (admin scope; the actor named with WithActor):
//
//	GET  /v1/admin/conversations                       ?state=paused|quarantined|stopped|active: ConversationList
//	                                                   (conversations with a state set in the control plane)
//	GET  /v1/admin/conversations/{tenant}/{id}         ConversationInfo
//	POST /v1/admin/conversations/{tenant}/{id}/pause   optional body {"reason": "..."}; ConversationInfo
//	POST /v1/admin/conversations/{tenant}/{id}/resume  (also ends a quarantine)
//	POST /v1/admin/conversations/{tenant}/{id}/stop    final; purges its queued messages, counted in
//	                                                   conversations.purged; repeating it purges again
//	                                                   (whatever was published since) and is harmless
//	GET  /v1/admin/intake                              IntakeInfo
//	PUT  /v1/admin/intake                              {"paused": true|false}; IntakeInfo
//	GET  /v1/admin/channels                            ChannelList
//	PUT  /v1/admin/channels/{name}                     {"disabled": true|false}; ChannelInfo
//
// With a database, a conversation must exist in the conversations table (404
// otherwise) and its state there follows the change.
func (s *Store) OpsRoutes(cfg OpsConfig) map[string]http.Handler {
	if cfg.StopSettle == 0 {
		cfg.StopSettle = DefaultStopSettle
	}
	o := &ops{s: s, cfg: cfg}
	return map[string]http.Handler{
		"GET /v1/admin/conversations":                       http.HandlerFunc(o.listConversations),
		"GET /v1/admin/conversations/{tenant}/{id}":         http.HandlerFunc(o.getConversation),
		"POST /v1/admin/conversations/{tenant}/{id}/pause":  o.change(StatePaused),
		"POST /v1/admin/conversations/{tenant}/{id}/resume": o.change(StateActive),
		"POST /v1/admin/conversations/{tenant}/{id}/stop":   o.change(StateStopped),
		"GET /v1/admin/intake":                              http.HandlerFunc(o.getIntake),
		"PUT /v1/admin/intake":                              http.HandlerFunc(o.putIntake),
		"GET /v1/admin/channels":                            http.HandlerFunc(o.listChannels),
		"PUT /v1/admin/channels/{name}":                     http.HandlerFunc(o.putChannel),
	}
}

type ops struct {
	s   *Store
	cfg OpsConfig
}

var errNotFound = errors.New("conversation not found")

func convInfo(tenant, id string, st Setting[ConversationStatus]) ConversationInfo {
	ci := ConversationInfo{Tenant: tenant, Conversation: id, State: st.Value.State, Reason: st.Value.Reason}
	if st.Revision != 0 {
		at := st.At
		ci.UpdatedBy, ci.UpdatedAt = st.By, &at
	}
	return ci
}

// exists checks the conversation in Postgres, when there is a database.
func (o *ops) exists(ctx context.Context, tenant, id string) error {
	if o.s.pool == nil {
		return nil
	}
	var one int
	err := o.s.pool.QueryRow(ctx, `SELECT 1 FROM conversations WHERE tenant = $1 AND id = $2`, tenant, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s/%s", errNotFound, tenant, id)
	}
	return err
}

func (o *ops) failConv(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errNotFound) {
		writeProblem(w, http.StatusNotFound, err.Error())
		return
	}
	o.s.fail(w, r, err)
}

func (o *ops) getConversation(w http.ResponseWriter, r *http.Request) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	if _, err := ConversationKey(tenant, id); err != nil {
		o.s.fail(w, r, err)
		return
	}
	if err := o.exists(r.Context(), tenant, id); err != nil {
		o.failConv(w, r, err)
		return
	}
	st, err := o.s.Conversation(r.Context(), tenant, id)
	if err != nil {
		o.s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, convInfo(tenant, id, st))
}

func (o *ops) change(to ConversationState) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant, id := r.PathValue("tenant"), r.PathValue("id")
		if _, err := ConversationKey(tenant, id); err != nil {
			o.s.fail(w, r, err)
			return
		}
		var req stateRequest
		if r.ContentLength != 0 {
			if err := decodeBody(w, r, &req); err != nil {
				writeProblem(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		if to == StateStopped && o.cfg.Purge == nil {
			o.s.fail(w, r, errors.New("control: stop is not available: no purge configured"))
			return
		}
		ctx := r.Context()
		if err := o.exists(ctx, tenant, id); err != nil {
			o.failConv(w, r, err)
			return
		}
		old, err := o.s.SetConversation(ctx, tenant, id, ConversationStatus{State: to, Reason: req.Reason}, ActorFrom(ctx))
		if err != nil && !errors.Is(err, ErrAudit) {
			o.failConv(w, r, err)
			return
		}
		auditErr := err
		var purged *uint64
		if to == StateStopped {
			// Let every worker see the stop and finish what it was
			// sending, then remove the rest. The purge and the count
			// must both happen even if the client hangs up.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.cfg.StopSettle+time.Minute)
			defer cancel()
			ctxtime.Sleep(pctx, o.cfg.StopSettle)
			n, err := o.cfg.Purge(pctx, tenant, id)
			if err == nil {
				err = o.record(pctx, tenant, id, to, n)
			}
			if err != nil {
				o.s.log.Error("stop: purge or count failed; repeat the stop", "tenant", tenant, "conversation", id, "purged", n, "err", err)
				o.s.fail(w, r, fmt.Errorf("stopped, but the purge did not complete (%d removed and counted so far); repeat the stop: %w", n, err))
				return
			}
			purged = &n
		} else if err := o.record(ctx, tenant, id, to, 0); err != nil {
			o.s.log.Warn("conversation state applied but not recorded in Postgres", "tenant", tenant, "conversation", id, "err", err)
		}
		if auditErr != nil {
			o.s.fail(w, r, auditErr)
			return
		}
		st, err := o.s.Conversation(ctx, tenant, id)
		if err != nil {
			o.s.fail(w, r, err)
			return
		}
		ci := convInfo(tenant, id, st)
		ci.Previous, ci.Purged = old.State, purged
		writeJSON(w, http.StatusOK, ci)
	})
}

// record mirrors a conversation's state in Postgres and adds the messages a
// stop purged to its purged count.
func (o *ops) record(ctx context.Context, tenant, id string, st ConversationState, purged uint64) error {
	if o.s.pool == nil {
		return nil
	}
	_, err := o.s.pool.Exec(ctx, `UPDATE conversations SET purged = purged + $3,
			state = CASE WHEN state = 'stopped' THEN state ELSE $4 END, updated_at = now()
		WHERE tenant = $1 AND id = $2`, tenant, id, int64(purged), string(st))
	return err
}

func (o *ops) listConversations(w http.ResponseWriter, r *http.Request) {
	want := ConversationState(r.URL.Query().Get("state"))
	if want != "" && !want.Valid() {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("state %q: want active, paused, stopped or quarantined", want))
		return
	}
	list, err := o.s.Conversations(r.Context(), want)
	if err != nil {
		o.s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ConversationList{Conversations: list})
}

// Conversations lists the conversations whose state is set in the control
// plane, those in state want only if want is not empty, by tenant and id.
func (s *Store) Conversations(ctx context.Context, want ConversationState) ([]ConversationInfo, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, conversationPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("control: list conversations: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := []ConversationInfo{}
	for _, key := range keys {
		tenant, id, ok := strings.Cut(strings.TrimPrefix(key, conversationPrefix), ".")
		if !ok || !wire.ValidToken(tenant) || !wire.ValidToken(id) {
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
			out = append(out, convInfo(tenant, id, st))
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
	if st.Revision != 0 {
		at := st.At
		ii.UpdatedBy, ii.UpdatedAt = st.By, &at
	}
	return ii
}

func (o *ops) getIntake(w http.ResponseWriter, r *http.Request) {
	st, err := o.s.Intake(r.Context())
	if err != nil {
		o.s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, intakeInfo(st))
}

func (o *ops) putIntake(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Paused *bool `json:"paused"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Paused == nil {
		writeProblem(w, http.StatusBadRequest, `"paused" is required: true or false`)
		return
	}
	_, cur, err := update(r.Context(), o.s, intakeKind, KeyIntake, ActorFrom(r.Context()), func(Setting[IntakeStatus]) (IntakeStatus, error) {
		return IntakeStatus{Paused: *req.Paused}, nil
	})
	if err != nil {
		o.s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, intakeInfo(cur))
}

func channelInfo(ch dispatch.Channel, st Setting[ChannelStatus]) ChannelInfo {
	ci := ChannelInfo{Channel: ch, Disabled: st.Value.Disabled}
	if st.Revision != 0 {
		at := st.At
		ci.UpdatedBy, ci.UpdatedAt = st.By, &at
	}
	return ci
}

func (o *ops) listChannels(w http.ResponseWriter, r *http.Request) {
	out := ChannelList{}
	for _, ch := range []dispatch.Channel{dispatch.ChannelEmail, dispatch.ChannelSMS, dispatch.ChannelPush} {
		st, err := o.s.Channel(r.Context(), ch)
		if err != nil {
			o.s.fail(w, r, err)
			return
		}
		out.Channels = append(out.Channels, channelInfo(ch, st))
	}
	writeJSON(w, http.StatusOK, out)
}

func (o *ops) putChannel(w http.ResponseWriter, r *http.Request) {
	ch := dispatch.Channel(r.PathValue("name"))
	key, err := channelKey(ch)
	if err != nil {
		o.s.fail(w, r, err)
		return
	}
	var req struct {
		Disabled *bool `json:"disabled"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Disabled == nil {
		writeProblem(w, http.StatusBadRequest, `"disabled" is required: true or false`)
		return
	}
	_, cur, err := update(r.Context(), o.s, channelKind, key, ActorFrom(r.Context()), func(Setting[ChannelStatus]) (ChannelStatus, error) {
		return ChannelStatus{Disabled: *req.Disabled}, nil
	})
	if err != nil {
		o.s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, channelInfo(ch, cur))
}

// ActorQuarantine is the actor of automatic quarantines.
const ActorQuarantine = "quarantine"

// Quarantine sets an active conversation's state to quarantined, with actor
// "quarantine", audited as every change is, and mirrors the state in
// Postgres. It reports false, changing nothing, if the conversation is not
// active (an operator paused or stopped it, or another worker quarantined it
// first).
func (s *Store) Quarantine(ctx context.Context, tenant, conversation, reason string) (bool, error) {
	key, err := ConversationKey(tenant, conversation)
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
		if _, perr := s.pool.Exec(ctx, `UPDATE conversations SET state = 'quarantined', updated_at = now()
			WHERE tenant = $1 AND id = $2 AND state = 'active'`, tenant, conversation); perr != nil {
			s.log.Warn("quarantine applied but not recorded in Postgres", "tenant", tenant, "conversation", conversation, "err", perr)
		}
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
		o := &ops{s: s}
		if rerr := o.record(ctx, tenant, conversation, StateStopped, n); rerr != nil {
			return n, errors.Join(err, fmt.Errorf("control: %d purged from %s/%s but not counted: %w", n, tenant, conversation, rerr))
		}
	}
	return n, err
}
