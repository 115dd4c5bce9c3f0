package node_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/wire"
)

// TestCampaignCountsConverge is the campaign API end to end: a conversation
// created over HTTP, 100,000 recipients (10,000 with -short) sent as one
// NDJSON stream, workers consuming them, and GET /v1/conversations/{id}
// converging to exact counts. A retry with the same Idempotency-Key then
// publishes nothing twice.
func TestCampaignCountsConverge(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	b := setup(t, 0, func(c *node.Config) {
		c.Pipeline.Bulk.Workers = 32
	})
	b.conversation(t, "launch", dispatch.ChannelEmail, wire.LaneBulk)
	var body bytes.Buffer
	wantInvalid := 0
	for i := range n {
		to := fmt.Sprintf("user%d@example.com", i)
		if i%10 == 0 {
			to, wantInvalid = "not-an-address", wantInvalid+1
		}
		fmt.Fprintf(&body, `{"to":%q,"vars":{"name":"n%d"}}`+"\n", to, i)
	}
	post := func() (int, []byte) {
		req, err := http.NewRequestWithContext(t.Context(), "POST", b.base+"/v1/conversations/launch/activations", bytes.NewReader(body.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Idempotency-Key", "launch-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.Bytes()
	}
	if code, data := post(); code != http.StatusAccepted {
		t.Fatalf("activations: %d %s", code, data)
	}

	var c api.Counts
	waitFor(t, 3*time.Minute, "the counts to converge", func() bool {
		var got struct {
			Counts api.Counts `json:"counts"`
		}
		if err := json.Unmarshal(b.must(t, "GET", "/v1/conversations/launch", nil, http.StatusOK), &got); err != nil {
			t.Fatal(err)
		}
		c = got.Counts
		return c.Pending == 0 && c.Accepted == int64(n) && c.Delivered+c.Invalid+c.Failed+c.Purged == c.Accepted
	})
	if c.Delivered != int64(n-wantInvalid) || c.Invalid != int64(wantInvalid) || c.Failed != 0 || c.Purged != 0 {
		t.Errorf("counts %+v, want delivered %d, invalid %d", c, n-wantInvalid, wantInvalid)
	}

	// The same request again: answered from the record, nothing published.
	if code, data := post(); code != http.StatusAccepted {
		t.Fatalf("retry: %d %s", code, data)
	}
	time.Sleep(500 * time.Millisecond) // anything published by the retry would be consumed by now
	if after := b.counts(t, "launch"); after.Accepted != int64(n) || after.Delivered != c.Delivered {
		t.Errorf("after the retry: %+v, want it unchanged from %+v", after, c)
	}
	if d := b.rec.duplicates("launch"); d != 0 {
		t.Errorf("%d duplicate sends", d)
	}
}
