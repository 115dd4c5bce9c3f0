package wire

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	good := `{"v":1,"id":"a1","tenant":"t","conversation":"c","lane":"bulk","channel":"email","to":"x@example.com","vars":{"name":"Ann"},"enqueued_at":"2026-11-21T08:00:00Z"}`
	tests := []struct {
		name   string
		data   string
		max    int
		reason Reason
	}{
		{"valid", good, 0, ""},
		{"valid no vars", `{"v":1,"id":"a1","tenant":"t","conversation":"c","lane":"transactional","channel":"sms","to":"+14155550100"}`, 0, ""},
		{"not json", `{"v":1,`, 0, ReasonUndecodable},
		{"empty", ``, 0, ReasonUndecodable},
		{"array", `[]`, 0, ReasonUndecodable},
		{"future schema", strings.Replace(good, `"v":1`, `"v":2`, 1), 0, ReasonUnknownSchema},
		{"no schema", strings.Replace(good, `"v":1,`, ``, 1), 0, ReasonUnknownSchema},
		{"no id", strings.Replace(good, `"id":"a1"`, `"id":""`, 1), 0, ReasonMissingField},
		{"bad tenant", strings.Replace(good, `"tenant":"t"`, `"tenant":"a.b"`, 1), 0, ReasonMissingField},
		{"bad lane", strings.Replace(good, `"lane":"bulk"`, `"lane":"fast"`, 1), 0, ReasonMissingField},
		{"vars too large", good, 10, ReasonVarsTooLarge},
		{"vars not strings", strings.Replace(good, `{"name":"Ann"}`, `{"n":1}`, 1), 0, ReasonUndecodable},
		{"wrong type", strings.Replace(good, `"to":"x@example.com"`, `"to":5`, 1), 0, ReasonUndecodable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := Decode([]byte(tt.data), tt.max)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if a.ID != "a1" || a.Tenant != "t" || a.Conversation != "c" {
					t.Fatalf("decoded %+v", a)
				}
				return
			}
			var ee *EnvelopeError
			if !errors.As(err, &ee) || ee.Reason != tt.reason {
				t.Fatalf("got %v, want reason %s", err, tt.reason)
			}
			if !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("errors.Is(ErrBadEnvelope) false for %v", err)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	in := &Activation{ID: "x-1", Tenant: "acme", Conversation: "spring-sale", Lane: LaneBulk, Channel: "push",
		To: "tok", Vars: map[string]string{"a": "b"}, EnqueuedAt: time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)}
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(data, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject() != "sluice.act.bulk.acme.spring-sale" || out.Vars["a"] != "b" || !out.EnqueuedAt.Equal(in.EnqueuedAt) || out.Version != SchemaVersion {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestSubjectParts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subject          string
		lane, tenant, cv string
		ok               bool
	}{
		{"sluice.act.bulk.t1.c1", "bulk", "t1", "c1", true},
		{"sluice.act.transactional.t1.c1", "transactional", "t1", "c1", true},
		{"sluice.act.bulk.t1", "", "", "", false},
		{"sluice.act.bulk.t1.c1.x", "", "", "", false},
		{"other.act.bulk.t1.c1", "", "", "", false},
		{"sluice.act.bulk", "", "", "", false},
		{"sluice.act.bulk.t1.c1.", "", "", "", false},
	}
	for _, tt := range tests {
		l, tn, c, ok := SubjectParts(tt.subject)
		if ok != tt.ok || string(l) != tt.lane || tn != tt.tenant || c != tt.cv {
			t.Errorf("SubjectParts(%q) = %q %q %q %v", tt.subject, l, tn, c, ok)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"a1","tenant":"t","conversation":"c","lane":"bulk","channel":"email","to":"x@example.com","vars":{"name":"Ann"}}`), 64)
	f.Add([]byte(`{"v":1,"vars":null}`), 0)
	f.Add([]byte(`{"v":2}`), 0)
	f.Add([]byte("\x00\xff"), 8)
	for _, s := range envelopeCorpus() {
		f.Add([]byte(s), 64)
	}
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		agree(t, data, max)
		a, err := Decode(data, max)
		if err != nil {
			var ee *EnvelopeError
			if !errors.As(err, &ee) || ee.Reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if a.Version != SchemaVersion || a.ID == "" || !ValidToken(a.Tenant) || !ValidToken(a.Conversation) || !a.Lane.Valid() {
			t.Fatalf("accepted an invalid envelope: %+v", a)
		}
		if _, _, _, ok := SubjectParts(a.Subject()); !ok {
			t.Fatalf("subject of an accepted envelope does not parse: %q", a.Subject())
		}
	})
}

// TestOutcomeOf: the reasons of a bad envelope or address are invalid, a
// provider's refusals (whatever their spelling) and running out of attempts
// failed, suppressed and expired their own outcomes, and a reason this
// build does not know is failed.
func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	for r, want := range map[Reason]Outcome{
		ReasonUndecodable: OutcomeInvalid, ReasonUnknownSchema: OutcomeInvalid, ReasonMissingField: OutcomeInvalid,
		ReasonSubjectMismatch: OutcomeInvalid, ReasonVarsTooLarge: OutcomeInvalid,
		ReasonEmpty: OutcomeInvalid, ReasonSyntax: OutcomeInvalid, ReasonTooLong: OutcomeInvalid, ReasonBadDomain: OutcomeInvalid,
		ReasonNotE164: OutcomeInvalid, ReasonInvalidNumber: OutcomeInvalid, ReasonBadToken: OutcomeInvalid, ReasonUnknownChannel: OutcomeInvalid,
		ReasonRecipientRejected: OutcomeFailed, ReasonContentRejected: OutcomeFailed, ReasonUnreachable: OutcomeFailed,
		ReasonNotMobile: OutcomeFailed, ReasonUnsubscribed: OutcomeFailed, ReasonUnregistered: OutcomeFailed,
		ReasonTemplate: OutcomeFailed, ReasonMaxDeliveries: OutcomeFailed,
		ReasonSuppressed: OutcomeSuppressed, ReasonExpired: OutcomeExpired,
		"a_new_provider_code": OutcomeFailed,
	} {
		if got := OutcomeOf(r); got != want {
			t.Errorf("OutcomeOf(%q) = %s, want %s", r, got, want)
		}
	}
}

// TestSuppresses: exactly the permanent recipient refusals suppress.
func TestSuppresses(t *testing.T) {
	t.Parallel()
	for r, want := range map[Reason]bool{
		ReasonRecipientRejected: true, ReasonUnregistered: true, ReasonUnsubscribed: true, ReasonInvalidNumber: true,
		ReasonContentRejected: false, ReasonUnreachable: false, ReasonNotMobile: false, ReasonTemplate: false,
		ReasonMaxDeliveries: false, ReasonSyntax: false, ReasonSuppressed: false, "a_new_provider_code": false,
	} {
		if got := Suppresses(r); got != want {
			t.Errorf("Suppresses(%q) = %v, want %v", r, got, want)
		}
	}
}

// TestExpiresAtRoundTrip: expires_at survives Encode and Decode, is left
// out when unset, and Expired compares it with the time given.
func TestExpiresAtRoundTrip(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := &Activation{ID: "x", Tenant: "t", Conversation: "c", Lane: LaneTransactional, Channel: "email", To: "a@b.c", ExpiresAt: &exp}
	data, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("expires_at %v, want %v", got.ExpiresAt, exp)
	}
	if got.Expired(exp.Add(-time.Second)) || !got.Expired(exp) || !got.Expired(exp.Add(time.Hour)) {
		t.Fatal("Expired disagrees with expires_at")
	}
	a.ExpiresAt = nil
	data, _ = Encode(a)
	if strings.Contains(string(data), "expires_at") {
		t.Fatalf("unset expires_at encoded: %s", data)
	}
	if got, _ := Decode(data, 0); got.Expired(time.Now()) {
		t.Fatal("an activation without expires_at expired")
	}
}
