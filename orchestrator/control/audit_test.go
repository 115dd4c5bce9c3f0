package control

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/errorlog"
)

// TestAuditFilters: the audit trail reads back newest first, and each filter
// keeps only what it names; a tenant sees its own conversations' entries,
// never another tenant's ("a_b" is no LIKE pattern matching "aXb").
func TestAuditFilters(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := t.Context()
	start := time.Now().Add(-time.Second)
	for _, c := range []struct{ tenant, conv, actor string }{
		{"a_b", "spring", "key:k1@a_b"}, {"aXb", "spring", "key:k2@aXb"}, {"a_b", "autumn", "quarantine"},
	} {
		if _, err := b.store.SetConversation(ctx, c.tenant, c.conv, ConversationStatus{State: StatePaused}, c.actor); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.store.SetErrorLogMode(ctx, errorlog.Mode{Name: errorlog.ModeOff}, "operator:op1 (alice)"); err != nil {
		t.Fatal(err)
	}
	keys := func(f AuditFilter) []string {
		t.Helper()
		es, err := b.store.Audit(ctx, f)
		if err != nil {
			t.Fatalf("Audit(%+v): %v", f, err)
		}
		var out []string
		for i, e := range es {
			if i > 0 && e.ID >= es[i-1].ID {
				t.Fatalf("not newest first: %+v", es)
			}
			out = append(out, e.Key)
		}
		return out
	}
	eq := func(got []string, want ...string) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
	all := keys(AuditFilter{})
	if len(all) != 5 || all[0] != KeyErrorLogMode || all[len(all)-1] != KeyErrorLogMode { // the default mode at Open, then the four changes
		t.Fatalf("all entries: %v", all)
	}
	if got := keys(AuditFilter{Tenant: "a_b"}); !eq(got, "conversation.a_b.autumn", "conversation.a_b.spring") {
		t.Errorf("tenant a_b: %v", got)
	}
	if got := keys(AuditFilter{Actor: "quarantine"}); !eq(got, "conversation.a_b.autumn") {
		t.Errorf("actor quarantine: %v", got)
	}
	if got := keys(AuditFilter{KeyPrefix: "errorlog."}); !eq(got, KeyErrorLogMode, KeyErrorLogMode) {
		t.Errorf("errorlog entries: %v", got)
	}
	if got := keys(AuditFilter{Tenant: "a_b", KeyPrefix: "conversation.aXb."}); len(got) != 0 {
		t.Errorf("a tenant filter widened by a key prefix: %v", got)
	}
	if got := keys(AuditFilter{Since: time.Now().Add(time.Hour)}); len(got) != 0 {
		t.Errorf("since in the future: %v", got)
	}
	if got := keys(AuditFilter{Since: start, Limit: 2}); !eq(got, KeyErrorLogMode, "conversation.a_b.autumn") {
		t.Errorf("limit 2: %v", got)
	}
	es, _ := b.store.Audit(ctx, AuditFilter{Limit: 1})
	if got := keys(AuditFilter{Before: es[0].ID, Limit: 1}); !eq(got, "conversation.a_b.autumn") {
		t.Errorf("page before %d: %v", es[0].ID, got)
	}
	if es[0].Actor != "operator:op1 (alice)" || !sameJSON(t, string(es[0].New), `{"mode":"off"}`) || !sameJSON(t, string(es[0].Old), `{"mode":"full"}`) {
		t.Errorf("latest entry: %+v", es[0])
	}
	for _, f := range []AuditFilter{{Limit: -1}, {Limit: MaxAuditLimit + 1}, {Tenant: "a.b"}, {Before: -1}} {
		if _, err := b.store.Audit(ctx, f); !errors.Is(err, ErrInvalid) {
			t.Errorf("Audit(%+v) = %v, want ErrInvalid", f, err)
		}
	}
}

func TestConversationOfKey(t *testing.T) {
	t.Parallel()
	for key, want := range map[string][2]string{
		"conversation.acme.spring": {"acme", "spring"}, "conversation.a_b.c-d": {"a_b", "c-d"},
		"conversation.acme": {}, "errorlog.mode": {}, "conversation.a.b.c": {}, "conversation..x": {},
	} {
		tenant, conv, ok := ConversationOfKey(key)
		if ok != (want[0] != "") || tenant+"/"+conv != want[0]+"/"+want[1] && ok {
			t.Errorf("ConversationOfKey(%q) = %q, %q, %v; want %v", key, tenant, conv, ok, want)
		}
	}
}
