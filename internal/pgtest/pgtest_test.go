package pgtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func scalar[T any](t *testing.T, db *DB, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := db.Pool.QueryRow(t.Context(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func TestNewIsMigrated(t *testing.T) {
	t.Parallel()
	db := New(t)
	if !strings.HasPrefix(db.Name, Prefix) {
		t.Errorf("Name %q lacks prefix %q", db.Name, Prefix)
	}
	if got := scalar[string](t, db, "SELECT current_database()"); got != db.Name {
		t.Errorf("connected to %q, want %q", got, db.Name)
	}
	if n := scalar[int](t, db, "SELECT count(*) FROM schema_migrations"); n == 0 {
		t.Error("no migrations recorded")
	}
	if kind := scalar[string](t, db, "SELECT relkind::text FROM pg_class WHERE relname = 'error_log'"); kind != "p" {
		t.Errorf("error_log relkind = %q, want partitioned table", kind)
	}
	conn, err := pgx.Connect(t.Context(), db.URL)
	if err != nil {
		t.Fatalf("URL %s: %v", db.URL, err)
	}
	conn.Close(t.Context())
}

func TestDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := New(t), New(t)
	if a.Name == b.Name {
		t.Fatalf("same database %s twice", a.Name)
	}
	if _, err := a.Pool.Exec(t.Context(), "CREATE TABLE only_in_a (v int)"); err != nil {
		t.Fatal(err)
	}
	if got := scalar[bool](t, b, "SELECT to_regclass('only_in_a') IS NOT NULL"); got {
		t.Error("table created in one test database is visible in another")
	}
}

func TestParallelNew(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	names := map[string]bool{}
	for i := range 6 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			db := New(t)
			if _, err := db.Pool.Exec(t.Context(), "INSERT INTO error_counts (tenant, conversation, channel, reason, outcome, minute, count) VALUES ('t', 'c', 'email', 'r', 'invalid', now(), 1)"); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if names[db.Name] {
				t.Errorf("duplicate database %s", db.Name)
			}
			names[db.Name] = true
		})
	}
}

func TestCleanupDropsDatabase(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("inner", func(t *testing.T) {
		db := New(t)
		name = db.Name
		// An open connection outside the pool must not block the drop.
		conn, err := pgx.Connect(t.Context(), db.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn // deliberately left open
	})
	var exists bool
	if err := current.admin.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestDropRefusesForeignNames(t *testing.T) {
	t.Parallel()
	New(t) // make sure the server is up
	for _, name := range []string{"postgres", "sluice", Prefix + "someoneelse_1", current.prefix[:len(current.prefix)-1]} {
		if err := current.drop(t.Context(), name); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("drop(%q) = %v, want refusal", name, err)
		}
		if err := current.create(t.Context(), name, ""); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("create(%q) = %v, want refusal", name, err)
		}
	}
	var exists bool
	if err := current.admin.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'postgres')").Scan(&exists); err != nil || !exists {
		t.Fatalf("postgres database gone? %v %v", exists, err)
	}
}

// fatalRecorder stands in for a testing.TB to observe a Fatal.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestNewWithoutMain(t *testing.T) {
	t.Parallel()
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		newDB(rec, nil)
	}()
	<-done
	if !strings.Contains(rec.msg, "func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }") {
		t.Errorf("Fatal message %q does not say to add TestMain", rec.msg)
	}
}

// TestExternalServer runs this package's TestExternalChild in a child process with
// SLUICE_TEST_DATABASE_URL pointing at this binary's server, and a poisoned
// SLUICE_DATABASE_URL that must never be used.
func TestExternalServer(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") != "" {
		t.Skip("child")
	}
	t.Parallel()
	New(t) // start our server
	cmd := exec.Command(os.Args[0], "-test.run=^TestExternalChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"PGTEST_CHILD=1",
		EnvURL+"="+current.base.String(),
		"SLUICE_DATABASE_URL=postgres://production@must-not-be-used.invalid/prod",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var child string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CHILD_DB="); ok {
			child = v
		}
	}
	if !strings.HasPrefix(child, Prefix) || strings.HasPrefix(child, current.prefix) {
		t.Fatalf("child database %q: want a %s name of its own\n%s", child, Prefix, out)
	}
	childPrefix := child[:strings.LastIndexByte(child, '_')+1]
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var left int
	if err := current.admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)", childPrefix).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("child left %d databases (%s*) on the shared server", left, childPrefix)
	}
}

func TestExternalChild(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "" {
		t.Skip("run by TestExternalServer")
	}
	db := New(t)
	if current.cluster != nil {
		t.Fatal("started a local cluster despite " + EnvURL)
	}
	wantPort := strings.TrimPrefix(current.base.Port(), "")
	if got := scalar[int](t, db, "SELECT inet_server_port()"); strconv.Itoa(got) != wantPort {
		t.Errorf("connected to port %d, want %s", got, wantPort)
	}
	fmt.Printf("CHILD_DB=%s\n", db.Name)
}

// TestRefuseProduction: a server holding a database that sluice recorded as
// production is refused unless overridden.
func TestRefuseProduction(t *testing.T) {
	db := New(t)
	if err := current.refuseProduction(t.Context()); err != nil {
		t.Fatalf("no production database, refused: %v", err)
	}
	if _, err := db.Pool.Exec(t.Context(), `INSERT INTO sluice_meta (key, value) VALUES ('env', 'production')`); err != nil {
		t.Fatal(err)
	}
	err := current.refuseProduction(t.Context())
	if err == nil || !strings.Contains(err.Error(), db.Name) || !strings.Contains(err.Error(), EnvAllowProduction) {
		t.Fatalf("production database: %v", err)
	}
	t.Setenv(EnvAllowProduction, "1")
	if err := current.refuseProduction(t.Context()); err != nil {
		t.Fatalf("override: %v", err)
	}
}

// TestStopStartServer: StopServer takes the server down (a query fails) and
// StartServer brings it back on the same URL with the data kept. Not
// parallel: the other tests of this binary share the server.
func TestStopStartServer(t *testing.T) {
	if os.Getenv(EnvURL) != "" {
		t.Skip("the server is not pgtest's own")
	}
	db := New(t)
	ctx := t.Context()
	if _, err := db.Pool.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	StopServer(t)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := db.Pool.Ping(qctx)
	cancel()
	if err == nil {
		t.Fatal("ping succeeded while the server was stopped")
	}
	StartServer(t)
	var v int
	if err := db.Pool.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after restart: %d, %v; want 7", v, err)
	}
}
