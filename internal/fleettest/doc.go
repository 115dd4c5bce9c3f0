// Package fleettest runs sluice as a production user deploys it, and breaks
// it: three nats-server processes clustered on loopback, a Postgres, one
// `sluice serve --api` and two `sluice serve --worker` processes with
// replicated streams (--replicas 3), and an SMTP sink in the test process
// whose ledger outlives the workers.
//
// Its tests carry the build tag fleet, so that `go test ./...` leaves them
// out; `make test-fleet` installs the nats-server release go.mod pins and
// runs them:
//
//	go test -tags fleet -count=1 -v ./internal/fleettest/
//
// The nats-server binary is taken from SLUICE_NATS_SERVER, then PATH, then
// $(go env GOPATH)/bin; without one the tests fail, they do not skip. The
// sluice binary is SLUICE_FLEET_BIN, or built once into a temporary
// directory.
//
// TestFleet drains mostly-invalid campaigns through five faults, one per
// campaign, each campaign queued whole while paused and resumed, and its
// fault struck once a tenth of it has left the stream while some is still
// queued (not judged by the counts, which lag the acks): a worker killed with SIGKILL and restarted, the node leading
// SLUICE_BULK killed and restarted 20 s later (publishing and reads go
// on meanwhile), the node leading the campaign's bulk consumer killed (the
// workers send their acks again to its new leader, so the campaign drains
// within 25 s, before AckWait, but for at most MaxAckPending),
// Postgres stopped for 30 s, and the campaign paused for 24 s, its bulk
// consumer kept, then resumed: nothing counted while held, nothing sent
// twice. After each, at rest, every
// conversation's counts are exact and the streams are back at three
// replicas. TestFleetDrainRate (SLUICE_FLEET_BENCH=1) measures what one and
// two workers drain with replicas 1 and 3.
package fleettest
