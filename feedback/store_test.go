package feedback

import (
	"os"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestStoreWindow: feedback is counted per minute, and Since sums only the
// minutes of the window: a complaint two days old does not count against
// today's rate, nor does another conversation's or tenant's.
func TestStoreWindow(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	s := NewStore(db.Pool)
	ctx := t.Context()
	for _, e := range []Event{
		{Type: TypeComplaint, Conversation: "spring"},
		{Type: TypeBounce, BounceType: BounceHard, Conversation: "spring"},
		{Type: TypeBounce, BounceType: BounceSoft, Conversation: "spring"},
		{Type: TypeComplaint, Conversation: "other"},
		{Type: TypeComplaint}, // no conversation: not counted
	} {
		if err := s.Add(ctx, "acme", e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO feedback_counts (tenant, conversation, minute, complaints)
		VALUES ('acme', 'spring', date_trunc('minute', now() - interval '2 days'), 40), ('beta', 'spring', date_trunc('minute', now()), 7)`); err != nil {
		t.Fatal(err)
	}
	got, err := s.Since(ctx, "acme", "spring", time.Now().Add(-24*time.Hour))
	if err != nil || got != (Counts{HardBounces: 1, SoftBounces: 1, Complaints: 1}) {
		t.Errorf("last 24h = %+v, %v; want 1 of each", got, err)
	}
	if got, _ := s.Since(ctx, "acme", "spring", time.Now().Add(-72*time.Hour)); got.Complaints != 41 {
		t.Errorf("last 72h complaints = %d, want 41", got.Complaints)
	}
}
