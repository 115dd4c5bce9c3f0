package loadtest

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/errorlog"
)

// Scenario names.
const (
	ScenarioIncident = "incident"
	ScenarioValid    = "valid"
	ScenarioMixed    = "mixed"
)

// Sinks choices for the self-contained stack.
const (
	SinksRecorder = "recorder"
	SinksProtocol = "protocol"
	// SinksSMTPSink is postfix's smtp-sink on loopback behind the real SMTP
	// provider (no TLS, no AUTH) for email, the recorder for SMS and push;
	// the run also measures smtp-source into the same sink.
	SinksSMTPSink = "smtp-sink"
)

// SMTPConnsDefault is the default of Config.SMTPConns.
const SMTPConnsDefault = 20

// Config configures a run. Zero values take the documented defaults.
type Config struct {
	// Scenario is incident, valid or mixed. Default incident.
	Scenario string
	// Seed makes the scenario deterministic. Default 1.
	Seed uint64
	// Messages is the size of the burst, over all conversations. Default
	// 8,000,000.
	Messages int
	// Conversations is the number of bulk conversations. Default 8.
	Conversations int
	// InvalidRatio is the share of burst messages with an empty or malformed
	// address, 0 to 1. Negative: the scenario's default (incident 0.95,
	// valid 0, mixed 0.5).
	InvalidRatio float64
	// Channels are the channels of the burst. Default email (mixed: email,
	// sms, push).
	Channels []dispatch.Channel
	// TrickleRate is the transactional trickle in messages per second; 0
	// turns it off. Negative: default 200.
	TrickleRate float64
	// Baseline is how long the trickle runs alone before the burst, for the
	// no-burst latency. Default 5s; negative: none.
	Baseline time.Duration
	// AfterDrain is how long the trickle goes on once the burst has
	// drained, for the after-drain latency (the moment the server removes
	// the emptied blocks). Default 3s; negative: none, the trickle ends
	// with the drain.
	AfterDrain time.Duration
	// Window bounds unacknowledged asynchronous publishes. Default 4096.
	Window int
	// PublishRate caps the burst's publishing, in messages per second, to
	// replay a burst at the rate it arrived rather than as fast as the
	// machine allows. 0: full speed. The ceiling is paced the same way, so
	// a mode's ratio to it then says whether the mode keeps up.
	PublishRate float64

	// NATSServer, when set, is a nats-server binary: the self-contained
	// stack then runs each of its NATS servers (each mode's, each
	// ceiling's) as a process of it, as deployments do, instead of
	// embedded in this process, and adds its CPU to the figures. Default
	// embedded.
	NATSServer string
	// BulkConsumersInMemory runs the self-contained node with
	// orchestrator.Config.ConversationConsumersInMemory, and the
	// per-conversation reference's consumers alike.
	BulkConsumersInMemory bool

	// PhaseProfiles, when set, is a directory (created if missing) that
	// receives a CPU profile of this process for each measured phase:
	// ceiling-<shape>.prof for the ceilings, mode-<mode>.prof for each
	// mode's burst (publish to drain), with heap profiles at the phase's
	// start and end (<name>.heap0, <name>.heap: their difference is what it
	// allocated). It cannot be combined with a whole-run CPU profile.
	PhaseProfiles string

	// Compare runs the burst once per mode in Modes, with quarantine off,
	// plus the JetStream ceiling.
	Compare bool
	// Modes are the error-log modes; default full,sample,off,sync with
	// Compare, full otherwise.
	Modes []errorlog.ModeName
	// SyncMessages is the burst size of the sync mode. Default the smaller
	// of Messages and 100,000: one INSERT per event is slow by design.
	SyncMessages int
	// Ceiling measures the raw JetStream ceiling even without Compare.
	Ceiling bool
	// NoBracket turns off, with Compare or Ceiling, the ceiling measured
	// again after each mode (sync aside: it runs fewer messages), which
	// gives each mode its ratio to the mean of the ceilings measured just
	// before and just after it (ModeReport.RatioToAdjacent) besides its
	// ratio to the run's ceiling. A long run spans minutes in which a
	// shared machine's speed drifts: the same binary's off mode measured
	// 44.6k, 48.1k and 33.4k msgs/s at 8M within the hour, its CPU per
	// message 1.5× apart (BENCHMARKS.md, 2026-12-07, fifth session).
	NoBracket bool

	// Sinks is recorder (in-process, default) or protocol (SMTP, Twilio,
	// FCM, APNs sinks on loopback).
	Sinks string
	// SMTPConns is, with Sinks smtp-sink, the email provider's MaxConns and
	// smtp-source's parallel sessions. Default SMTPConnsDefault.
	SMTPConns int
	// SMTPMessagesPerConn is, with Sinks smtp-sink, the email provider's
	// MaxMessagesPerConn. Default 0: the provider's default.
	SMTPMessagesPerConn int
	// SMTPSinkPath and SMTPSourcePath are postfix's test programs, with
	// Sinks smtp-sink. Default SMTPSinkPathDefault, SMTPSourcePathDefault.
	SMTPSinkPath, SMTPSourcePath string
	// DataDir holds the self-contained stack's NATS store and Postgres.
	// Default a new directory under os.TempDir(), removed at the end.
	DataDir string
	// DurablePostgres runs the self-contained stack's Postgres with fsync,
	// synchronous_commit and full_page_writes on, as a production database
	// is, so that every commit waits for the disk: the sync mode pays it per
	// event, the batched modes per batch. Default off (a throwaway cluster
	// tuned for speed, as the figures in BENCHMARKS.md were measured).
	DurablePostgres bool

	// NATSURL targets a running sluice instead of the self-contained stack.
	NATSURL string
	// DatabaseURL is the running sluice's database, for accounting.
	DatabaseURL string
	// MetricsURLs are the running sluice's workers' /metrics endpoints:
	// with them the run reads transactional latency (the delivery-latency
	// histogram), error-log writes, RSS and goroutines from the fleet.
	MetricsURLs []string
	// Env is the target's environment as configured (SLUICE_ENV).
	Env string
	// AllowProduction lets the run target an environment named production.
	AllowProduction bool

	// Quarantine, if set, builds the quarantine step of a non-compare run on
	// the self-contained stack, once per mode (ControlQuarantine is sluice's
	// control plane). Nil: quarantine "off".
	Quarantine func(QuarantineTarget) Quarantiner
	// QuarantineRatio is the workers' automatic quarantine threshold
	// (orchestrator.QuarantineConfig.Ratio) on the self-contained stack when
	// Quarantine is set and Compare is not. Default 0.5; negative: the
	// workers do not quarantine (only what Quarantine itself detects).
	QuarantineRatio float64
	// Timeout bounds the drain of one mode. Default 6h.
	Timeout time.Duration
	// Progress, if set, is called about once a second.
	Progress func(Progress)
}

