// Package status reports the state of a whole sluice deployment in one
// document: the NATS cluster and sluice's streams (from JetStream's stream
// and account info), every process that announced itself (the heartbeats of
// the control bucket), the lanes' consumers, the error log (mode, each
// worker's writer breaker, spill depth, day partitions ahead), quarantined
// and paused conversations, intake and channels, and PostgreSQL.
//
// Everything but PostgreSQL comes from NATS, so a report is complete while
// PostgreSQL is down: the items only PostgreSQL knows (its reachability and
// system identifier, the partitions ahead) are then null and listed in
// Report.Unavailable with the reason, and so is any other item that could
// not be read. Gather never fails as a whole.
//
// The cluster's peers are as the streams' replica groups show them (leader
// and replicas with current, offline, active and lag): the meta group's own
// peer list needs the system account, which sluice does not use.
//
// GET /v1/admin/status (package api) answers a Report; `sluice ctl status`
// prints it.
package status

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/wire"
)

// DefaultPostgresTimeout bounds each PostgreSQL query of a report.
const DefaultPostgresTimeout = 2 * time.Second

// Sources are what a report is gathered from.
type Sources struct {
	// JS is the deployment's JetStream. Required.
	JS jetstream.JetStream
	// Control is the deployment's control plane. Required.
	Control *control.Store
	// Pool is the deployment's PostgreSQL; nil reports it unavailable.
	Pool *pgxpool.Pool
	// PostgresTimeout bounds each PostgreSQL query. Default
	// DefaultPostgresTimeout: a report answers quickly while PostgreSQL is
	// down.
	PostgresTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Report is the state of a deployment.
type Report struct {
	At            time.Time              `json:"at"`
	NATS          NATS                   `json:"nats"`
	Streams       []Stream               `json:"streams"`
	Workers       []control.WorkerStatus `json:"workers"`
	Lanes         []Lane                 `json:"lanes"`
	ErrorLog      ErrorLog               `json:"errorlog"`
	Conversations Conversations          `json:"conversations"`
	Intake        *control.IntakeInfo    `json:"intake"`
	Channels      []control.ChannelInfo  `json:"channels"`
	Postgres      Postgres               `json:"postgres"`
	// Unavailable maps each item that could not be read ("postgres",
	// "streams", "workers"...) to the reason.
	Unavailable map[string]string `json:"unavailable"`
}

// NATS is the server this process is connected to and the account's
// JetStream usage.
type NATS struct {
	Server  string   `json:"server"`
	Cluster string   `json:"cluster,omitempty"`
	URL     string   `json:"url"`
	Known   []string `json:"known_servers"`
	// Peers are every server that leads or replicates a sluice stream.
	Peers   []Peer `json:"peers"`
	Streams int    `json:"account_streams"`
	// Consumers, Memory and Storage are the account's totals (bytes).
	Consumers int    `json:"account_consumers"`
	Memory    uint64 `json:"account_memory_bytes"`
	Storage   uint64 `json:"account_storage_bytes"`
}

// Peer is a server in a stream's replica group. For a peer met in several
// groups, Current is true only if it is current in all, and Lag is the
// largest.
type Peer struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline"`
	Lag     uint64 `json:"lag"`
	// Leads lists the streams whose leader it is.
	Leads []string `json:"leads"`
}

// Stream is one sluice stream (SLUICE_* and the KV_sluice_* buckets).
type Stream struct {
	Name     string    `json:"name"`
	Messages uint64    `json:"messages"`
	Bytes    uint64    `json:"bytes"`
	Replicas int       `json:"replicas"`
	Leader   string    `json:"leader"`
	Peers    []Replica `json:"replica_peers"`
}

// Replica is one follower of a stream.
type Replica struct {
	Name       string  `json:"name"`
	Current    bool    `json:"current"`
	Offline    bool    `json:"offline"`
	Lag        uint64  `json:"lag"`
	ActiveSecs float64 `json:"active_seconds"`
}

