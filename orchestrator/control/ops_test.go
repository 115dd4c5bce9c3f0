package control

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
)

func TestConversations(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	paused := ConversationStatus{State: StatePaused, Reason: "checking the template"}

	st, err := b.store.Conversation(ctx, "acme", "spring-sale")
	if err != nil || st.Value.State != StateActive || st.Revision != 0 {
		t.Fatalf("unset conversation = %+v, %v; want active", st, err)
	}
	if _, err := b.store.SetConversation(ctx, "acme", "spring-sale", paused, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.SetConversation(ctx, "acme", "newsletter", ConversationStatus{State: StateQuarantined, Reason: "92% invalid"}, "quarantine"); err != nil {
		t.Fatal(err)
	}

	// A worker starting now gets both states, then synced, then changes.
	ch := make(chan ConversationUpdate, 16)
	synced := make(chan struct{})
	worker := b.worker(t)
	startWatch(t, func(ctx context.Context, fn func(ConversationUpdate)) error {
		return worker.WatchConversations(ctx, fn, func() { close(synced) })
	}, ch)
	got := map[string]ConversationUpdate{}
	for range 2 {
		u := receive(t, ch, 5*time.Second, "current state")
		got[u.Tenant+"/"+u.Conversation] = u
	}
	receive(t, synced, time.Second, "synced")
	if u := got["acme/spring-sale"]; u.Value != paused || u.By != "alice" {
		t.Fatalf("spring-sale = %+v", u)
	}
	if u := got["acme/newsletter"]; u.Value.State != StateQuarantined || u.By != "quarantine" {
		t.Fatalf("newsletter = %+v", u)
	}

	old, err := b.store.SetConversation(ctx, "acme", "spring-sale", ConversationStatus{State: StateStopped, Reason: "bad list"}, "bob")
	if err != nil || old != paused {
		t.Fatalf("stop: old %+v, %v", old, err)
	}
	if u := receive(t, ch, time.Second, "stop"); u.Tenant != "acme" || u.Conversation != "spring-sale" || u.Value.State != StateStopped {
		t.Fatalf("update = %+v", u)
	}

	// Stopping is final.
	for _, s := range []ConversationState{StateActive, StatePaused, StateQuarantined} {
		if _, err := b.store.SetConversation(ctx, "acme", "spring-sale", ConversationStatus{State: s}, "bob"); !errors.Is(err, ErrStopped) {
			t.Errorf("stopped → %s: %v, want ErrStopped", s, err)
		}
	}
	if _, err := b.store.SetConversation(ctx, "acme", "spring-sale", ConversationStatus{State: StateStopped, Reason: "purged"}, "bob"); err != nil {
		t.Errorf("stopped → stopped: %v", err)
	}

	// Bad ids and states change nothing.
	for _, tc := range []struct{ tenant, conv string }{{"", "c"}, {"a.b", "c"}, {"a", "*"}, {"a", ">"}, {"a", "c d"}} {
		if _, err := b.store.SetConversation(ctx, tc.tenant, tc.conv, paused, "bob"); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetConversation(%q, %q) = %v, want ErrInvalid", tc.tenant, tc.conv, err)
		}
	}
	if _, err := b.store.SetConversation(ctx, "acme", "x", ConversationStatus{State: "asleep"}, "bob"); !errors.Is(err, ErrInvalid) {
		t.Errorf("state asleep: %v, want ErrInvalid", err)
	}

	rows := b.audit(t)
	last := rows[len(rows)-1]
	if last.Key != "conversation.acme.spring-sale" || last.Actor != "bob" ||
		!sameJSON(t, last.Old, `{"state":"stopped","reason":"bad list"}`) || !sameJSON(t, last.New, `{"state":"stopped","reason":"purged"}`) {
		t.Fatalf("audit row = %+v", last)
	}
}

func TestIntake(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	ch := make(chan Setting[IntakeStatus], 16)
	startWatch(t, b.worker(t).WatchIntake, ch)
	if s := receive(t, ch, 5*time.Second, "initial intake"); s.Value.Paused || s.Revision != 0 {
		t.Fatalf("initial intake = %+v, want running and unset", s)
	}
	if _, err := b.store.SetIntake(ctx, IntakeStatus{Paused: true}, "alice"); err != nil {
		t.Fatal(err)
	}
	if s := receive(t, ch, time.Second, "pause"); !s.Value.Paused || s.By != "alice" {
		t.Fatalf("after pause: %+v", s)
	}
	if old, err := b.store.SetIntake(ctx, IntakeStatus{}, "bob"); err != nil || !old.Paused {
		t.Fatalf("resume: old %+v, %v", old, err)
	}
	if s := receive(t, ch, time.Second, "resume"); s.Value.Paused {
		t.Fatalf("after resume: %+v", s)
	}
	if s, err := b.store.Intake(ctx); err != nil || s.Value.Paused || s.By != "bob" {
		t.Fatalf("Intake = %+v, %v", s, err)
	}
}

func TestChannels(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	if _, err := b.store.SetChannel(ctx, dispatch.ChannelSMS, ChannelStatus{Disabled: true}, "alice"); err != nil {
		t.Fatal(err)
	}
	ch := make(chan ChannelUpdate, 16)
	synced := make(chan struct{})
	worker := b.worker(t)
	startWatch(t, func(ctx context.Context, fn func(ChannelUpdate)) error {
		return worker.WatchChannels(ctx, fn, func() { close(synced) })
	}, ch)
	if u := receive(t, ch, 5*time.Second, "sms"); u.Channel != dispatch.ChannelSMS || !u.Value.Disabled {
		t.Fatalf("current = %+v", u)
	}
	receive(t, synced, time.Second, "synced")
	if _, err := b.store.SetChannel(ctx, dispatch.ChannelPush, ChannelStatus{Disabled: true}, "alice"); err != nil {
		t.Fatal(err)
	}
	if u := receive(t, ch, time.Second, "push"); u.Channel != dispatch.ChannelPush || !u.Value.Disabled {
		t.Fatalf("update = %+v", u)
	}
	if s, err := b.store.Channel(ctx, dispatch.ChannelEmail); err != nil || s.Value.Disabled {
		t.Fatalf("email = %+v, %v", s, err)
	}
	if _, err := b.store.SetChannel(ctx, "fax", ChannelStatus{Disabled: true}, "alice"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("fax: %v, want ErrInvalid", err)
	}
}
