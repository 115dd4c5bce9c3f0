package node_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/feedback"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/wire"
)

// TestUnsubscribeAndFeedback: a bulk email reaches the SMTP sink carrying
// List-Unsubscribe with a signed link under the public URL and
// List-Unsubscribe-Post: List-Unsubscribe=One-Click; a one-click POST to
// the link suppresses the recipient (source unsubscribe), and the next
// message to it is counted suppressed. An SES complaint notification
// wrapped in SNS suppresses its recipient (source feedback) and, past the
// complaint threshold, quarantines the conversation it names.
func TestUnsubscribeAndFeedback(t *testing.T) {
	t.Parallel()
	b, at, local := sinkNode(t, func(c *node.Config) {
		c.PublicURL = "https://mail.example.com"
		c.Feedback = feedback.Thresholds{MinDelivered: 5}
	})
	b.conversation(t, "news", dispatch.ChannelEmail, wire.LaneBulk)
	b.must(t, "POST", "/v1/conversations/news/activations", rowsTo("ann@example.com", "bob@example.com", "cy@example.com", "di@example.com", "ed@example.com"), http.StatusAccepted)
	waitFor(t, 30*time.Second, "the first round", func() bool { return b.counts(t, "news").Delivered == 5 })
	m, ok := local.SMTP.Ledger().Find(func(m dispatch.Message) bool { return m.To == "ann@example.com" })
	if !ok {
		t.Fatal("the sink has no copy of ann's message")
	}
	link := m.Headers["List-Unsubscribe"]
	if !strings.HasPrefix(link, "<https://mail.example.com/u/") || !strings.HasSuffix(link, ">") || m.Headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" {
		t.Fatalf("headers in the sink's copy: %v", m.Headers)
	}
	path := strings.TrimSuffix(strings.TrimPrefix(link, "<https://mail.example.com"), ">")
	if code, _, page := b.do(t, "GET", path, nil); code != http.StatusOK || !strings.Contains(string(page), `method="post"`) {
		t.Fatalf("GET link: %d %s", code, page)
	}
	if suppressed(t, b, "ann@example.com") != "" {
		t.Fatal("GET on the link unsubscribed")
	}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", b.base+path, strings.NewReader("List-Unsubscribe=One-Click"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("one-click POST: %v %v", resp, err)
	}
	resp.Body.Close()
	if src := suppressed(t, b, "ann@example.com"); src != "unsubscribe" {
		t.Fatalf("after one-click: source %q, want unsubscribe", src)
	}
	if code, _, _ := b.do(t, "POST", path[:len(path)-2]+"xx", nil); code != http.StatusNotFound {
		t.Errorf("forged link: %d, want 404", code)
	}
	waitFor(t, 10*time.Second, "the workers to learn", func() bool {
		b.must(t, "POST", "/v1/conversations/news/activations", rowsTo("ann@example.com"), http.StatusAccepted)
		waitFor(t, 10*time.Second, "the message", func() bool { return b.counts(t, "news").Pending == 0 })
		return b.counts(t, "news").Suppressed > 0
	})
	if at.of("ann@example.com") != 1 {
		t.Errorf("ann reached a provider %d times, want once (before unsubscribing)", at.of("ann@example.com"))
	}

	ses := `{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"bob@example.com"}]},` +
		`"mail":{"headers":[{"name":"X-Sluice-Conversation","value":"news"}]}}`
	sns, _ := json.Marshal(map[string]string{"Type": "Notification", "Message": ses})
	var res struct {
		Suppressed int      `json:"suppressed"`
		Paused     []string `json:"paused"`
	}
	decode(t, b.must(t, "POST", "/v1/feedback", json.RawMessage(sns), http.StatusOK), &res)
	if res.Suppressed != 1 || len(res.Paused) != 1 || res.Paused[0] != "news" {
		t.Errorf("feedback answer %+v: want 1 suppressed, news paused (1 complaint in 5 delivered passes 0.3%%)", res)
	}
	if src := suppressed(t, b, "bob@example.com"); src != "feedback" {
		t.Errorf("bob: source %q, want feedback", src)
	}
	var conv struct {
		State string `json:"state"`
	}
	decode(t, b.must(t, "GET", "/v1/admin/conversations/acme/news", nil, http.StatusOK), &conv)
	if conv.State != "quarantined" {
		t.Errorf("conversation state %q, want quarantined", conv.State)
	}
}

// suppressed returns the source of address's entry, "" if none.
func suppressed(t *testing.T, b *bundle, address string) string {
	t.Helper()
	var got struct {
		Suppressed bool
		Entry      struct{ Source string }
	}
	decode(t, b.must(t, "GET", "/v1/suppressions?address="+url.QueryEscape(address), nil, http.StatusOK), &got)
	return got.Entry.Source
}
