package errorlog

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/wire"
)

// seedCounts fills error_counts: minutes are relative to now.
func seedCounts(t *testing.T, db *pgtest.DB) {
	t.Helper()
	_, err := db.Pool.Exec(t.Context(), `
INSERT INTO error_counts (tenant, conversation, channel, reason, outcome, minute, count) VALUES
  ('acme',   'c1', 'email', 'empty', 'invalid',   date_trunc('minute', now()),                         50),
  ('acme',   'c1', 'email', 'syntax', 'invalid',  date_trunc('minute', now() - interval '2 minutes'),  30),
  ('acme',   'c2', 'email', 'empty', 'invalid',   date_trunc('minute', now() - interval '1 minute'),  100),
  ('acme',   'c2', 'email', 'empty', 'invalid',   date_trunc('minute', now() - interval '30 minutes'), 1000),
  ('acme',   'c2', 'sms',   'not_e164', 'invalid',date_trunc('minute', now() - interval '40 minutes'), 5),
  ('bravo',  'c1', 'email', 'syntax', 'invalid',  date_trunc('minute', now()),                         40),
  ('bravo',  'c1', 'sms',   'syntax', 'invalid',  date_trunc('minute', now()),                         40),
  ('acme',   'c3', 'email', 'empty', 'invalid',   date_trunc('minute', now() - interval '5 minutes'),  7),
  ('acme',   'c3', 'email', 'empty', 'invalid',   date_trunc('minute', now() - interval '6 minutes'),  1000),
  ('old',    'c9', 'email', 'empty', 'invalid',   date_trunc('minute', now() - interval '2 hours'),   99999)`)
	if err != nil {
		t.Fatal(err)
	}
}

func TestTopErrors(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()

	top, err := TopErrors(ctx, db.Pool, 5*time.Minute, 20)
	if err != nil || top == nil || len(top) != 0 {
		t.Fatalf("empty table: %#v, %v; want an empty, non-nil list", top, err)
	}
	seedCounts(t, db)

	tests := []struct {
		window time.Duration
		limit  int
		want   []TopError
	}{
		{5 * time.Minute, 20, []TopError{
			{"acme", "c2", 100, []ReasonCount{{"empty", 100}}},
			{"acme", "c1", 80, []ReasonCount{{"empty", 50}, {"syntax", 30}}},
			{"bravo", "c1", 80, []ReasonCount{{"syntax", 80}}}, // summed over channels
			{"acme", "c3", 7, []ReasonCount{{"empty", 7}}},     // the minute of now-5m is in, the one before is out
		}},
		{5 * time.Minute, 2, []TopError{
			{"acme", "c2", 100, []ReasonCount{{"empty", 100}}},
			{"acme", "c1", 80, []ReasonCount{{"empty", 50}, {"syntax", 30}}},
		}},
		{time.Hour, 20, []TopError{
			{"acme", "c2", 1105, []ReasonCount{{"empty", 1100}, {"not_e164", 5}}},
			{"acme", "c3", 1007, []ReasonCount{{"empty", 1007}}},
			{"acme", "c1", 80, []ReasonCount{{"empty", 50}, {"syntax", 30}}},
			{"bravo", "c1", 80, []ReasonCount{{"syntax", 80}}},
		}},
		{3 * time.Hour, 1, []TopError{
			{"old", "c9", 99999, []ReasonCount{{"empty", 99999}}},
		}},
	}
	for _, tc := range tests {
		got, err := TopErrors(ctx, db.Pool, tc.window, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("TopErrors(%v, %d) =\n%+v\nwant\n%+v", tc.window, tc.limit, got, tc.want)
		}
	}

	for _, tc := range []struct {
		window time.Duration
		limit  int
	}{{0, 20}, {-time.Minute, 20}, {MaxTopWindow + 1, 20}, {time.Minute, 0}, {time.Minute, MaxTopLimit + 1}} {
		if _, err := TopErrors(ctx, db.Pool, tc.window, tc.limit); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("TopErrors(%v, %d) = %v, want ErrInvalidQuery", tc.window, tc.limit, err)
		}
	}
}

// TestMinutes: one conversation's outcomes per minute, delivered and the
// stored outcomes together, summed over channels and reasons, from the
// minute asked on, oldest first.
func TestMinutes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	seedCounts(t, db)
	if _, err := db.Pool.Exec(t.Context(), `INSERT INTO delivery_counts (tenant, conversation, channel, minute, count) VALUES
		('acme', 'c1', 'email', date_trunc('minute', now()), 5),
		('acme', 'c1', 'sms', date_trunc('minute', now() - interval '2 minutes'), 3),
		('bravo', 'c1', 'email', date_trunc('minute', now()), 1000)`); err != nil {
		t.Fatal(err)
	}
	ms, err := Minutes(t.Context(), db.Pool, "acme", "c1", time.Now().Add(-10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || !ms[0].Minute.Before(ms[1].Minute) ||
		ms[0].Count[wire.OutcomeInvalid] != 30 || ms[0].Count[wire.OutcomeDelivered] != 3 ||
		ms[1].Count[wire.OutcomeInvalid] != 50 || ms[1].Count[wire.OutcomeDelivered] != 5 {
		t.Fatalf("Minutes = %+v", ms)
	}
	if ms, err := Minutes(t.Context(), db.Pool, "acme", "c1", time.Now().Add(time.Hour)); err != nil || len(ms) != 0 {
		t.Fatalf("Minutes from the future = %+v, %v", ms, err)
	}
}
