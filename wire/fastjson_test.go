package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// envelopeCorpus is inputs on both sides of the fast path's edge: what it
// takes, and what it must hand to encoding/json.
func envelopeCorpus() []string {
	good := `{"v":1,"id":"a1","tenant":"t","conversation":"c","lane":"bulk","channel":"email","to":"x@example.com","vars":{"name":"Ann","b":"2"},"enqueued_at":"2026-11-21T08:00:00.123456789Z","expires_at":"2026-11-22T08:00:00+02:00"}`
	edits := [][2]string{
		{"", ""},
		{`"to":"x@example.com"`, `"to":""`},
		{`"to":"x@example.com"`, `"to":"élise@exämple.com"`},
		{`"to":"x@example.com"`, "\"to\":\"a\xffb\""},
		{`"to":"x@example.com"`, `"to":"a\"b"`},
		{`"to":"x@example.com"`, `"to":"a\u0041"`},
		{`"to":"x@example.com"`, "\"to\":\"a\tb\""},
		{`"to":"x@example.com"`, `"to":null`},
		{`"to":"x@example.com"`, `"to":5`},
		{`"to":"x@example.com"`, `"TO":"y@example.com"`},
		{`"to":"x@example.com"`, `"to":"x@example.com","to":"y@example.com"`},
		{`"to":"x@example.com"`, `"to":"x@example.com","extra":{"a":[1,2]}`},
		{`"v":1`, `"v":1.0`},
		{`"v":1`, `"v":01`},
		{`"v":1`, `"v":-1`},
		{`"v":1`, `"v":1e0`},
		{`"v":1`, `"v":99999999999999999999`},
		{`"v":1`, `"v":null`},
		{`"v":1`, `"v":"1"`},
		{`"v":1,`, ``},
		{`{"v":1`, ` { "v" : 1 `},
		{`,"id"`, ` ,
	"id"`},
		{`"vars":{"name":"Ann","b":"2"}`, `"vars":null`},
		{`"vars":{"name":"Ann","b":"2"}`, `"vars":{}`},
		{`"vars":{"name":"Ann","b":"2"}`, `"vars":{ "a" : "b" , "a":"c" }`},
		{`"vars":{"name":"Ann","b":"2"}`, `"vars":{"n":1}`},
		{`"vars":{"name":"Ann","b":"2"}`, `"vars":{"n":null}`},
		{`"vars":{"name":"Ann","b":"2"}`, `"vars":{"n":"a\nb"}`},
		{`"vars":{"name":"Ann","b":"2"}`, `"vars":[]`},
		{`"vars":{"name":"Ann","b":"2"}`, `"vars":{"a":"b",}`},
		{`"enqueued_at":"2026-11-21T08:00:00.123456789Z"`, `"enqueued_at":null`},
		{`"enqueued_at":"2026-11-21T08:00:00.123456789Z"`, `"enqueued_at":"yesterday"`},
		{`"enqueued_at":"2026-11-21T08:00:00.123456789Z"`, `"enqueued_at":"2026-11-21T08:00:00z"`},
		{`"expires_at":"2026-11-22T08:00:00+02:00"`, `"expires_at":null`},
		{`"expires_at":"2026-11-22T08:00:00+02:00"`, `"expires_at":"2026-11-22T08:00:00+02:00","expires_at":null`},
		{`"lane":"bulk"`, `"lane":"fast"`},
		{`"lane":"bulk"`, `"lane":"transactional"`},
		{`"lane":"bulk"`, `"lane":"bul"`},
		{`"channel":"email"`, `"channel":"sms"`},
		{`"channel":"email"`, `"channel":"push"`},
		{`"channel":"email"`, `"channel":"fax"`},
		{`"channel":"email"`, `"channel":"emails"`},
		{`"lane":"bulk"`, `"lane":1`},
		{`"tenant":"t"`, `"tenant":"a.b"`},
		{`}`, `},`},
		{`}`, `} x`},
		{`}`, `}  `},
		{`}`, ``},
		{`{`, `[`},
	}
	var out []string
	for _, e := range edits {
		if e[0] == "" {
			out = append(out, good)
			continue
		}
		i := strings.LastIndex(good, e[0])
		if e[0] == "{" || e[0] == `{"v":1` {
			i = 0
		}
		out = append(out, good[:i]+e[1]+good[i+len(e[0]):])
	}
	return append(out, ``, `{}`, `null`, `{"v":1}`, ` {"v":1} `, `{"v":1,"id":"x","tenant":"t","conversation":"c","lane":"bulk"}`)
}

