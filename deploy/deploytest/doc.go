// Package deploytest checks deploy/ against a running sluice: a real
// Prometheus (Debian's prometheus package, `make prometheus`) scrapes a
// node with the API and worker roles every second during a short storm of
// invalid addresses, loads deploy/prometheus's rules, and evaluates every
// query of the Grafana dashboard and every alert through its HTTP API.
//
// It has no non-test code; `make deploy-check` runs it. The test skips
// when prometheus is not on PATH.
package deploytest
