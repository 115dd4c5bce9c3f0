// Package pgtest is the one helper for tests that need PostgreSQL: a throwaway
// server per test binary and a fresh, migrated database per test.
//
// Use it from a package's tests as
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		t.Parallel()
//		db := pgtest.New(t) // db.Pool, db.URL, db.Name
//		...
//	}
//
// Choices:
//
//   - One server per test binary, started on first use by New (so tests that do
//     not need a database do not wait for one) and stopped by Main after the tests.
//     By default it is a pglocal cluster with durability turned off, in a temporary
//     directory that is deleted afterwards, even if the binary crashes or times out
//     (pglocal's Ephemeral watchdog).
//   - SLUICE_TEST_DATABASE_URL (a postgres:// URL whose user may CREATE DATABASE)
//     points the tests at an existing server instead. The helper never reads
//     SLUICE_DATABASE_URL, and it only ever creates and drops databases it named
//     itself: "sluice_test_" followed by a random tag of this binary, so parallel
//     test binaries sharing a server never touch each other's databases, let alone
//     anyone else's.
//   - One database per test, created from a template that migrate.Up migrated
//     once per binary (CREATE DATABASE ... TEMPLATE is a file copy, far cheaper
//     than migrating again), and dropped WITH (FORCE) in t.Cleanup. Tests are
//     isolated from each other, can use t.Parallel, and may terminate backends or
//     break their database freely. CREATE DATABASE from the template is serialized
//     with a mutex: PostgreSQL refuses to copy a template that is in use.
//   - Main and New share the server through package state: TestMain is the only
//     hook a test binary has, and New without Main fails the test with a message
//     saying what to add.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/migrate"
	"github.com/sluicehq/sluice/internal/pglocal"
)

// EnvURL names the variable that points the tests at an existing server.
const EnvURL = "SLUICE_TEST_DATABASE_URL"

// Prefix starts the name of every database pgtest creates.
const Prefix = "sluice_test_"

// DB is one test's database.
type DB struct {
	Pool *pgxpool.Pool // closed at test cleanup
	URL  string        // postgres:// URL of this database
	Name string        // database name, Prefix + binary tag + sequence
}

// current is the server of this test binary, set by Main.
var current *server