// Lane is one lane's consumers, summed: Queued is what the stream holds for
// the lane (in the bulk lane that includes acked messages the workers'
// reclaim pass has not yet removed, up to about 200,000 while the lane
// drains), Pending what its consumers have yet to deliver, AckPending what
// they delivered and wait for the ack of. A conversation's messages
// published before discovery made its consumer (within a quarter second)
// are in Queued, not yet in Pending.
type Lane struct {
	Lane        string `json:"lane"`
	Consumers   int    `json:"consumers"`
	Queued      uint64 `json:"queued"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
}

// ErrorLog is the error log's state across the fleet.
type ErrorLog struct {
	Mode *control.ErrorLogStatus `json:"mode"`
	// Breakers maps each live worker to its writer breaker.
	Breakers map[string]string `json:"writer_breakers"`
	// SpillDepth is the number of batches in SLUICE_ERRORLOG_SPILL, waiting
	// for PostgreSQL (null if it could not be read).
	SpillDepth *uint64 `json:"spill_depth"`
	// PartitionsAhead is how many future day partitions of error_log exist
	// (2 when maintenance is current; null without PostgreSQL).
	PartitionsAhead *int `json:"partitions_ahead"`
}

// Conversations lists the conversations held by the control plane.
type Conversations struct {
	Quarantined []control.ConversationInfo `json:"quarantined"`
	Paused      []control.ConversationInfo `json:"paused"`
}

// Postgres is the database as this process sees it.
type Postgres struct {
	Reachable        bool   `json:"reachable"`
	SystemIdentifier string `json:"system_identifier,omitempty"`
	// BoundTo is the identifier the deployment is bound to (the control
	// bucket's record, control.CheckDatabase).
	BoundTo string `json:"bound_to,omitempty"`
}

// Gather reads a report from src.
func Gather(ctx context.Context, src Sources) Report {
	now := src.Now
	if now == nil {
		now = time.Now
	}
	r := &Report{At: now().UTC(), Unavailable: map[string]string{}, Workers: []control.WorkerStatus{},
		Streams: []Stream{}, Lanes: []Lane{}, ErrorLog: ErrorLog{Breakers: map[string]string{}}}
	g := gatherer{src: src, r: r}
	g.nats(ctx)
	g.streams(ctx)
	g.lanes(ctx)
	g.workers(ctx)
	g.controls(ctx)
	g.postgres(ctx, now())
	return *r
}

// gatherer fills one report.
type gatherer struct {
	src Sources
	r   *Report
}

// miss records that item could not be read.
func (g *gatherer) miss(item string, err error) {
	g.r.Unavailable[item] = err.Error()
}

func (g *gatherer) nats(ctx context.Context) {
	nc := g.src.JS.Conn()
	g.r.NATS = NATS{Server: nc.ConnectedServerName(), Cluster: nc.ConnectedClusterName(),
		URL: nc.ConnectedUrlRedacted(), Known: nc.Servers(), Peers: []Peer{}}
	ai, err := g.src.JS.AccountInfo(ctx)
	if err != nil {
		g.miss("nats.account", err)
		return
	}
	g.r.NATS.Streams, g.r.NATS.Consumers = ai.Streams, ai.Consumers
	g.r.NATS.Memory, g.r.NATS.Storage = ai.Memory, ai.Store
}

// sluiceStream tells sluice's streams from others in the account.
func sluiceStream(name string) bool {
	return strings.HasPrefix(name, "SLUICE_") || strings.HasPrefix(name, "KV_sluice_")
}

func (g *gatherer) streams(ctx context.Context) {
	lister := g.src.JS.ListStreams(ctx)
	var infos []*jetstream.StreamInfo
	for si := range lister.Info() {
		if sluiceStream(si.Config.Name) {
			infos = append(infos, si)
		}
	}
	if err := lister.Err(); err != nil {
		g.miss("streams", err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Config.Name < infos[j].Config.Name })
	peers := map[string]*Peer{}
	peer := func(name string) *Peer {
		if peers[name] == nil {
			peers[name] = &Peer{Name: name, Current: true, Leads: []string{}}
		}
		return peers[name]
	}
	for _, si := range infos {
		s := Stream{Name: si.Config.Name, Messages: si.State.Msgs, Bytes: si.State.Bytes, Replicas: si.Config.Replicas, Peers: []Replica{}}
		if si.Cluster != nil {
			s.Leader = si.Cluster.Leader
		}
		if s.Leader == "" && g.r.NATS.Cluster == "" {
			// A server outside a cluster holds every stream itself.
			s.Leader = g.r.NATS.Server
		}
		if s.Leader != "" {
			p := peer(s.Leader)
			p.Leads = append(p.Leads, s.Name)
		}
		if si.Cluster != nil {
			for _, rp := range si.Cluster.Replicas {
				s.Peers = append(s.Peers, Replica{Name: rp.Name, Current: rp.Current, Offline: rp.Offline, Lag: rp.Lag, ActiveSecs: rp.Active.Seconds()})
				p := peer(rp.Name)
				p.Current = p.Current && rp.Current && !rp.Offline
				p.Offline = p.Offline || rp.Offline
				p.Lag = max(p.Lag, rp.Lag)
			}
		}
		if s.Name == errorlog.SpillStream {
			depth := si.State.Msgs
			g.r.ErrorLog.SpillDepth = &depth
		}
		g.r.Streams = append(g.r.Streams, s)
	}
	for _, p := range peers {
		g.r.NATS.Peers = append(g.r.NATS.Peers, *p)
	}
	sort.Slice(g.r.NATS.Peers, func(i, j int) bool { return g.r.NATS.Peers[i].Name < g.r.NATS.Peers[j].Name })
	if g.r.ErrorLog.SpillDepth == nil {
		if _, ok := g.r.Unavailable["streams"]; !ok {
			zero := uint64(0) // no worker has opened the spill yet: nothing spilled
			g.r.ErrorLog.SpillDepth = &zero
		}
	}
}

// lanes sums, per lane, the consumers of every stream that holds
// activations, and what the stream holds for the lane.
func (g *gatherer) lanes(ctx context.Context) {
	byLane := map[wire.Lane]*Lane{}
	for _, l := range []wire.Lane{wire.LaneTransactional, wire.LaneBulk} {
		byLane[l] = &Lane{Lane: string(l)}
	}
	for _, st := range g.r.Streams {
		if !strings.HasPrefix(st.Name, "SLUICE_") || st.Name == errorlog.SpillStream {
			continue
		}
		if err := g.streamLanes(ctx, st.Name, byLane); err != nil {
			g.miss("lanes."+st.Name, err)
		}
	}
	for _, l := range []wire.Lane{wire.LaneTransactional, wire.LaneBulk} {
		g.r.Lanes = append(g.r.Lanes, *byLane[l])
	}
}

// streamLanes adds one stream's activations and consumers to byLane.
func (g *gatherer) streamLanes(ctx context.Context, name string, byLane map[wire.Lane]*Lane) error {
	s, err := g.src.JS.Stream(ctx, name)
	if err != nil {
		return err
	}
	for lane, l := range byLane {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(wire.SubjectPrefix+string(lane)+".>"))
		if err != nil {
			return err
		}
		for _, n := range info.State.Subjects {
			l.Queued += n
		}
	}
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		lane, ok := consumerLane(ci.Config)
		if !ok {
			continue
		}
		l := byLane[lane]
		l.Consumers++
		l.Pending += ci.NumPending
		l.AckPending += ci.NumAckPending
		l.Redelivered += ci.NumRedelivered
	}
	return lister.Err()
}

// consumerLane is the lane a consumer reads, from its filter subject.
func consumerLane(c jetstream.ConsumerConfig) (wire.Lane, bool) {
	filters := append([]string{}, c.FilterSubjects...)
	if c.FilterSubject != "" {
		filters = append(filters, c.FilterSubject)
	}
	for _, f := range filters {
		if lane, _, _, ok := wire.SubjectParts(f); ok && lane.Valid() {
			return lane, true
		}
	}
	return "", false
}

func (g *gatherer) workers(ctx context.Context) {
	ws, err := g.src.Control.Workers(ctx)
	if err != nil {
		g.miss("workers", err)
		return
	}
	g.r.Workers = ws
	for _, w := range ws {
		if w.Live && w.ErrorLogBreaker != "" {
			g.r.ErrorLog.Breakers[w.ID] = w.ErrorLogBreaker
		}
	}
}

// controls reads the control plane's settings: error-log mode, intake,
// channels, held conversations.
func (g *gatherer) controls(ctx context.Context) {
	c := g.src.Control
	if mode, err := c.ErrorLogStatus(ctx); err != nil {
		g.miss("errorlog.mode", err)
	} else {
		g.r.ErrorLog.Mode = &mode
	}
	if in, err := c.IntakeInfo(ctx); err != nil {
		g.miss("intake", err)
	} else {
		g.r.Intake = &in
	}
	if ch, err := c.ChannelList(ctx); err != nil {
		g.miss("channels", err)
	} else {
		g.r.Channels = ch.Channels
	}
	held := func(state control.ConversationState) []control.ConversationInfo {
		list, err := c.Conversations(ctx, "", state)
		if err != nil {
			g.miss("conversations."+string(state), err)
			return []control.ConversationInfo{}
		}
		return list
	}
	g.r.Conversations = Conversations{Quarantined: held(control.StateQuarantined), Paused: held(control.StatePaused)}
}

// postgres reads what only PostgreSQL knows, each query bounded.
func (g *gatherer) postgres(ctx context.Context, now time.Time) {
	if bound, err := g.src.Control.BoundDatabase(ctx); err == nil {
		g.r.Postgres.BoundTo = bound
	}
	if g.src.Pool == nil {
		g.miss("postgres", fmt.Errorf("this process has no database"))
		g.miss("errorlog.partitions_ahead", fmt.Errorf("no database"))
		return
	}
	timeout := cmp.Or(g.src.PostgresTimeout, DefaultPostgresTimeout)
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id, err := control.SystemIdentifier(qctx, g.src.Pool)
	if err != nil {
		g.miss("postgres", err)
		g.miss("errorlog.partitions_ahead", fmt.Errorf("postgres unavailable"))
		return
	}
	g.r.Postgres.Reachable, g.r.Postgres.SystemIdentifier = true, id
	ahead, err := errorlog.PartitionsAhead(qctx, g.src.Pool, now)
	if err != nil {
		g.miss("errorlog.partitions_ahead", err)
		return
	}
	g.r.ErrorLog.PartitionsAhead = &ahead
}
