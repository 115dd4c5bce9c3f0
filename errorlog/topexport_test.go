package errorlog

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/metrictest"
	"github.com/sluicehq/sluice/internal/pgtest"
)

// exported reads the export's series from reg as "tenant/conversation" =>
// value.
func exported(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_errorlog_top_conversation_errors" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var tenant, conv string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "tenant":
					tenant = l.GetValue()
				case "conversation":
					conv = l.GetValue()
				}
			}
			out[tenant+"/"+conv] = m.GetGauge().GetValue()
		}
	}
	return out
}

// addErrors adds n errors of this minute to a conversation of tenant t1.
func addErrors(t *testing.T, db *pgtest.DB, conv string, n int) {
	t.Helper()
	_, err := db.Pool.Exec(t.Context(), `INSERT INTO error_counts (tenant, conversation, channel, reason, outcome, minute, count)
VALUES ('t1', $1, 'email', 'empty', 'invalid', date_trunc('minute', now()), $2)
ON CONFLICT (tenant, conversation, channel, reason, minute) DO UPDATE SET count = error_counts.count + EXCLUDED.count`, conv, n)
	if err != nil {
		t.Fatal(err)
	}
}

// TestTopExporterBounded: 15 conversations write errors, the export holds
// exactly the top 3; when others overtake them, the ones that left the
// ranking lose their series, so the series never exceed N.
func TestTopExporterBounded(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	e, err := NewTopExporter(db.Pool, TopExportConfig{N: 3}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := exported(t, reg); len(got) != 0 {
		t.Fatalf("no errors yet: exported %v", got)
	}
	for i := range 15 {
		addErrors(t, db, fmt.Sprintf("c%02d", i), 10+i)
	}
	if err := e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"t1/c14": 24, "t1/c13": 23, "t1/c12": 22}
	if got := exported(t, reg); !maps.Equal(got, want) {
		t.Fatalf("exported %v, want %v", got, want)
	}
	// c00 and c01 overtake everyone; c14 stays third.
	addErrors(t, db, "c00", 100)
	addErrors(t, db, "c01", 50)
	if err := e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want = map[string]float64{"t1/c00": 110, "t1/c01": 61, "t1/c14": 24}
	if got := exported(t, reg); !maps.Equal(got, want) {
		t.Fatalf("after the ranking changed: exported %v, want %v (c13 and c12 must be gone)", got, want)
	}
	if n, _ := metrictest.Value(t, reg, "sluice_errorlog_top_refresh_timestamp_seconds", nil); time.Since(time.Unix(int64(n), 0)) > time.Minute {
		t.Errorf("refresh timestamp %v is not recent", n)
	}
}

// TestTopExporterWithdrawsOnFailure: when Postgres cannot answer, the stale
// ranking is withdrawn and the failure counted.
func TestTopExporterWithdrawsOnFailure(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	addErrors(t, db, "storm", 5)
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e, err := NewTopExporter(pool, TopExportConfig{}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := exported(t, reg); !maps.Equal(got, map[string]float64{"t1/storm": 5}) {
		t.Fatalf("exported %v", got)
	}
	pool.Close()
	if err := e.Refresh(ctx); err == nil {
		t.Fatal("refresh on a closed pool succeeded")
	}
	if got := exported(t, reg); len(got) != 0 {
		t.Errorf("after a failed refresh: exported %v, want nothing", got)
	}
	if n, _ := metrictest.Value(t, reg, "sluice_errorlog_top_refresh_errors_total", nil); n != 1 {
		t.Errorf("sluice_errorlog_top_refresh_errors_total = %v, want 1", n)
	}
}

func TestTopExportConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   TopExportConfig
		field string
	}{
		{TopExportConfig{N: TopExportNMax + 1}, "N"},
		{TopExportConfig{N: -1}, "N"},
		{TopExportConfig{Window: MaxTopWindow + time.Minute}, "Window"},
		{TopExportConfig{Interval: -time.Second}, "Interval"},
		{TopExportConfig{Timeout: -time.Second}, "Timeout"},
	} {
		_, err := NewTopExporter(&pgxpool.Pool{}, tc.cfg, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "TopExportConfig."+tc.field) {
			t.Errorf("%+v: error %v, want one naming TopExportConfig.%s", tc.cfg, err, tc.field)
		}
	}
	cfg := TopExportConfig{}
	cfg.setDefaults()
	if got := []any{cfg.N, cfg.Window, cfg.Interval, cfg.Timeout}; !slices.Equal(got, []any{10, 5 * time.Minute, 15 * time.Second, 10 * time.Second}) {
		t.Errorf("defaults %v", got)
	}
}