// Main runs the tests of a package that uses New, and stops the server (if a test
// started it) afterwards. Use it as func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }.
func Main(m *testing.M) int {
	s := &server{}
	current = s
	code := m.Run()
	current = nil
	if err := s.close(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// New creates a fresh database for t with every migration applied, and drops it
// when t ends.
func New(t testing.TB) *DB {
	t.Helper()
	return newDB(t, current)
}

func newDB(t testing.TB, s *server) *DB {
	t.Helper()
	if s == nil {
		t.Fatal("pgtest: no test database server: pgtest.New needs pgtest.Main; add\n\n" +
			"\tfunc TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }\n\nto this package's tests")
		return nil
	}
	if err := s.start(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("%s%d", s.prefix, s.seq.Add(1))
	if err := s.createFromTemplate(ctx, name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.drop(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	dbURL := s.dbURL(name)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop above
	return &DB{Pool: pool, URL: dbURL, Name: name}
}

// StopServer shuts down the PostgreSQL server of this test binary, which
// every DB of the binary shares, until StartServer: a database outage for
// tests of what clients do meanwhile. It fails the test when the server is
// not pgtest's own (SLUICE_TEST_DATABASE_URL): a shared server is not ours
// to stop.
func StopServer(t testing.TB) {
	t.Helper()
	c := ownCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Pause(ctx); err != nil {
		t.Fatalf("pgtest: stop server: %v", err)
	}
}

// StartServer starts the server StopServer stopped, on the same port, and
// waits until it accepts connections.
func StartServer(t testing.TB) {
	t.Helper()
	c := ownCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Resume(ctx); err != nil {
		t.Fatalf("pgtest: start server: %v", err)
	}
	current.admin.Reset() // its connections died with the server
}

func ownCluster(t testing.TB) *pglocal.Cluster {
	t.Helper()
	if current == nil || current.cluster == nil {
		t.Fatalf("pgtest: the server can be stopped and started only when pgtest started it (not with %s), after New", EnvURL)
	}
	return current.cluster
}

// server is the database server of one test binary.
type server struct {
	once sync.Once
	err  error

	prefix   string // Prefix + random tag + "_": every name this binary creates
	template string
	base     *url.URL // URL of the maintenance database; dbURL swaps the path
	admin    *pgxpool.Pool
	cluster  *pglocal.Cluster // nil with EnvURL
	tmp      string

	seq      atomic.Int64
	createMu sync.Mutex // CREATE DATABASE ... TEMPLATE must not run concurrently
}

func (s *server) start() error {
	s.once.Do(func() { s.err = s.setup() })
	return s.err
}

func (s *server) setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	tag := make([]byte, 4)
	rand.Read(tag)
	s.prefix = Prefix + hex.EncodeToString(tag) + "_"
	s.template = s.prefix + "template"

	if raw := os.Getenv(EnvURL); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return fmt.Errorf("%s must be a postgres:// URL", EnvURL)
		}
		s.base = u
	} else {
		tmp, err := os.MkdirTemp("", "sluice-pgtest-")
		if err != nil {
			return err
		}
		s.tmp = tmp
		// When root, the server runs as the postgres user, which must reach Dir.
		if err := os.Chmod(tmp, 0o755); err != nil {
			return err
		}
		s.cluster, err = pglocal.Start(ctx, pglocal.Config{
			Dir:       tmp + "/data",
			LogFile:   tmp + "/postgres.log",
			Database:  "postgres",
			Fast:      true,
			Ephemeral: true,
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return fmt.Errorf("start a throwaway PostgreSQL (or set %s): %w", EnvURL, err)
		}
		if s.base, err = url.Parse(s.cluster.AdminURL("postgres")); err != nil {
			return err
		}
	}

	var err error
	if s.admin, err = pgxpool.New(ctx, s.base.String()); err != nil {
		return err
	}
	if s.cluster == nil {
		if err := s.refuseProduction(ctx); err != nil {
			return err
		}
	}
	if err := s.create(ctx, s.template, ""); err != nil {
		return err
	}
	tpl, err := pgxpool.New(ctx, s.dbURL(s.template))
	if err != nil {
		return err
	}
	_, err = migrate.Up(ctx, tpl, migrate.Options{})
	tpl.Close()
	if err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}
	return nil
}

// EnvAllowProduction names the variable (set to 1) that lets the tests run on
// a server one of whose databases belongs to production.
const EnvAllowProduction = "SLUICE_TEST_ALLOW_PRODUCTION"

// refuseProduction is the environment fence of the tests: on a server given by
// EnvURL it looks in every database it can connect to for the environment
// sluice recorded there (sluice_meta, key env) and refuses a production
// server unless EnvAllowProduction is 1. Databases it cannot read are
// skipped.
func (s *server) refuseProduction(ctx context.Context) error {
	if os.Getenv(EnvAllowProduction) == "1" {
		return nil
	}
	rows, err := s.admin.Query(ctx, `SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate`)
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	for _, name := range names {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, s.dbURL(name))
		if err != nil {
			cancel()
			continue
		}
		var env string
		_ = conn.QueryRow(cctx, `SELECT value FROM sluice_meta WHERE key = 'env'`).Scan(&env)
		conn.Close(cctx)
		cancel()
		if env == "production" {
			return fmt.Errorf("%s points at a server whose database %q belongs to production (sluice_meta env); refusing to run tests there (set %s=1 to override)", EnvURL, name, EnvAllowProduction)
		}
	}
	return nil
}

func (s *server) dbURL(name string) string {
	u := *s.base
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func (s *server) createFromTemplate(ctx context.Context, name string) error {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	return s.create(ctx, name, s.template)
}

func (s *server) create(ctx context.Context, name, template string) error {
	if !strings.HasPrefix(name, s.prefix) {
		return fmt.Errorf("refusing to create database %q: not named by this test binary (%s*)", name, s.prefix)
	}
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := s.admin.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// drop drops a database this binary created, closing its connections. Any other
// name is refused.
func (s *server) drop(ctx context.Context, name string) error {
	if s.prefix == "" || !strings.HasPrefix(name, s.prefix) {
		return fmt.Errorf("refusing to drop database %q: not created by this test binary (%s*)", name, s.prefix)
	}
	if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func (s *server) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if s.admin != nil {
		if s.cluster == nil {
			// A shared server outlives us: drop whatever of ours is left.
			rows, err := s.admin.Query(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", s.prefix)
			var names []string
			if err == nil {
				names, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			errs = append(errs, err)
			for _, n := range names {
				errs = append(errs, s.drop(ctx, n))
			}
		}
		s.admin.Close()
	}
	if s.cluster != nil {
		errs = append(errs, s.cluster.Stop(ctx))
	}
	if s.tmp != "" {
		errs = append(errs, os.RemoveAll(s.tmp))
	}
	return errors.Join(errs...)
}
