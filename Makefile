# sluice — the two commands of the README are `make run` and `make test`.
GO      ?= go
BIN     := bin/sluice
# Packages with goroutines on the message path: run under the race detector.
RACE_PKGS := ./orchestrator/... ./errorlog/... ./dispatch/... ./api/... ./node/...

.PHONY: all build run test vet test-race test-rest test-accounting test-browser console-screenshots loadtest-smoke postgres smtp-sink curl prometheus chromium nats-server deploy-tools deploy-check test-fleet fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sluice

## run: the whole system on this machine (embedded NATS, local Postgres, sinks, API, workers)
run: postgres build
	./$(BIN) dev

## test: vet, the pipeline packages under -race (short sizes), the rest, the full 100k accounting test and the console in a real browser
test: postgres smtp-sink curl prometheus chromium vet deploy-check test-race test-rest test-accounting test-browser loadtest-smoke

vet:
	$(GO) vet ./...

test-race:
	$(GO) test -race -short -count=1 -timeout 15m $(RACE_PKGS)

test-rest:
	$(GO) test -count=1 -timeout 10m $$($(GO) list ./... | grep -v -e /orchestrator -e /errorlog -e /dispatch -e /api -e /node -e /deploy/)

# The 100k-message accounting test at full size, without the race detector's
# 10x cost (the race run above covers it at 10k).
test-accounting:
	$(GO) test -count=1 -timeout 10m -run 'TestAccountingExact$$' ./orchestrator/

## test-browser: the console driven in headless Chromium against dev deployments (chromedp): a replayed
## 20,000-message incident seen in the storm view, a stop through the page, the error-log switch, the
## sign-in rules; fails on any browser console error. Screenshots go to the test's artifacts.
test-browser: chromium
	SLUICE_REQUIRE_BROWSER=1 $(GO) test -count=1 -timeout 5m -run '^TestConsole' ./api/console/

## console-screenshots: the browser test, writing its screenshots to docs/console (the README's)
console-screenshots: chromium
	SLUICE_REQUIRE_BROWSER=1 SLUICE_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run '^TestConsole' ./api/console/

## loadtest-smoke: a short incident replay (200k messages, 95 % invalid, quarantine off so every
## invalid message goes through the error log): accounting must be exact and the transactional
## p99 during the burst under 100ms, issue 14's bound (measured 22-27ms alone, 42ms inside CI on a
## slow day: the margin a shared 2-core machine needs; not a throughput assertion)
loadtest-smoke: build
	./$(BIN) loadtest --messages 200000 --quarantine none --max-tx-p99 100ms --report $$(mktemp -d /tmp/sluice-loadtest-XXXXXX)

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

## chromium: Debian's chromium, which the console's browser test drives headless
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "chromium not found: installing Debian's chromium"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "chromium not found (the console's browser test needs it)."; \
		echo "Install it with: sudo apt-get install -y chromium"; exit 1; \
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

## prometheus: make sure Prometheus and promtool are installed (Debian's prometheus; not started)
prometheus:
	@if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "prometheus/promtool not found: installing Debian's prometheus (its service is not started)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends prometheus \
			&& (systemctl stop prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true); \
	else \
		echo "prometheus and promtool not found."; \
		echo "Install them with: sudo apt-get install -y prometheus"; exit 1; \
	fi

# Versions of the tools installed from the Go module proxy: nats-server the
# release go.mod pins, helm a v3 release that builds with this Go.
NATS_SERVER_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
HELM_VERSION        := v3.19.0
GOBIN_DIR           := $(shell $(GO) env GOPATH)/bin
NATS_SERVER         := $(GOBIN_DIR)/nats-server

## nats-server: the nats-server release go.mod pins, installed with go install into $(go env GOPATH)/bin when missing
nats-server:
	@if [ -x "$(NATS_SERVER)" ] && "$(NATS_SERVER)" --version | grep -qx 'nats-server: $(NATS_SERVER_VERSION)'; then :; else \
		echo "installing nats-server $(NATS_SERVER_VERSION) into $(GOBIN_DIR)"; \
		GOBIN="$(GOBIN_DIR)" $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION); \
	fi

## deploy-tools: nats-server and helm from the Go module proxy, when missing
deploy-tools: nats-server
	@command -v helm >/dev/null 2>&1 || [ -x $(GOBIN_DIR)/helm ] || \
		{ echo "installing helm $(HELM_VERSION)"; $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }

## deploy-check: everything under deploy/ checked offline: the NATS configs (nats-server -t), the
## alert rules (promtool check rules, promtool test rules), the Helm chart (helm lint, helm template),
## the compose file (its sluice commands against sluice's flags) and the dashboard's and alerts'
## evaluation against a real Prometheus scraping a dev node during a short storm
deploy-check: prometheus deploy-tools
	PATH="$(GOBIN_DIR):$$PATH" ./deploy/check.sh
	PATH="$(GOBIN_DIR):$$PATH" $(GO) test -count=1 -run '^TestDeploy' ./cmd/sluice/
	$(GO) test -count=1 -timeout 5m ./deploy/...

## curl: the API's Expect: 100-continue test sends its 50 MB body with curl, as users do
curl:
	@if command -v curl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "curl not found: installing Debian's curl"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl; \
	else \
		echo "curl not found: the Expect: 100-continue test will skip (sudo apt-get install -y curl)"; \
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
