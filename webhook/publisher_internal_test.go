package webhook

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/wire"
)

// TestPublisherNeverBlocks: with its queue full, Notify returns at once
// and counts the event dropped; a tenant without endpoints, or an event no
// endpoint asked for, queues nothing.
func TestPublisherNeverBlocks(t *testing.T) {
	t.Parallel()
	p, err := NewPublisher(nil, nil, 2, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	wanted := map[string]map[string]bool{"acme": {EventDelivered: true}}
	p.wanted.Store(&wanted)
	ev := func(tenant string, out wire.Outcome, i int) errorlog.Event {
		return errorlog.Event{Outcome: out, ID: fmt.Sprint("act-", i), Tenant: tenant, Conversation: "c", Time: time.Now()}
	}
	var acked int
	then := func() { acked++ }
	p.Notify(ev("other", wire.OutcomeDelivered, 0), then)
	p.Notify(ev("acme", wire.OutcomeInvalid, 0), then)
	if len(p.queue) != 0 || acked != 2 {
		t.Fatalf("%d events queued for nobody, %d acked; want none queued, both acked at once", len(p.queue), acked)
	}
	acked = 0
	start := time.Now()
	for i := range 10000 {
		p.Notify(ev("acme", wire.OutcomeDelivered, i), then)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("10000 notifications with a full queue took %v", took)
	}
	var m dto.Metric
	if err := p.m.dropped.WithLabelValues("queue_full").Write(&m); err != nil {
		t.Fatal(err)
	}
	if dropped := m.GetCounter().GetValue(); len(p.queue) != 2 || dropped != 9998 || acked != 9998 {
		t.Fatalf("queued %d, dropped %v, acked %d; want 2 queued (their messages held until stored), 9998 dropped and acked at once", len(p.queue), dropped, acked)
	}
	if got := (<-p.queue).ev; got.ID != "act-0:delivered" || got.Activation != "act-0" || got.Type != EventDelivered {
		t.Fatalf("event %+v", got)
	}
}
