// Package migrate applies sluice's database schema: versioned, forward-only SQL
// migrations embedded in the binary (sql/NNNN_name.sql).
//
// Choices:
//
//   - Forward only. There are no down migrations; a mistake is fixed by a new
//     migration. Versions are the file's numeric prefix and apply in ascending
//     order; applied versions are recorded in schema_migrations(version, name,
//     applied_at).
//   - Each migration runs in its own transaction together with its
//     schema_migrations row, so it is applied entirely or not at all. (Statements
//     that cannot run in a transaction, such as CREATE INDEX CONCURRENTLY, are
//     therefore not supported.)
//   - Concurrent starts are safe: Up holds the session advisory lock
//     AdvisoryLockKey for its whole run, so a second process waits, then finds
//     nothing left to do.
//   - Destructive statements (DROP TABLE/SCHEMA, TRUNCATE, DELETE without WHERE,
//     ALTER TABLE ... DROP COLUMN, DROP ... CASCADE) make Up refuse before applying
//     anything, naming the file and line, unless Options.AllowDestructive is set. A
//     clean-up step that empties a live table must be a deliberate act.
//   - A recorded version whose name differs from the file's is an error (two
//     branches picked the same number); a recorded version without a file (a newer
//     binary migrated this database) is logged and tolerated, so an older binary
//     keeps running during a rolling upgrade.
package migrate

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// AdvisoryLockKey is the pg_advisory_lock key Up holds while it runs:
// 0x736c756963656d67, the ASCII bytes of "sluicemg". Any other tool that changes
// sluice's schema should take it too.
const AdvisoryLockKey int64 = 0x736c756963656d67

//go:embed sql/*.sql
var embedded embed.FS

// Options tune Up.
type Options struct {
	// AllowDestructive lets migrations that drop or empty tables, schemas or
	// columns run. Default false: Up refuses them.
	AllowDestructive bool
	// Logger receives one line per applied migration. Default: discard.
	Logger *slog.Logger
}

// Migration is one migration and whether this database has it.
type Migration struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt time.Time // zero unless Applied
}

// Up applies the pending embedded migrations in version order and returns the
// versions it applied (empty when the database was current).
func Up(ctx context.Context, pool *pgxpool.Pool, opts Options) ([]int, error) {
	return up(ctx, pool, sqlFS(), opts)
}

// Status lists the embedded migrations, plus any recorded version this binary
// does not know, in version order.
func Status(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	return status(ctx, pool, sqlFS())
}

func sqlFS() fs.FS {
	sub, err := fs.Sub(embedded, "sql")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// source is one migration file.
type source struct {
	version int
	name    string
	file    string
	sql     string
}

var fileName = regexp.MustCompile(`^(\d+)_([a-z0-9_]+)\.sql$`)

// load reads the *.sql files at the top of fsys. Every .sql file must be named
// NNNN_name.sql (lower case) and versions must be unique and positive.
func load(fsys fs.FS) ([]source, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var out []source
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migrate: %s: file name must be NNNN_name.sql (digits, underscore, lower-case name)", e.Name())
		}
		v, err := strconv.Atoi(m[1])
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migrate: %s: version must be a positive number", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrate: %s and %s have the same version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		out = append(out, source{version: v, name: m[2], file: e.Name(), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b source) int { return a.version - b.version })
	return out, nil
}

const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer     PRIMARY KEY,
  name       text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`

type record struct {
	name      string
	appliedAt time.Time
}

func up(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, opts Options) (applied []int, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sources, err := load(fsys)
	if err != nil {
		return nil, err
	}

	// A session lock needs one connection for the whole run.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", AdvisoryLockKey); err != nil {
		return nil, fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", AdvisoryLockKey); uerr != nil {
			// Never hand a connection that may still hold the lock back to the pool.
			conn.Conn().Close(uctx)
		}
	}()

	if _, err := conn.Exec(ctx, createTable); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done, err := recorded(ctx, conn)
	if err != nil {
		return nil, err
	}

	var pending []source
	known := map[int]bool{}
	for _, s := range sources {
		known[s.version] = true
		r, ok := done[s.version]
		if !ok {
			pending = append(pending, s)
			continue
		}
		if r.name != s.name {
			return nil, fmt.Errorf("migrate: version %d is recorded as %q but the file is %s; "+
				"two migrations share a number: renumber the newer one", s.version, r.name, s.file)
		}
	}
	for v, r := range done {
		if !known[v] {
			log.Warn("migrate: database has a migration this binary does not know (applied by a newer version?)", "version", v, "name", r.name)
		}
	}
	if !opts.AllowDestructive {
		for _, s := range pending {
			if f, bad := findDestructive(s.sql); bad {
				return nil, &DestructiveError{File: s.file, Line: f.line, Reason: f.reason}
			}
		}
	}

	applied = []int{}
	for _, s := range pending {
		start := time.Now()
		if err := apply(ctx, conn, s); err != nil {
			return applied, err
		}
		applied = append(applied, s.version)
		log.Info("migrate: applied", "version", s.version, "name", s.name, "elapsed", time.Since(start).Round(time.Millisecond))
	}
	return applied, nil
}

func apply(ctx context.Context, conn *pgxpool.Conn, s source) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// No arguments: pgx sends it with the simple protocol, so a file may hold
		// several statements.
		if _, err := tx.Exec(ctx, s.sql); err != nil {
			return fmt.Errorf("migrate: %s%s: %w", s.file, errorLine(s.sql, err), err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", s.version, s.name); err != nil {
			return fmt.Errorf("migrate: record %s: %w", s.file, err)
		}
		return nil
	})
}

// errorLine turns a server error position into " line N" of the file.
func errorLine(sql string, err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Position <= 0 {
		return ""
	}
	runes := []rune(sql)
	pos := min(int(pgErr.Position)-1, len(runes))
	return fmt.Sprintf(" line %d", strings.Count(string(runes[:pos]), "\n")+1)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func recorded(ctx context.Context, q querier) (map[int]record, error) {
	rows, err := q.Query(ctx, "SELECT version, name, applied_at FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	out := map[int]record{}
	var (
		v int
		r record
	)
	_, err = pgx.ForEachRow(rows, []any{&v, &r.name, &r.appliedAt}, func() error {
		out[v] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	return out, nil
}

func status(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS) ([]Migration, error) {
	sources, err := load(fsys)
	if err != nil {
		return nil, err
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	done := map[int]record{}
	if exists {
		if done, err = recorded(ctx, pool); err != nil {
			return nil, err
		}
	}
	var out []Migration
	for _, s := range sources {
		r, ok := done[s.version]
		out = append(out, Migration{Version: s.version, Name: s.name, Applied: ok, AppliedAt: r.appliedAt})
		delete(done, s.version)
	}
	for v, r := range done {
		out = append(out, Migration{Version: v, Name: r.name, Applied: true, AppliedAt: r.appliedAt})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	return out, nil
}
