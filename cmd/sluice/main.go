// Command sluice is the message orchestrator: one binary, several roles.
//
//	sluice dev        everything on one machine (embedded NATS, local Postgres, sinks, API, workers)
//	sluice serve      production roles: --api, --worker
//	sluice migrate    apply database migrations
//	sluice send       send activations through the API (a first message, or a few thousand)
//	sluice ctl        operations: status, error-log mode, top errors, API keys
//	sluice validate   check addresses from the command line
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: sluice <command> [flags]

commands:
  dev        run everything on one machine: embedded NATS JetStream, a local
             Postgres, sink providers, API and workers (what 'make run' starts)
  serve      run production roles against external NATS and Postgres (--api, --worker)
  migrate    apply pending database migrations (migrate status: list them;
             migrate rebind --confirm ID: bind to a restored PostgreSQL cluster)
  send       send activations through the campaign API, counted like a client's (--create makes the conversation)
  ctl        operate a running sluice: status, errorlog show|set, errors top, apikey
  validate   check addresses: sluice validate --channel email|sms|push ADDRESS...
  loadtest   replay the 8M-message incident and measure it (--compare: every error-log mode)

Run 'sluice <command> -h' for the command's flags. Flags default from SLUICE_*
environment variables: SLUICE_NATS_URL, SLUICE_DATABASE_URL, SLUICE_HTTP_ADDR, SLUICE_ENV.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return exitCode(stderr, runDev(ctx, rest, stdout, stderr))
	case "serve":
		return exitCode(stderr, runServe(ctx, rest, stderr))
	case "migrate":
		return exitCode(stderr, runMigrate(ctx, rest, stdout, stderr))
	case "send":
		return exitCode(stderr, runSend(ctx, rest, stdout, stderr))
	case "ctl":
		return exitCode(stderr, runCtl(ctx, rest, stdout, stderr))
	case "loadtest":
		return exitCode(stderr, runLoadtest(ctx, rest, stdout, stderr))
	case "validate":
		return runValidate(rest, stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// exitCode prints err and maps it to the process exit code: 0 for nil, 2 for
// a usage error, 1 otherwise.
func exitCode(stderr io.Writer, err error) int {
	switch {
	case err == nil:
		return 0
	case err == errUsage:
		return 2
	default:
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
}