// agree fails t if the fast path and encoding/json decode data differently.
func agree(t testing.TB, data []byte, maxVars int) {
	gotA, gotErr := decode(data, maxVars, true)
	wantA, wantErr := decode(data, maxVars, false)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("%q: fast error %v, encoding/json %v", data, gotErr, wantErr)
	}
	if gotA == nil || wantA == nil {
		if (gotA == nil) != (wantA == nil) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", data, gotA, wantA)
		}
		return
	}
	if !gotA.EnqueuedAt.Equal(wantA.EnqueuedAt) || (gotA.ExpiresAt == nil) != (wantA.ExpiresAt == nil) ||
		(gotA.ExpiresAt != nil && !gotA.ExpiresAt.Equal(*wantA.ExpiresAt)) {
		t.Fatalf("%q: times differ: fast %+v, encoding/json %+v", data, gotA, wantA)
	}
	g, w := *gotA, *wantA
	g.EnqueuedAt, w.EnqueuedAt, g.ExpiresAt, w.ExpiresAt = time.Time{}, time.Time{}, nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%q: fast %+v, encoding/json %+v", data, g, w)
	}
}

func TestFastDecodeAgreesWithJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range envelopeCorpus() {
		for _, max := range []int{0, 10} {
			agree(t, []byte(s), max)
		}
		// Every prefix, and random single-byte changes.
		for i := range len(s) {
			agree(t, []byte(s[:i]), 0)
		}
		for range 200 {
			b := []byte(s)
			if len(b) == 0 {
				break
			}
			b[rng.IntN(len(b))] = `{}[]":,\ 0a1-.eEn`[rng.IntN(17)]
			agree(t, b, 0)
		}
	}
}

func TestFastEncodeAgreesWithJSON(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 12, 1, 3, 4, 5, 600, time.FixedZone("x", 3600))
	for _, a := range []*Activation{
		{ID: "a", Tenant: "t", Conversation: "c", Lane: LaneBulk, Channel: "email", To: "x@example.com"},
		{ID: "a<b>&", Tenant: "t", Conversation: "c", Lane: LaneTransactional, Channel: "sms", To: "é\u2028\"\\\n\x01\xff",
			Vars: map[string]string{"z": "1", "a": "<2>", "m": ""}, EnqueuedAt: time.Now(), ExpiresAt: &exp},
		{Vars: map[string]string{}},
	} {
		got, err := Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(a)
		if !bytes.Equal(got, want) {
			t.Fatalf("Encode\n got %s\nwant %s", got, want)
		}
		agree(t, got, 0)
	}
	bad := &Activation{EnqueuedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := Encode(bad); err == nil {
		t.Fatal("Encode of a year past 9999 did not fail")
	}
}

func BenchmarkDecode(b *testing.B) {
	data := []byte(envelopeCorpus()[0])
	for _, fast := range []bool{false, true} {
		b.Run(fmt.Sprintf("fast=%v", fast), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := decode(data, 0, fast); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeAllocations pins what the fast path allocates for an envelope
// without vars or expiry: the Activation and the strings of its id, tenant,
// conversation and address. The lane and the channel are the known names,
// not copies (issue 14: the bulk lane decodes every message).
func TestDecodeAllocations(t *testing.T) {
	data := []byte(`{"v":1,"id":"act-1","tenant":"acme","conversation":"spring","lane":"bulk","channel":"email","to":"x@example.com","enqueued_at":"2026-11-21T08:00:00Z"}`)
	a, err := Decode(data, 0)
	if err != nil || a.Lane != LaneBulk || a.Channel != "email" || a.Tenant != "acme" {
		t.Fatalf("Decode = %+v, %v", a, err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = Decode(data, 0) }); n != 5 {
		t.Errorf("Decode allocates %v times per envelope, want 5", n)
	}
}
