package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// TestCtlOps drives the conversation, intake and channel commands against
// the control plane's ops routes (the purge is a stand-in that reports 7).
func TestCtlOps(t *testing.T) {
	t.Parallel()
	nc, _ := natstest.Start(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(t.Context(), `INSERT INTO conversations (tenant, id, name, channel, lane, template)
		VALUES ('acme', 'spring', 'spring', 'email', 'bulk', '{}')`); err != nil {
		t.Fatal(err)
	}
	store, err := control.Open(t.Context(), js, db.Pool, nil, control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for pattern, h := range store.OpsRoutes(control.OpsConfig{
		Purge:      func(context.Context, string, string) (uint64, error) { return 7, nil },
		StopSettle: 1,
	}) {
		mux.Handle(pattern, h)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(control.WithActor(r.Context(), "ops")))
	}))
	t.Cleanup(srv.Close)
	ctl := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runCtl(t.Context(), append([]string{"--api-url", srv.URL}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"conversation", "pause", "acme", "spring", "--reason", "complaints"}, "conversation acme/spring: active -> paused\n"},
		{[]string{"conversation", "list", "--state", "paused"}, "acme    spring        paused  ops"},
		{[]string{"conversation", "show", "acme", "spring"}, "complaints"},
		{[]string{"conversation", "resume", "acme", "spring"}, "paused -> active"},
		{[]string{"conversation", "stop", "acme", "spring"}, "active -> stopped, 7 queued messages purged"},
		{[]string{"intake", "pause"}, "intake: paused (the API answers 503 to new activations), since"},
		{[]string{"intake", "show"}, "by ops"},
		{[]string{"intake", "resume"}, "intake: running"},
		{[]string{"channel", "disable", "sms"}, "channel sms disabled"},
		{[]string{"channel", "list"}, "sms      disabled  ops"},
		{[]string{"channel", "enable", "sms"}, "channel sms enabled"},
	}
	for _, s := range steps {
		out, err := ctl(s.args...)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("ctl %v: %v\n%s\nwant %q", s.args, err, out, s.want)
		}
	}
	var purged int64
	var state string
	if err := db.Pool.QueryRow(t.Context(), `SELECT purged, state FROM conversations WHERE id = 'spring'`).Scan(&purged, &state); err != nil || purged != 7 || state != "stopped" {
		t.Fatalf("conversation row: purged %d state %q %v", purged, state, err)
	}
	for _, args := range [][]string{
		{"conversation", "resume", "acme", "spring"}, // stopped is final
		{"conversation", "pause", "acme", "nope"},    // unknown
		{"channel", "disable", "fax"},
	} {
		if out, err := ctl(args...); err == nil {
			t.Fatalf("ctl %v succeeded:\n%s", args, out)
		}
	}
}
