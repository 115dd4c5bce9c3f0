package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/redact"
)

// apikeyDatabaseURL is the Postgres of `make run` (sluice dev: user and
// database sluice, port 54329), the default of `sluice ctl apikey`.
const apikeyDatabaseURL = "postgres://sluice@127.0.0.1:54329/sluice?sslmode=disable"

const apikeyUsage = `usage: sluice ctl apikey <command> [flags]

Manage the API keys of the campaign API. Keys are stored as SHA-256 hashes:
create prints a key once, and it cannot be shown again. This talks to
Postgres directly, so it works before any key exists.

Two kinds of key:
  tenant keys (sk_<tenant>_...) act on their tenant only, with scopes send
    (create conversations, queue activations), read (read them) and admin
    (pause, resume, stop and list the tenant's own conversations);
  operator keys (sko_...) belong to no tenant: the fleet-wide controls
    (error-log mode, intake, channels, top errors) and every tenant's
    conversations. Changes made with one are audited as operator:<id> (<name>).

commands:
  create --tenant T --scope send,read[,admin] [--name N]
                       create a key for tenant T and print it (alone on
                       stdout, so KEY=$(sluice ctl apikey create ...) works)
  create --operator --name N
                       create an operator key; N says who holds it (audited)
  list [--tenant T]    the keys: id, tenant (- for operator keys), name,
                       scopes, created, revoked
  revoke ID            refuse the key with this id from now on

Rotating a key: create a new one, move its holder to it, revoke the old one.

flags, before or after the command's arguments:
  --database-url URL   Postgres (SLUICE_DATABASE_URL, default sluice dev's:
                       ` + apikeyDatabaseURL + `)
  --json               list: print JSON
`

// apikeyArgs are the parsed arguments of one apikey command.
type apikeyArgs struct {
	cmd                  string
	tenant, scopes, name string
	asJSON, operator     bool
	pos                  []string
	parsedScopes         []api.Scope
}

// runAPIKey implements `sluice ctl apikey create|list|revoke`; args start
// after "apikey".
func runAPIKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, apikeyUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	a := &apikeyArgs{cmd: args[0]}
	name := "ctl apikey " + a.cmd
	fs := newFlagSet(name, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, apikeyUsage) }
	dbURL := fs.String("database-url", env("SLUICE_DATABASE_URL", apikeyDatabaseURL), "Postgres URL")
	switch a.cmd {
	case "create":
		fs.BoolVar(&a.operator, "operator", false, "an operator key: no tenant, scope operator")
		fs.StringVar(&a.tenant, "tenant", "", "the key's tenant (required)")
		fs.StringVar(&a.scopes, "scope", "", "comma-separated scopes: send, read, admin (required)")
		fs.StringVar(&a.name, "name", "", "a note: who or what uses the key")
	case "list":
		fs.StringVar(&a.tenant, "tenant", "", "only this tenant's keys")
		fs.BoolVar(&a.asJSON, "json", false, "print JSON")
	case "revoke":
	default:
		fmt.Fprintf(stderr, "sluice ctl apikey: unknown command %q\n\n%s", a.cmd, apikeyUsage)
		return errUsage
	}
	var err error
	if a.pos, err = parseCommand(fs, args[1:]); err != nil {
		return err
	}
	if msg := a.check(); msg != "" {
		fmt.Fprintf(stderr, "sluice %s: %s\n", name, msg)
		return errUsage
	}
	pool, err := apikeyPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return a.run(ctx, pool, stdout, stderr)
}

// check returns what is wrong with the arguments, "" if nothing.
func (a *apikeyArgs) check() string {
	switch {
	case a.cmd == "revoke" && len(a.pos) != 1:
		return "want exactly one key id (sluice ctl apikey list shows them)"
	case a.cmd != "revoke" && len(a.pos) != 0:
		return fmt.Sprintf("unexpected arguments %q", a.pos)
	case a.cmd != "create":
		return ""
	case a.operator && (a.tenant != "" || a.scopes != ""):
		return "--operator takes no --tenant or --scope: an operator key belongs to no tenant"
	case a.operator && strings.TrimSpace(a.name) == "":
		return "--operator needs --name: who holds the key (it names them in the audit)"
	case a.operator:
		return ""
	case a.tenant == "":
		return "--tenant is required"
	}
	var err error
	if a.parsedScopes, err = api.ParseScopes(a.scopes); err != nil {
		return "--scope: " + strings.TrimPrefix(err.Error(), "api: ")
	}
	return ""
}

// run runs the checked command.
func (a *apikeyArgs) run(ctx context.Context, pool *pgxpool.Pool, stdout, stderr io.Writer) error {
	switch a.cmd {
	case "create":
		create := func() (string, api.APIKey, error) {
			return api.CreateAPIKey(ctx, pool, a.tenant, a.name, a.parsedScopes)
		}
		whose := "for tenant " + a.tenant
		if a.operator {
			create = func() (string, api.APIKey, error) { return api.CreateOperatorKey(ctx, pool, a.name) }
			whose = "(operator, no tenant)"
		}
		key, info, err := create()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, key)
		fmt.Fprintf(stderr, "created key %s %s with scopes %s; it is shown only now: store it\n",
			info.ID, whose, joinScopes(info.Scopes))
		return nil
	case "list":
		keys, err := api.ListAPIKeys(ctx, pool, a.tenant)
		if err != nil {
			return err
		}
		if a.asJSON {
			return printKeysJSON(stdout, keys)
		}
		return printKeys(stdout, keys)
	default: // revoke
		k, err := api.RevokeAPIKey(ctx, pool, a.pos[0])
		if errors.Is(err, api.ErrKeyNotFound) {
			return fmt.Errorf("apikey revoke: no key with id %q", a.pos[0])
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s of %s at %s\n", k.ID, keyOwner(k), k.RevokedAt.UTC().Format(time.RFC3339))
		return nil
	}
}

// apikeyPool connects to Postgres, with an error that says where it tried.
func apikeyPool(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("apikey: database URL: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("apikey: cannot reach Postgres at %s (is 'make run' up? else set --database-url or SLUICE_DATABASE_URL): %w",
			redact.URL(dbURL), err)
	}
	return pool, nil
}

// keyOwner says whose a key is: "tenant acme" or "the operators".
func keyOwner(k api.APIKey) string {
	if k.Operator() {
		return "the operators"
	}
	return "tenant " + k.Tenant
}

func joinScopes(ss []api.Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

func printKeys(w io.Writer, keys []api.APIKey) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tNAME\tSCOPES\tCREATED\tREVOKED")
	for _, k := range keys {
		revoked := "-"
		if k.RevokedAt != nil {
			revoked = k.RevokedAt.UTC().Format(time.RFC3339)
		}
		name := k.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, cmp.Or(k.Tenant, "-"), name, joinScopes(k.Scopes),
			k.CreatedAt.UTC().Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}

func printKeysJSON(w io.Writer, keys []api.APIKey) error {
	type keyJSON struct {
		ID        string      `json:"id"`
		Tenant    string      `json:"tenant"`
		Name      string      `json:"name"`
		Scopes    []api.Scope `json:"scopes"`
		CreatedAt time.Time   `json:"created_at"`
		RevokedAt *time.Time  `json:"revoked_at"`
	}
	out := make([]keyJSON, len(keys))
	for i, k := range keys {
		out[i] = keyJSON{ID: k.ID, Tenant: k.Tenant, Name: k.Name, Scopes: k.Scopes, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
