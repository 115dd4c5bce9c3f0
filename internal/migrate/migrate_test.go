package migrate_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/migrate"
	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// emptyDB returns a pool on a test database with nothing in it: pgtest's
// databases come migrated, so the schema is reset.
func emptyDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(t.Context(), "DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		t.Fatal(err)
	}
	return db.Pool
}

func exists(t *testing.T, pool *pgxpool.Pool, table string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestUpFromScratchThenNoop(t *testing.T) {
	t.Parallel()
	pool := emptyDB(t)
	before, err := migrate.Status(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) == 0 || before[0].Applied {
		t.Fatalf("Status on an empty database = %+v", before)
	}

	applied, err := migrate.Up(t.Context(), pool, migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(before) || applied[0] != 1 {
		t.Fatalf("applied = %v, want all %d", applied, len(before))
	}
	again, err := migrate.Up(t.Context(), pool, migrate.Options{})
	if err != nil || len(again) != 0 {
		t.Fatalf("second Up = %v, %v; want nothing applied", again, err)
	}

	status, err := migrate.Status(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range status {
		if !m.Applied || m.AppliedAt.IsZero() {
			t.Errorf("after Up: %+v", m)
		}
	}
	if status[0].Name != "error_log" {
		t.Errorf("first migration name = %q", status[0].Name)
	}

	// The error-log schema as designed.
	var kind string
	if err := pool.QueryRow(t.Context(), "SELECT relkind::text FROM pg_class WHERE oid = 'error_log'::regclass").Scan(&kind); err != nil || kind != "p" {
		t.Errorf("error_log relkind = %q (%v), want partitioned", kind, err)
	}
	for _, table := range []string{"error_log_default", "error_counts", "error_log_conversation_time_idx"} {
		if !exists(t, pool, table) {
			t.Errorf("%s missing", table)
		}
	}
}

func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	pool := emptyDB(t)
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		all []int
	)
	for range 4 {
		wg.Go(func() {
			applied, err := migrate.Up(t.Context(), pool, migrate.Options{})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			all = append(all, applied...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(all)
	status, _ := migrate.Status(t.Context(), pool)
	if len(all) != len(status) || slices.Compact(slices.Clone(all))[0] != 1 || len(slices.Compact(all)) != len(status) {
		t.Errorf("concurrent Up applied %v in total, want each of %d migrations exactly once", all, len(status))
	}
}

func TestDestructiveMigrationRefused(t *testing.T) {
	t.Parallel()
	pool := emptyDB(t)
	fsys := fstest.MapFS{
		"0001_create.sql":  {Data: []byte("CREATE TABLE a (id int);")},
		"0002_cleanup.sql": {Data: []byte("CREATE TABLE b (id int);\n-- the old table is no longer needed\nDROP TABLE a;\n")},
	}
	applied, err := migrate.UpFS(t.Context(), pool, fsys, migrate.Options{})
	if !errors.Is(err, migrate.ErrDestructive) {
		t.Fatalf("err = %v, want ErrDestructive", err)
	}
	var de *migrate.DestructiveError
	if !errors.As(err, &de) || de.File != "0002_cleanup.sql" || de.Line != 3 || de.Reason != "DROP TABLE" {
		t.Fatalf("err = %#v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "0002_cleanup.sql") || !strings.Contains(msg, "DROP TABLE") || !strings.Contains(msg, "AllowDestructive") {
		t.Errorf("message does not say which file, why and how: %s", msg)
	}
	if len(applied) != 0 || exists(t, pool, "a") {
		t.Fatalf("refused run applied %v (table a exists: %v); want nothing applied", applied, exists(t, pool, "a"))
	}

	applied, err = migrate.UpFS(t.Context(), pool, fsys, migrate.Options{AllowDestructive: true})
	if err != nil || !slices.Equal(applied, []int{1, 2}) {
		t.Fatalf("with AllowDestructive: %v, %v", applied, err)
	}
	if exists(t, pool, "a") || !exists(t, pool, "b") {
		t.Error("AllowDestructive did not run the migration")
	}
}

func TestFailedMigrationRollsBack(t *testing.T) {
	t.Parallel()
	pool := emptyDB(t)
	fsys := fstest.MapFS{
		"0001_a.sql":   {Data: []byte("CREATE TABLE a (id int);")},
		"0002_bad.sql": {Data: []byte("CREATE TABLE b (id int);\nSELECT nope FROM nowhere;\n")},
	}
	applied, err := migrate.UpFS(t.Context(), pool, fsys, migrate.Options{})
	if err == nil || !strings.Contains(err.Error(), "0002_bad.sql line 2") {
		t.Fatalf("err = %v, want it to name 0002_bad.sql line 2", err)
	}
	if !slices.Equal(applied, []int{1}) {
		t.Errorf("applied = %v, want [1]", applied)
	}
	if exists(t, pool, "b") {
		t.Error("half of the failed migration was kept")
	}
	status, err := migrate.StatusFS(t.Context(), pool, fsys)
	if err != nil || !status[0].Applied || status[1].Applied {
		t.Fatalf("status = %+v, %v", status, err)
	}

	fsys["0002_bad.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE b (id int);")}
	applied, err = migrate.UpFS(t.Context(), pool, fsys, migrate.Options{})
	if err != nil || !slices.Equal(applied, []int{2}) {
		t.Fatalf("after fix: %v, %v", applied, err)
	}
}

func TestRecordedNameMismatch(t *testing.T) {
	t.Parallel()
	pool := emptyDB(t)
	if _, err := migrate.UpFS(t.Context(), pool, fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1")}}, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	_, err := migrate.UpFS(t.Context(), pool, fstest.MapFS{"0001_other.sql": {Data: []byte("SELECT 1")}}, migrate.Options{})
	if err == nil || !strings.Contains(err.Error(), "0001_other.sql") || !strings.Contains(err.Error(), "renumber") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewerDatabaseTolerated(t *testing.T) {
	t.Parallel()
	pool := emptyDB(t)
	newer := fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1")}, "0002_b.sql": {Data: []byte("SELECT 2")}}
	if _, err := migrate.UpFS(t.Context(), pool, newer, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	older := fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1")}}
	if applied, err := migrate.UpFS(t.Context(), pool, older, migrate.Options{}); err != nil || len(applied) != 0 {
		t.Fatalf("older binary: %v, %v", applied, err)
	}
	status, err := migrate.StatusFS(t.Context(), pool, older)
	if err != nil || len(status) != 2 || status[1].Version != 2 || status[1].Name != "b" || !status[1].Applied {
		t.Fatalf("status = %+v, %v", status, err)
	}
}
