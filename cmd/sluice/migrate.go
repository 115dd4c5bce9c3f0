package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/migrate"
)

// runMigrate implements `sluice migrate [status]`.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	dbURL := fs.String("database-url", os.Getenv("SLUICE_DATABASE_URL"), "Postgres URL (required)")
	destructive := fs.Bool("allow-destructive", false, "allow migrations that drop or truncate data")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dbURL == "" {
		return errors.New("migrate: --database-url or SLUICE_DATABASE_URL is required")
	}
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer pool.Close()
	if fs.Arg(0) == "status" {
		ms, err := migrate.Status(ctx, pool)
		if err != nil {
			return err
		}
		for _, m := range ms {
			state := "pending"
			if m.Applied {
				state = "applied " + m.AppliedAt.Format("2006-01-02 15:04:05Z07:00")
			}
			fmt.Fprintf(stdout, "%04d  %-40s %s\n", m.Version, m.Name, state)
		}
		return nil
	}
	applied, err := migrate.Up(ctx, pool, migrate.Options{AllowDestructive: *destructive, Logger: newLogger(stderr)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied %d migration(s) %v\n", len(applied), applied)
	return nil
}
