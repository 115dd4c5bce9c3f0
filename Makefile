# sluice — the two commands of the README are `make run` and `make test`.
GO      ?= go
BIN     := bin/sluice
# Packages with goroutines on the message path: run under the race detector.
RACE_PKGS := ./orchestrator/... ./errorlog/... ./dispatch/... ./api/... ./node/...

.PHONY: all build run test vet test-race test-rest test-accounting loadtest-smoke postgres smtp-sink nats-server test-fleet fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sluice

## run: the whole system on this machine (embedded NATS, local Postgres, sinks, API, workers)
run: postgres build
	./$(BIN) dev

## test: vet, the pipeline packages under -race (short sizes), the rest, and the full 100k accounting test
test: postgres smtp-sink vet test-race test-rest test-accounting loadtest-smoke

vet:
	$(GO) vet ./...

test-race:
	$(GO) test -race -short -count=1 -timeout 15m $(RACE_PKGS)

test-rest:
	$(GO) test -count=1 -timeout 10m $$($(GO) list ./... | grep -v -e /orchestrator -e /errorlog -e /dispatch -e /api -e /node)

# The 100k-message accounting test at full size, without the race detector's
# 10x cost (the race run above covers it at 10k).
test-accounting:
	$(GO) test -count=1 -timeout 10m -run 'TestAccountingExact$$' ./orchestrator/

## loadtest-smoke: a short incident replay (200k messages, 95 % invalid, quarantine off so every
## invalid message goes through the error log): accounting must be exact and the transactional
## p99 under 2s (a smoke bound for a shared 2-core machine, not a throughput assertion)
loadtest-smoke: build
	./$(BIN) loadtest --messages 200000 --quarantine none --max-tx-p99 2s --report $$(mktemp -d /tmp/sluice-loadtest-XXXXXX)

## postgres: make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) are installed
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "PostgreSQL server binaries not found: installing Debian's postgresql"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	else \
		echo "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found."; \
		echo "Install them with: sudo apt-get install -y postgresql"; exit 1; \
	fi

## smtp-sink: postfix's smtp-sink, a real MTA's test sink the SMTP provider is also tested against
smtp-sink:
	@if command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "postfix's smtp-sink not found: installing Debian's postfix (not started)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix && (postfix stop >/dev/null 2>&1 || true); \
	else \
		echo "smtp-sink not found: the SMTP interoperability tests will skip (sudo apt-get install -y postfix)"; \
	fi

## nats-server: the nats-server release go.mod pins, installed with go install into $(go env GOPATH)/bin when missing
NATS_SERVER_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
GOPATH_BIN = $(shell $(GO) env GOPATH)/bin
NATS_SERVER = $(GOPATH_BIN)/nats-server
nats-server:
	@if [ -x "$(NATS_SERVER)" ] && "$(NATS_SERVER)" --version | grep -qx 'nats-server: $(NATS_SERVER_VERSION)'; then :; else \
		echo "installing nats-server $(NATS_SERVER_VERSION) into $(GOPATH_BIN)"; \
		GOBIN="$(GOPATH_BIN)" $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION); \
	fi

## test-fleet: three nats-server processes clustered on loopback, Postgres, one `serve --api` and two
## `serve --worker` processes with replicas 3; a worker killed, the stream leader's node killed, Postgres
## stopped, each mid-drain, and every count exact after each (internal/fleettest)
test-fleet: postgres nats-server build
	SLUICE_NATS_SERVER="$(NATS_SERVER)" SLUICE_FLEET_BIN="$(abspath $(BIN))" \
		$(GO) test -tags fleet -count=1 -v -timeout 10m -run 'TestFleet$$' ./internal/fleettest/

## fuzz: run each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./dispatch/ -run '^$$' -fuzz '^FuzzValidateEmail$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dispatch/ -run '^$$' -fuzz '^FuzzValidatePhone$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dispatch/ -run '^$$' -fuzz '^FuzzValidatePushToken$$' -fuzztime $(FUZZTIME)
	$(GO) test ./orchestrator/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)

## bench: worker throughput, all-valid and all-invalid batches
bench:
	$(GO) test -run '^$$' -bench 'BenchmarkPipeline' -benchtime 50000x -count 3 ./orchestrator/

clean:
	rm -rf bin
