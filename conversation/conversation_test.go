package conversation

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestLifecycle: insert once, load, count accepted and purged, mirror
// states (a stop is final; a quarantine only replaces active), and
// ErrNotFound for what another tenant holds.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	r := Row{Tenant: "acme", ID: "spring", Name: "Spring", Channel: "email", Lane: "bulk", Template: Template{Subject: "Hi", Text: "Hello"}}
	if created, err := Insert(ctx, db.Pool, &r); err != nil || !created || r.State != StateActive || r.TemplateVersion != 1 || r.CreatedAt.IsZero() {
		t.Fatalf("Insert = %v, %v; row %+v", created, err, r)
	}
	again := Row{Tenant: "acme", ID: "spring", Name: "Other", Channel: "sms", Lane: "bulk"}
	if created, err := Insert(ctx, db.Pool, &again); err != nil || created {
		t.Fatalf("second Insert = %v, %v; want not created", created, err)
	}
	got, err := Load(ctx, db.Pool, "acme", "spring")
	if err != nil || got.Name != "Spring" || got.Template != r.Template || got.Channel != "email" {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	if _, err := Load(ctx, db.Pool, "other", "spring"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of another tenant's = %v, want ErrNotFound", err)
	}
	if err := Exists(ctx, db.Pool, "other", "spring"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Exists of another tenant's = %v, want ErrNotFound", err)
	}
	if err := AddAccepted(ctx, db.Pool, "acme", "spring", 5); err != nil {
		t.Fatal(err)
	}
	if err := MarkQuarantined(ctx, db.Pool, "acme", "spring"); err != nil {
		t.Fatal(err)
	}
	if got, _ := Load(ctx, db.Pool, "acme", "spring"); got.State != StateQuarantined {
		t.Errorf("state after quarantine = %s", got.State)
	}
	if err := RecordState(ctx, db.Pool, "acme", "spring", StateStopped, 3); err != nil {
		t.Fatal(err)
	}
	if err := RecordState(ctx, db.Pool, "acme", "spring", StateActive, 2); err != nil {
		t.Fatal(err)
	}
	if err := MarkQuarantined(ctx, db.Pool, "acme", "spring"); err != nil {
		t.Fatal(err)
	}
	if got, _ := Load(ctx, db.Pool, "acme", "spring"); got.State != StateStopped {
		t.Errorf("state = %s, want stopped to stay stopped", got.State)
	}
	if a, p, err := Totals(ctx, db.Pool, "acme", "spring"); err != nil || a != 5 || p != 5 {
		t.Errorf("Totals = %d, %d, %v; want 5 accepted, 5 purged", a, p, err)
	}
}

// TestList: filters by tenant, state and a case-insensitive search in ids
// and names (no LIKE pattern: "_" is literal), newest first, with counts.
func TestList(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	for _, r := range []Row{
		{Tenant: "acme", ID: "spring_sale", Name: "Spring <sale>"},
		{Tenant: "acme", ID: "autumn", Name: "Autumn"},
		{Tenant: "other", ID: "springXsale", Name: "Theirs"},
	} {
		r.Channel, r.Lane = "email", "bulk"
		if _, err := Insert(ctx, db.Pool, &r); err != nil {
			t.Fatal(err)
		}
	}
	if err := AddAccepted(ctx, db.Pool, "acme", "autumn", 7); err != nil {
		t.Fatal(err)
	}
	if err := MarkQuarantined(ctx, db.Pool, "acme", "autumn"); err != nil {
		t.Fatal(err)
	}
	ids := func(f ListFilter) string {
		t.Helper()
		ls, err := List(ctx, db.Pool, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range ls {
			out = append(out, l.Tenant+"/"+l.ID)
			if l.ID == "autumn" && (l.Accepted != 7 || l.State != StateQuarantined) {
				t.Errorf("autumn listed as %+v", l)
			}
		}
		return strings.Join(out, " ")
	}
	for f, want := range map[ListFilter]string{
		{}:                                  "other/springXsale acme/autumn acme/spring_sale",
		{Tenant: "acme"}:                    "acme/autumn acme/spring_sale",
		{Search: "g_s"}:                     "acme/spring_sale",
		{Search: "SALE>"}:                   "acme/spring_sale",
		{State: StateQuarantined}:           "acme/autumn",
		{Tenant: "other", Search: "autumn"}: "",
		{Limit: 1}:                          "other/springXsale",
	} {
		if got := ids(f); got != want {
			t.Errorf("List(%+v) = %q, want %q", f, got, want)
		}
	}
}
