package providerset_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/dispatch/providerset"
	"github.com/sluicehq/sluice/dispatch/sink"
)

// TestEmailOutageLeavesOtherChannelsFlowing takes the SMTP relay down: the
// email breaker opens and email sends come back at once as unavailable,
// while SMS and push messages keep being delivered; once the relay heals,
// every delayed email is delivered exactly once.
func TestEmailOutageLeavesOtherChannelsFlowing(t *testing.T) {
	local, err := sink.StartLocal(t.Context(), sink.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	cfg := local.Config()
	cfg.Breaker = dispatch.GuardConfig{ConsecutiveFailures: 3, OpenTimeout: 300 * time.Millisecond}
	reg := prometheus.NewRegistry()
	set, err := providerset.New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	provs := set.Providers()
	if len(provs) != 3 || len(set.Guards()) != 4 {
		t.Fatalf("%d channels and %d guards, want 3 and 4", len(provs), len(set.Guards()))
	}

	local.SMTP.SetFaults(sink.Faults{ErrorRate: 1})
	const perChannel = 60
	results := sendEachChannel(t, provs, perChannel)
	var emails []*dispatch.Message
	unavailable := 0
	for r := range results {
		if r.m.Channel != dispatch.ChannelEmail {
			if r.err != nil {
				t.Errorf("%s during the email outage: %v", r.m.ID, r.err)
			}
			continue
		}
		if r.err == nil {
			t.Fatalf("%s delivered by a failing relay", r.m.ID)
		}
		if errors.Is(r.err, dispatch.ErrUnavailable) {
			unavailable++
		}
		emails = append(emails, r.m)
	}
	if unavailable < perChannel/2 {
		t.Errorf("only %d of %d emails were short-circuited by the open breaker", unavailable, perChannel)
	}
	if !provs[dispatch.ChannelEmail].(interface{ Open() bool }).Open() {
		t.Error("email breaker not open during the outage")
	}
	for _, ch := range []dispatch.Channel{dispatch.ChannelSMS, dispatch.ChannelPush} {
		if provs[ch].(interface{ Open() bool }).Open() {
			t.Errorf("%s breaker open during the email outage", ch)
		}
	}

	local.SMTP.SetFaults(sink.Faults{})
	resendUntilDelivered(t, provs[dispatch.ChannelEmail], emails)
	for i := range perChannel {
		for _, ch := range []dispatch.Channel{dispatch.ChannelEmail, dispatch.ChannelSMS, dispatch.ChannelPush} {
			if n := local.Count(fmt.Sprintf("%s-%d", ch, i)); n != 1 {
				t.Errorf("%s-%d delivered %d times, want 1", ch, i, n)
			}
		}
	}
	if st := local.Stats(); st.Unique != 3*perChannel || st.Duplicates != 0 {
		t.Errorf("sinks hold %+v, want %d unique and no duplicates", st, 3*perChannel)
	}
	mfs, _ := reg.Gather()
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "sluice_breaker_transitions_total") {
		t.Errorf("metrics %v lack the breaker transitions", names)
	}
}

// sent is one send and what it returned.
type sent struct {
	m   *dispatch.Message
	err error
}

// sendEachChannel sends perChannel messages on each of email, SMS and
// push, eight at a time, and returns every send's result.
func sendEachChannel(t *testing.T, provs map[dispatch.Channel]dispatch.Provider, perChannel int) chan sent {
	t.Helper()
	results := make(chan sent, 3*perChannel)
	var g errgroup.Group
	g.SetLimit(8)
	for i := range perChannel {
		for ch, to := range map[dispatch.Channel]string{
			dispatch.ChannelEmail: fmt.Sprintf("u%d@example.com", i),
			dispatch.ChannelSMS:   fmt.Sprintf("+1415555%04d", i),
			dispatch.ChannelPush:  pushToken(i),
		} {
			m := &dispatch.Message{ID: fmt.Sprintf("%s-%d", ch, i), Channel: ch, To: to}
			g.Go(func() error {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				results <- sent{m, provs[ch].Send(ctx, m)}
				return nil
			})
		}
	}
	g.Wait()
	close(results)
	return results
}

// resendUntilDelivered sends each message again, as the pipeline's
// redelivery would, until the provider takes it; an error other than
// unavailable, or 5s without success, fails the test.
func resendUntilDelivered(t *testing.T, p dispatch.Provider, msgs []*dispatch.Message) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, m := range msgs {
		for {
			err := p.Send(t.Context(), m)
			if err == nil {
				break
			}
			var ue *dispatch.UnavailableError
			if !errors.As(err, &ue) || time.Now().After(deadline) {
				t.Fatalf("%s after recovery: %v", m.ID, err)
			}
			// The pipeline would NakWithDelay(ue.RetryAfter); poll sooner.
			time.Sleep(min(ue.RetryAfter, 20*time.Millisecond))
		}
	}
}

// pushToken alternates FCM and APNs tokens.
func pushToken(i int) string {
	if i%2 == 0 {
		return fmt.Sprintf("%064x", i+1)
	}
	return fmt.Sprintf("f%03d:APA91b", i) + strings.Repeat("k", 140)
}

func TestRates(t *testing.T) {
	local, err := sink.StartLocal(t.Context(), sink.LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	cfg := local.Config()
	cfg.Email, cfg.FCM, cfg.APNs = nil, nil, nil
	cfg.Rates = map[string]float64{"sendgrid": 1}
	if _, err := providerset.New(cfg, nil, nil); err == nil {
		t.Fatal("a rate for an unknown provider was accepted")
	}
	cfg.Rates = map[string]float64{providerset.Twilio: 1}
	set, err := providerset.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	if _, ok := set.Providers()[dispatch.ChannelEmail]; ok {
		t.Fatal("email provider built without a config")
	}
	p := set.Providers()[dispatch.ChannelSMS]
	if err := p.Send(t.Context(), &dispatch.Message{ID: "1", To: "+14155550100"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.Send(ctx, &dispatch.Message{ID: "2", To: "+14155550100"}); !errors.Is(err, dispatch.ErrUnavailable) {
		t.Fatalf("second send at 1/s with a 50ms deadline: %v, want unavailable", err)
	}
}

// BenchmarkProviders measures one provider at a time sending to its local
// sink through its guard, 16 senders at once (the pipeline's worker
// count order of magnitude).
func BenchmarkProviders(b *testing.B) {
	local, err := sink.StartLocal(b.Context(), sink.LocalConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { local.Close() })
	cfg := local.Config()
	cfg.Email.MaxConns = 16
	set, err := providerset.New(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { set.Close() })
	provs := set.Providers()
	for _, tc := range []struct {
		name string
		ch   dispatch.Channel
		to   func(i int) string
	}{
		{"smtp", dispatch.ChannelEmail, func(i int) string { return fmt.Sprintf("u%d@example.com", i) }},
		{"twilio", dispatch.ChannelSMS, func(i int) string { return fmt.Sprintf("+1415555%04d", i%10000) }},
		{"fcm", dispatch.ChannelPush, func(i int) string { return pushToken(2*i + 1) }},
		{"apns", dispatch.ChannelPush, func(i int) string { return pushToken(2 * i) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					m := &dispatch.Message{ID: fmt.Sprintf("%s-%d-%d", tc.name, b.N, i), Channel: tc.ch, To: tc.to(i), Subject: "Hi", Body: "Your code is 1234."}
					if err := provs[tc.ch].Send(b.Context(), m); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
