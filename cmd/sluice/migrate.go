package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/migrate"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// runMigrate implements `sluice migrate [status | rebind --confirm ID]`.
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
	if fs.Arg(0) == "rebind" {
		return runRebind(ctx, pool, fs.Args()[1:], stdout, stderr)
	}
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

// runRebind implements `sluice migrate rebind --confirm ID`: after a real
// restore into a new PostgreSQL cluster, it binds the deployment to that
// cluster (control.RebindDatabase), audited in control_audit with the OS
// user and host. It needs NATS too: the binding is recorded in the control
// bucket as well as in the database.
func runRebind(ctx context.Context, pool *pgxpool.Pool, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate rebind", stderr)
	natsURL := fs.String("nats-url", env("SLUICE_NATS_URL", defaultNATSURL), "NATS server URL(s), comma-separated")
	confirm := fs.String("confirm", "", "the system identifier of the database behind --database-url, as the refusal to start printed it (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *confirm == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: sluice migrate rebind --confirm SYSTEM_IDENTIFIER [--database-url URL] [--nats-url URL]")
		return errUsage
	}
	nc, err := nats.Connect(*natsURL, nats.Name("sluice migrate rebind"))
	if err != nil {
		return fmt.Errorf("migrate rebind: connect nats %s: %w", *natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r, err := control.RebindDatabase(ctx, js, pool, *confirm, osActor("sluice migrate rebind"))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bound to the PostgreSQL cluster %s (was %q); audited in control_audit\n", r.Current, r.Previous)
	return nil
}

// osActor names who runs a command from a shell, for the audit: the
// command, the OS user and the host.
func osActor(command string) string {
	host, _ := os.Hostname()
	user := cmp.Or(os.Getenv("USER"), os.Getenv("LOGNAME"), "unknown")
	return command + " (" + user + "@" + host + ")"
}
