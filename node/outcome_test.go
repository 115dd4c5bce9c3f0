package node_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/wire"
)

// TestUnregisteredPushIsFailedEverywhere: a push token the FCM sink answers
// UNREGISTERED (over the real FCM HTTP v1 protocol) is one failed message,
// reason unregistered, in the API's counts, in sluice_messages_total and in
// the stored counts the load test reads (errorlog.CountsOf): the outcome is
// decided once and every reader reads it.
func TestUnregisteredPushIsFailedEverywhere(t *testing.T) {
	t.Parallel()
	b, _, _ := sinkNode(t)
	b.conversation(t, "app", dispatch.ChannelPush, wire.LaneTransactional)

	fcm := func(prefix string) string { return prefix + strings.Repeat("A", 150) } // an FCM registration token's shape
	rows := []map[string]any{
		{"to": fcm("reject"), "vars": map[string]string{"name": "gone"}}, // the sink answers UNREGISTERED
		{"to": fcm("good"), "vars": map[string]string{"name": "here"}},
		{"to": "", "vars": map[string]string{"name": "none"}},
	}
	b.must(t, "POST", "/v1/conversations/app/activations", rows, http.StatusAccepted)

	waitFor(t, 30*time.Second, "the three outcomes", func() bool { return b.counts(t, "app").Pending == 0 })
	c := b.counts(t, "app")
	if c.Accepted != 3 || c.Delivered != 1 || c.Failed != 1 || c.Invalid != 1 || c.FailedReasons[string(wire.ReasonUnregistered)] != 1 {
		t.Errorf("API counts %+v; want accepted 3 = delivered 1 + failed 1 (unregistered) + invalid 1", c)
	}
	if got := b.metric(t, "sluice_messages_total", `channel="push"`, `outcome="failed"`); got != 1 {
		t.Errorf(`sluice_messages_total{channel="push",outcome="failed"} = %v, want 1`, got)
	}
	if got := b.metric(t, "sluice_messages_total", `channel="push"`, `outcome="invalid"`); got != 1 {
		t.Errorf(`sluice_messages_total{channel="push",outcome="invalid"} = %v, want 1`, got)
	}
	stored, err := errorlog.CountsOf(context.Background(), b.db.Pool, "acme", []string{"app"})
	if err != nil {
		t.Fatal(err)
	}
	if o := stored["app"]; o.Count[wire.OutcomeFailed] != 1 || o.Reasons[wire.OutcomeFailed][string(wire.ReasonUnregistered)] != 1 || o.Count[wire.OutcomeDelivered] != 1 {
		t.Errorf("stored outcomes %+v; want failed 1 (unregistered), delivered 1", o)
	}
}

// TestMetricsExistFromTheStart: a fresh node exports every
// sluice_messages_total{lane,channel,outcome} series, the error log's and
// the quarantine's, at 0, before any message.
func TestMetricsExistFromTheStart(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	_, _, data := b.do(t, "GET", "/metrics", nil)
	text := string(data)
	for _, lane := range []wire.Lane{wire.LaneTransactional, wire.LaneBulk} {
		for _, ch := range []dispatch.Channel{dispatch.ChannelEmail, dispatch.ChannelSMS, dispatch.ChannelPush} {
			for _, o := range []wire.Outcome{wire.OutcomeDelivered, wire.OutcomeInvalid, wire.OutcomeFailed, wire.OutcomeRetried, wire.OutcomeDeferred} {
				series := `sluice_messages_total{channel="` + string(ch) + `",lane="` + string(lane) + `",outcome="` + string(o) + `"} 0`
				if !strings.Contains(text, series) {
					t.Errorf("missing %s", series)
				}
			}
		}
	}
	for _, series := range []string{
		`sluice_errorlog_dropped_total{reason="buffer_full"} 0`, `sluice_errorlog_mode{mode="full"} 1`,
		`sluice_errorlog_writer_breaker_state 0`, `sluice_orchestrator_quarantines_total 0`,
		`sluice_consumer_pending_messages{lane="bulk"}`, `sluice_errorlog_events_total{outcome="written"} 0`,
		`sluice_orchestrator_reacks_total{lane="bulk",reason="leader_elected"} 0`,
		`sluice_orchestrator_reacks_total{lane="transactional",reason="reconnected"} 0`,
		`sluice_orchestrator_redelivered_completed_total{lane="bulk"} 0`,
	} {
		if !strings.Contains(text, series) {
			t.Errorf("missing %s", series)
		}
	}
}
