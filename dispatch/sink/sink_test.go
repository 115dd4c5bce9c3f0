package sink

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
)

func TestLedgerKeepsLastMessages(t *testing.T) {
	l := newKeepingLedger(3)
	for i := range 5 {
		l.Add(&dispatch.Message{ID: fmt.Sprint(i), Tenant: "t", Conversation: "c", Body: fmt.Sprint("body", i)})
	}
	l.Add(&dispatch.Message{ID: "4"})
	if st := l.Stats(); st.Unique != 5 || st.Duplicates != 1 {
		t.Errorf("stats %+v", st)
	}
	if l.Count("4") != 2 || l.Count("0") != 1 || l.Count("x") != 0 {
		t.Error("counts wrong")
	}
	for i := range 5 {
		_, ok := l.Message(fmt.Sprint(i))
		if want := i >= 2; ok != want {
			t.Errorf("Message(%d) kept = %v, want %v", i, ok, want)
		}
	}
	if m, _ := l.Message("4"); m.Body != "body4" {
		t.Errorf("kept copy %+v is not the first accepted", m)
	}
	if l.Conversation("t", "c") != 5 {
		t.Error("per-conversation count")
	}
	if _, ok := NewLedger().Message("x"); ok {
		t.Error("plain ledger keeps copies")
	}
}

func TestSinksListenOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:25", "example.com:25"} {
		if ln, err := listenLoopback(addr); err == nil {
			ln.Close()
			t.Errorf("listened on %s", addr)
		}
	}
	if _, err := StartSMTP(SMTPConfig{Addr: "0.0.0.0:0"}); err == nil {
		t.Error("SMTP sink on 0.0.0.0")
	}
	if _, err := StartTwilio(TwilioConfig{Addr: ":0"}); err == nil {
		t.Error("Twilio sink on all interfaces")
	}
}

func TestCloseReleasesHungRequests(t *testing.T) {
	s, err := StartTwilio(TwilioConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s.SetFaults(Faults{Hang: true})
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, s.URL()+"/2010-04-01/Accounts/ACsluicedev/Messages.json", strings.NewReader("To=%2B14155550100&From=x&Body=y"))
		req.SetBasicAuth("ACsluicedev", "sluice-dev-token")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.Requests() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never reached the sink")
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a hung request")
	}
	<-done
	if s.Ledger().Stats().Unique != 0 {
		t.Error("hung request was accepted")
	}
}

func TestFaultsThrottleAndErrorRate(t *testing.T) {
	b := newFaultBox()
	if v, _ := b.apply(context.Background()); v != pass {
		t.Fatalf("healthy verdict %v", v)
	}
	b.set(Faults{ErrorRate: 1})
	if v, _ := b.apply(context.Background()); v != fail {
		t.Fatalf("error rate 1 verdict %v", v)
	}
	b.set(Faults{RetryAfter: 1500 * time.Millisecond, ErrorRate: 1})
	if v, f := b.apply(context.Background()); v != throttle || retryAfterSeconds(f.RetryAfter) != 2 {
		t.Fatalf("throttle verdict %v, seconds %d", v, retryAfterSeconds(f.RetryAfter))
	}
	b.set(Faults{Hang: true})
	got := make(chan verdict, 1)
	go func() { v, _ := b.apply(context.Background()); got <- v }()
	b.set(Faults{}) // releases the hang into the new faults
	if v := <-got; v != pass {
		t.Fatalf("released hang verdict %v, want pass", v)
	}
}

func TestStartLocal(t *testing.T) {
	l, err := StartLocal(t.Context(), LocalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, s := range []string{l.SMTP.Addr(), l.Twilio.Addr(), l.FCM.Addr(), l.APNs.Addr()} {
		if !strings.HasPrefix(s, "127.0.0.1:") {
			t.Errorf("sink on %s", s)
		}
	}
	c := l.Config()
	if c.Email == nil || c.SMS == nil || c.FCM == nil || c.APNs == nil || c.Email.Username == "" || c.APNs.RootCAs == nil {
		t.Errorf("incomplete provider config %+v", c)
	}
	if !strings.Contains(l.String(), l.SMTP.Addr()) {
		t.Errorf("String() %q lacks the SMTP address", l.String())
	}
}
