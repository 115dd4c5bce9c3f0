package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/wire"
)

// attempts wraps the real providers and counts every send per address, so
// a test can tell that a message never reached its provider (nor the sink
// behind it).
type attempts struct {
	mu sync.Mutex
	to map[string]int
}

func (a *attempts) wrap(ps map[dispatch.Channel]dispatch.Provider) map[dispatch.Channel]dispatch.Provider {
	out := map[dispatch.Channel]dispatch.Provider{}
	for ch, p := range ps {
		out[ch] = sendFunc(func(ctx context.Context, m *dispatch.Message) error {
			a.mu.Lock()
			a.to[m.To]++
			a.mu.Unlock()
			return p.Send(ctx, m)
		})
	}
	return out
}

func (a *attempts) of(to string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.to[to]
}

type sendFunc func(ctx context.Context, m *dispatch.Message) error

func (f sendFunc) Send(ctx context.Context, m *dispatch.Message) error { return f(ctx, m) }

// sinkNode starts a node whose providers speak the real protocols to the
// local sinks (SMTP, Twilio, FCM, APNs), counting attempts per address.
func sinkNode(t *testing.T, opts ...func(*node.Config)) (*bundle, *attempts, *sink.Local) {
	t.Helper()
	local, err := sink.StartLocal(t.Context(), sink.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = local.Close() })
	set, err := providerset.New(local.Config(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = set.Close() })
	at := &attempts{to: map[string]int{}}
	b := setup(t, 0, append([]func(*node.Config){func(c *node.Config) { c.Providers = at.wrap(set.Providers()) }}, opts...)...)
	return b, at, local
}

func rowsTo(addrs ...string) []map[string]any {
	rows := make([]map[string]any, len(addrs))
	for i, a := range addrs {
		rows[i] = map[string]any{"to": a, "vars": map[string]string{"name": "n"}}
	}
	return rows
}

// TestSuppression: the sinks' permanent refusals (SMTP 550 5.1.1, Twilio
// 21610 and 21211, FCM UNREGISTERED) put the recipient on the tenant's
// list; the next messages to it (in another spelling too) are counted
// suppressed and never reach a provider; a recipient added by hand is
// suppressed the same way, and delivered again once removed. Each
// conversation's counts stay exact: accepted = delivered + invalid +
// failed + suppressed + expired + purged.
func TestSuppression(t *testing.T) {
	t.Parallel()
	b, at, _ := sinkNode(t)
	fcm := func(prefix string) string { return prefix + strings.Repeat("A", 150) }
	first := map[dispatch.Channel][]string{
		dispatch.ChannelEmail: {"reject-me@example.com", "kept@example.com", "manual@example.com"},
		dispatch.ChannelSMS:   {"+15005550004", "+15005550001", "+33612000001"},
		dispatch.ChannelPush:  {fcm("reject"), fcm("good")},
	}
	second := map[dispatch.Channel][]string{
		dispatch.ChannelEmail: {"Reject-Me@EXAMPLE.com", "kept@example.com", "manual@example.com"},
		dispatch.ChannelSMS:   {"+15005550004", "+15005550001", "+33612000001"},
		dispatch.ChannelPush:  {fcm("reject"), fcm("good")},
	}
	for ch, addrs := range first {
		b.conversation(t, "first-"+string(ch), ch, wire.LaneTransactional)
		b.must(t, "POST", "/v1/conversations/first-"+string(ch)+"/activations", rowsTo(addrs...), http.StatusAccepted)
	}
	for ch := range first {
		waitFor(t, 30*time.Second, "the first round", func() bool { return b.counts(t, "first-"+string(ch)).Pending == 0 })
	}
	for _, addr := range []string{"reject-me@example.com", "+15005550004", "+15005550001", fcm("reject")} {
		var got struct {
			Suppressed bool `json:"suppressed"`
			Entry      struct{ Source, Reason string }
		}
		waitFor(t, 10*time.Second, "the refusal of "+addr[:12]+" to be stored", func() bool {
			decode(t, b.must(t, "GET", "/v1/suppressions?address="+url.QueryEscape(addr), nil, http.StatusOK), &got)
			return got.Suppressed
		})
		if got.Entry.Source != "provider" {
			t.Errorf("%s: entry %+v, want source provider", addr[:12], got.Entry)
		}
	}
	b.must(t, "POST", "/v1/suppressions", map[string]string{"address": "manual@example.com"}, http.StatusCreated)
	waitFor(t, 10*time.Second, "the worker to learn the manual entry", func() bool {
		return b.n.Suppressions.Suppressed("acme", "manual@example.com")
	})

	for ch, addrs := range second {
		b.conversation(t, "second-"+string(ch), ch, wire.LaneBulk)
		b.must(t, "POST", "/v1/conversations/second-"+string(ch)+"/activations", rowsTo(addrs...), http.StatusAccepted)
	}
	want := map[dispatch.Channel][2]int64{ // suppressed, delivered
		dispatch.ChannelEmail: {2, 1}, dispatch.ChannelSMS: {2, 1}, dispatch.ChannelPush: {1, 1},
	}
	for ch, w := range want {
		conv := "second-" + string(ch)
		waitFor(t, 30*time.Second, "the second round of "+conv, func() bool { return b.counts(t, conv).Pending == 0 })
		c := b.counts(t, conv)
		if c.Suppressed != w[0] || c.Delivered != w[1] || c.Failed+c.Invalid+c.Expired+c.Purged != 0 {
			t.Errorf("%s: %+v, want suppressed %d delivered %d", conv, c, w[0], w[1])
		}
		if c.Accepted != c.Delivered+c.Invalid+c.Failed+c.Suppressed+c.Expired+c.Purged {
			t.Errorf("%s: identity broken: %+v", conv, c)
		}
	}
	for _, addr := range []string{"reject-me@example.com", "+15005550004", "+15005550001", fcm("reject")} {
		if n := at.of(addr); n != 1 {
			t.Errorf("%s reached its provider %d times, want once (the refusal)", addr[:12], n)
		}
	}
	if n := at.of("Reject-Me@EXAMPLE.com") + at.of("manual@example.com"); n != 1 {
		t.Errorf("suppressed email addresses reached the provider %d times after suppression, want 0 (+1 for manual's first round)", n)
	}
	stored, err := errorlog.CountsOf(t.Context(), b.db.Pool, "acme", []string{"second-email"})
	if err != nil || stored["second-email"].Count[wire.OutcomeSuppressed] != 2 {
		t.Errorf("stored outcomes %+v (%v), want suppressed 2", stored, err)
	}
	if got := b.metric(t, "sluice_messages_total", `outcome="suppressed"`); got != 5 {
		t.Errorf(`sluice_messages_total{outcome="suppressed"} = %v, want 5`, got)
	}

	// Removed by hand: delivered again.
	b.must(t, "DELETE", "/v1/suppressions", map[string]string{"address": "MANUAL@example.com"}, http.StatusOK)
	waitFor(t, 10*time.Second, "the worker to learn the removal", func() bool {
		return !b.n.Suppressions.Suppressed("acme", "manual@example.com")
	})
	b.must(t, "POST", "/v1/conversations/second-email/activations", rowsTo("manual@example.com"), http.StatusAccepted)
	waitFor(t, 30*time.Second, "the removed address to be delivered", func() bool { return b.counts(t, "second-email").Delivered == 2 })
}