// Progress is a snapshot of a running mode.
type Progress struct {
	Mode       string
	Phase      string // ceiling, baseline, burst, settle
	Elapsed    time.Duration
	Published  int
	Processed  int
	Total      int
	PubRate    float64 // burst publishes/s over the last sample
	ProcRate   float64 // burst messages processed/s over the last sample
	ErrorRows  int64
	Trickle    int
	LatencyP99 float64 // transactional, ms, so far in this phase
}

func (c *Config) setDefaults() {
	if c.Scenario == "" {
		c.Scenario = ScenarioIncident
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Messages == 0 {
		c.Messages = 8_000_000
	}
	if c.Conversations == 0 {
		c.Conversations = 8
	}
	if c.InvalidRatio < 0 {
		switch c.Scenario {
		case ScenarioValid:
			c.InvalidRatio = 0
		case ScenarioMixed:
			c.InvalidRatio = 0.5
		default:
			c.InvalidRatio = 0.95
		}
	}
	if len(c.Channels) == 0 {
		c.Channels = []dispatch.Channel{dispatch.ChannelEmail}
		if c.Scenario == ScenarioMixed {
			c.Channels = []dispatch.Channel{dispatch.ChannelEmail, dispatch.ChannelSMS, dispatch.ChannelPush}
		}
	}
	if c.TrickleRate < 0 {
		c.TrickleRate = 200
	}
	if c.Baseline == 0 {
		c.Baseline = 5 * time.Second
	} else if c.Baseline < 0 {
		c.Baseline = 0
	}
	if c.AfterDrain == 0 {
		c.AfterDrain = 3 * time.Second
	} else if c.AfterDrain < 0 {
		c.AfterDrain = 0
	}
	if c.Window == 0 {
		c.Window = 4096
	}
	if len(c.Modes) == 0 {
		c.Modes = []errorlog.ModeName{errorlog.ModeFull}
		if c.Compare {
			c.Modes = []errorlog.ModeName{errorlog.ModeFull, errorlog.ModeSample, errorlog.ModeOff, errorlog.ModeSync}
		}
	}
	if c.SyncMessages == 0 {
		c.SyncMessages = min(c.Messages, 100_000)
	}
	if c.Sinks == "" {
		c.Sinks = SinksRecorder
	}
	if c.SMTPConns == 0 {
		c.SMTPConns = SMTPConnsDefault
	}
	if c.SMTPSinkPath == "" {
		c.SMTPSinkPath = SMTPSinkPathDefault
	}
	if c.SMTPSourcePath == "" {
		c.SMTPSourcePath = SMTPSourcePathDefault
	}
	if c.QuarantineRatio == 0 {
		c.QuarantineRatio = 0.5
	}
	if c.Timeout == 0 {
		c.Timeout = 6 * time.Hour
	}
}

func (c *Config) validate() error {
	switch c.Scenario {
	case ScenarioIncident, ScenarioValid, ScenarioMixed:
	default:
		return fmt.Errorf("loadtest: Scenario %q: want incident, valid or mixed", c.Scenario)
	}
	switch {
	case c.Messages < 1:
		return errors.New("loadtest: Messages must be at least 1")
	case c.Conversations < 1 || c.Conversations > 1000:
		return errors.New("loadtest: Conversations must be 1 to 1000")
	case c.InvalidRatio > 1:
		return errors.New("loadtest: InvalidRatio must be at most 1")
	case c.Window < 1:
		return errors.New("loadtest: Window must be at least 1")
	case c.PublishRate < 0:
		return errors.New("loadtest: PublishRate must not be negative (0: full speed)")
	case c.SyncMessages < 1:
		return errors.New("loadtest: SyncMessages must be at least 1")
	case c.Sinks != SinksRecorder && c.Sinks != SinksProtocol && c.Sinks != SinksSMTPSink:
		return fmt.Errorf("loadtest: Sinks %q: want recorder, protocol or smtp-sink", c.Sinks)
	case c.SMTPConns < 1:
		return errors.New("loadtest: SMTPConns must be at least 1")
	case c.SMTPMessagesPerConn < 0:
		return errors.New("loadtest: SMTPMessagesPerConn must not be negative (0: the provider's default)")
	case c.Sinks == SinksSMTPSink && c.NATSURL != "":
		return errors.New("loadtest: Sinks smtp-sink needs the self-contained stack; drop NATSURL")
	case c.Compare && c.NATSURL != "":
		return errors.New("loadtest: Compare needs the self-contained stack (fresh databases per mode); drop NATSURL")
	case c.NATSURL != "" && len(c.Modes) > 1:
		return errors.New("loadtest: several Modes need the self-contained stack; drop NATSURL")
	case len(c.MetricsURLs) > 0 && c.NATSURL == "":
		return errors.New("loadtest: MetricsURLs are a running target's; the self-contained stack measures its workers in process")
	}
	for _, u := range c.MetricsURLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("loadtest: MetricsURLs: %q is not an http(s) URL", u)
		}
	}
	for _, ch := range c.Channels {
		if !ch.Valid() {
			return fmt.Errorf("loadtest: Channels: unknown channel %q", ch)
		}
	}
	for _, m := range c.Modes {
		if err := (errorlog.Mode{Name: m}).Validate(); err != nil {
			return fmt.Errorf("loadtest: Modes: %w", err)
		}
	}
	return nil
}

// ParseList splits a comma-separated flag value, trimming spaces and
// dropping empty items.
func ParseList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParseChannels parses a comma-separated list of channels.
func ParseChannels(s string) ([]dispatch.Channel, error) {
	var out []dispatch.Channel
	for _, f := range ParseList(s) {
		ch := dispatch.Channel(f)
		if !ch.Valid() {
			return nil, fmt.Errorf("unknown channel %q: want email, sms or push", f)
		}
		out = append(out, ch)
	}
	return out, nil
}

// ParseModes parses a comma-separated list of error-log modes.
func ParseModes(s string) ([]errorlog.ModeName, error) {
	var out []errorlog.ModeName
	for _, f := range ParseList(s) {
		m, err := errorlog.ParseModeName(f)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
