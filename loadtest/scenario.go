package loadtest

import (
	"fmt"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/wire"
)

// Tenant is the tenant of every load-test message.
const Tenant = "loadtest"

// Scenario generates a run's messages. Message i depends only on the seed
// and i, so a scenario can be generated lazily, in any order, and again.
type Scenario struct {
	seed     uint64
	run      string // tag in conversation ids, unique per run against a shared target
	convs    []string
	trickle  string
	invalid  float64
	channels []dispatch.Channel
}

func newScenario(cfg *Config, run string) *Scenario {
	s := &Scenario{seed: cfg.Seed, run: run, invalid: cfg.InvalidRatio, channels: cfg.Channels}
	for k := range cfg.Conversations {
		s.convs = append(s.convs, fmt.Sprintf("%s%s-c%d", cfg.Scenario, run, k))
	}
	s.trickle = cfg.Scenario + run + "-tx"
	return s
}

// Conversations are the burst's conversation ids.
func (s *Scenario) Conversations() []string { return s.convs }

// TrickleConversation is the transactional trickle's conversation id.
func (s *Scenario) TrickleConversation() string { return s.trickle }

// splitmix64 is the mixing function of SplitMix64: a cheap, well-spread
// hash of (seed, i).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Burst returns burst message i (0-based) and whether its address is
// invalid.
func (s *Scenario) Burst(i int) (*wire.Activation, bool) {
	h := splitmix64(s.seed*0x100000001b3 ^ uint64(i))
	conv := s.convs[i%len(s.convs)]
	ch := s.channels[int(h>>8)%len(s.channels)]
	invalid := float64(h>>11)/(1<<53) < s.invalid
	var to string
	if invalid {
		to = invalidAddress(ch, h, i)
	} else {
		to = validAddress(ch, i)
	}
	return &wire.Activation{
		ID: conv + "-" + strconv.Itoa(i), Tenant: Tenant, Conversation: conv,
		Lane: wire.LaneBulk, Channel: string(ch), To: to,
	}, invalid
}

// Trickle returns transactional message i, always valid, by email.
func (s *Scenario) Trickle(i int) *wire.Activation {
	return &wire.Activation{
		ID: s.trickle + "-" + strconv.Itoa(i), Tenant: Tenant, Conversation: s.trickle,
		Lane: wire.LaneTransactional, Channel: string(dispatch.ChannelEmail),
		To: fmt.Sprintf("reset%d@example.com", i), EnqueuedAt: time.Now().UTC(),
	}
}

func validAddress(ch dispatch.Channel, i int) string {
	switch ch {
	case dispatch.ChannelSMS:
		return fmt.Sprintf("+1415555%04d", 2000+i%8000)
	case dispatch.ChannelPush:
		return fmt.Sprintf("%064x", uint64(i)+1)
	default:
		return fmt.Sprintf("user%d@example.com", i)
	}
}

// invalidAddress is empty one time in two, else malformed for its channel,
// as in the incident.
func invalidAddress(ch dispatch.Channel, h uint64, i int) string {
	if h&1 == 0 {
		return ""
	}
	switch ch {
	case dispatch.ChannelSMS:
		return "555-" + strconv.Itoa(i%10000)
	case dispatch.ChannelPush:
		return "tok" + strconv.Itoa(i)
	default:
		return "user" + strconv.Itoa(i) + "@"
	}
}