// TestExpiredAfterPause: one-time passwords queued behind a paused
// conversation, resumed after their expiry (the conversation's ttl, or the
// row's expires_at), are counted expired and never reach the provider; a
// row whose expires_at is still ahead is delivered.
func TestExpiredAfterPause(t *testing.T) {
	t.Parallel()
	b, at, _ := sinkNode(t)
	b.must(t, "POST", "/v1/conversations", map[string]any{
		"id": "otp", "name": "otp", "channel": "sms", "lane": "transactional", "ttl": 1,
		"template": map[string]string{"text": "code {{.name}}"},
	}, http.StatusCreated)
	b.pause(t, "otp", map[string]string{"reason": "outage"})
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	soon := time.Now().Add(time.Second)
	b.must(t, "POST", "/v1/conversations/otp/activations", []map[string]any{
		{"to": "+33612000101", "vars": map[string]string{"name": "1"}},                                                    // the conversation's ttl: 1s
		{"to": "+33612000102", "vars": map[string]string{"name": "2"}, "expires_at": soon.UTC().Format(time.RFC3339Nano)}, // its own
		{"to": "+33612000103", "vars": map[string]string{"name": "3"}, "expires_at": later},                               // still good
	}, http.StatusAccepted)
	// The outage lasts past both expiries.
	waitFor(t, 10*time.Second, "the expiries to pass", func() bool { return time.Now().After(soon.Add(500 * time.Millisecond)) })
	b.must(t, "POST", "/v1/admin/conversations/acme/otp/resume", nil, http.StatusOK)
	waitFor(t, 30*time.Second, "the held messages", func() bool { return b.counts(t, "otp").Pending == 0 })
	c := b.counts(t, "otp")
	if c.Accepted != 3 || c.Expired != 2 || c.Delivered != 1 {
		t.Errorf("counts %+v, want accepted 3 = expired 2 + delivered 1", c)
	}
	if at.of("+33612000101")+at.of("+33612000102") != 0 || at.of("+33612000103") != 1 {
		t.Errorf("attempts: expired %d+%d (want 0), good %d (want 1)", at.of("+33612000101"), at.of("+33612000102"), at.of("+33612000103"))
	}
	if got := b.metric(t, "sluice_messages_total", `outcome="expired"`); got != 2 {
		t.Errorf(`sluice_messages_total{outcome="expired"} = %v, want 2`, got)
	}
}

func decode(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}
