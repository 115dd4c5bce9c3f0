//go:build fleet

package fleettest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/dispatch/sink"
	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/orchestrator"
)

const tenant = "acme"

// fleet is a running deployment: the NATS cluster, Postgres, the SMTP sink,
// one API process and the workers.
type fleet struct {
	t        *testing.T
	nats     *cluster
	js       jetstream.JetStream // the test's own connection
	db       *pgtest.DB
	smtp     *sink.SMTPServer
	api      *proc
	workers  []*proc
	key      string
	replicas int
	client   *http.Client
}

// startFleet starts the cluster, a database, the sink, the API process and
// the given number of worker processes (not started when workers is
// negative: -n creates n stopped workers).
func startFleet(t *testing.T, replicas, workers int) *fleet {
	t.Helper()
	f := &fleet{t: t, nats: startCluster(t), db: pgtest.New(t), replicas: replicas, client: &http.Client{Timeout: 60 * time.Second}}
	f.js = f.nats.connect()
	var err error
	if f.smtp, err = sink.StartSMTP(sink.SMTPConfig{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.smtp.Close() })
	if f.key, _, err = api.CreateAPIKey(t.Context(), f.db.Pool, tenant, "fleet", api.AllScopes); err != nil {
		t.Fatal(err)
	}
	bin := sluiceBin(t)
	common := []string{"--nats-url", f.nats.urls(), "--database-url", f.db.URL, "--env", "test", "--replicas", strconv.Itoa(replicas)}
	f.api = newProc(t, bin, "api", append(common, "--api")...)
	f.api.start()
	for i := range max(workers, -workers) {
		w := newProc(t, bin, fmt.Sprintf("worker%d", i+1), append(common, "--worker", "--quarantine-ratio", "0",
			"--providers", "real", "--smtp-addr", f.smtp.Addr(), "--smtp-tls", "none", "--smtp-from", "x@example.com")...)
		if workers > 0 {
			w.start()
		}
		f.workers = append(f.workers, w)
	}
	return f
}

// do sends one API request with the tenant's key.
func (f *fleet) do(method, path, contentType string, body []byte, header ...string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+f.api.httpAddr+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+f.key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// campaign is what the test sent to one conversation.
type campaign struct {
	id              string
	accepted, valid int64
}

func (c *campaign) invalid() int64 { return c.accepted - c.valid }

// heldFor is how long pauseResume holds its campaign: longer than the
// default send timeout (10s), so that every send begun before the pause has
// ended in its first half.
const heldFor = 24 * time.Second

// change pauses or resumes c for the whole fleet through the admin API.
func (f *fleet) change(c *campaign, action string) {
	f.t.Helper()
	code, resp, err := f.do(http.MethodPost, "/v1/admin/conversations/"+tenant+"/"+c.id+"/"+action, "application/json", []byte(`{"reason":"fleet test"}`))
	if err != nil || code != http.StatusOK {
		f.t.Fatalf("%s %s: %d %s %v", action, c.id, code, resp, err)
	}
}

// consumers counts the activation stream's consumers of c's bulk subject,
// by name (sluice_bulk_<tenant>_<conversation>_<hash>). Names come from the
// cluster's assignments; listing consumers' infos instead leaves out, with
// no error, any whose leader does not answer within the server's 4s.
func (f *fleet) consumers(c *campaign) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, orchestrator.StreamName)
	if err != nil {
		return 0, err
	}
	prefix := "sluice_bulk_" + tenant + "_" + c.id + "_"
	n := 0
	lister := s.ConsumerNames(ctx)
	for name := range lister.Name() {
		if strings.HasPrefix(name, prefix) {
			n++
		}
	}
	return n, lister.Err()
}

// consumerLeader is the name of c's bulk consumer and of the node leading it.
func (f *fleet) consumerLeader(c *campaign) (name, leader string) {
	f.t.Helper()
	prefix := "sluice_bulk_" + tenant + "_" + c.id + "_"
	poll(f.t, 30*time.Second, "the leader of "+c.id+"'s consumer", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := f.js.Stream(ctx, orchestrator.StreamName)
		if err != nil {
			return false, err.Error()
		}
		lister := s.ConsumerNames(ctx)
		for n := range lister.Name() {
			if strings.HasPrefix(n, prefix) {
				name = n
			}
		}
		if name == "" {
			return false, fmt.Sprintf("no consumer %s* (%v)", prefix, lister.Err())
		}
		cons, err := s.Consumer(ctx, name)
		if err != nil {
			return false, err.Error()
		}
		if cl := cons.CachedInfo().Cluster; cl != nil {
			leader = cl.Leader
		}
		return leader != "", "no leader"
	})
	return name, leader
}

// consumerState describes a bulk consumer's counts, for the log.
func (f *fleet) consumerState(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := f.js.Consumer(ctx, orchestrator.StreamName, name)
	if err != nil {
		return err.Error()
	}
	i := cons.CachedInfo()
	return fmt.Sprintf("consumer: %d pending, %d awaiting an ack, %d redelivered", i.NumPending, i.NumAckPending, i.NumRedelivered)
}

// workerMetric is each running worker's samples of a metric, for the log.
func (f *fleet) workerMetric(name string) string {
	var out []string
	for _, w := range f.workers {
		resp, err := f.client.Get("http://" + w.httpAddr + "/metrics")
		if err != nil {
			out = append(out, w.name+": "+err.Error())
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name+"{") {
				out = append(out, w.name+" "+strings.TrimPrefix(line, name))
			}
		}
	}
	return strings.Join(out, "; ")
}

// queued is how many of c's messages wait to be handled (orchestrator.QueuedConversation).
func (f *fleet) queued(c *campaign) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return orchestrator.QueuedConversation(ctx, f.js, tenant, c.id)
}

// waitConsumed waits until at least n of c's messages have left the
// stream (handled and acked; their outcomes may still be on the way).
func (f *fleet) waitConsumed(c *campaign, n int64) {
	f.t.Helper()
	poll(f.t, 2*time.Minute, fmt.Sprintf("%d of %s consumed", n, c.id), func() (bool, string) {
		q, err := f.queued(c)
		if err != nil {
			return false, err.Error()
		}
		return int64(q) <= c.accepted-n, fmt.Sprintf("%d queued", q)
	})
}

// createCampaign creates an email conversation.
func (f *fleet) createCampaign(id string) *campaign {
	f.t.Helper()
	body := fmt.Sprintf(`{"id":%q,"name":"fleet %s","channel":"email","lane":"bulk","template":{"subject":"Hi","text":"Hello"}}`, id, id)
	code, resp, err := f.do(http.MethodPost, "/v1/conversations", "application/json", []byte(body))
	if err != nil || code/100 != 2 {
		f.t.Fatalf("create conversation %s: %d %s %v", id, code, resp, err)
	}
	return &campaign{id: id}
}

// rows builds n ndjson rows, one in ten valid, the rest invalid in three
// ways, and returns how many are valid.
func rows(prefix string, n int) ([]byte, int64) {
	var b strings.Builder
	var valid int64
	bad := []string{"", "not-an-email", "a@b"}
	for i := range n {
		to := bad[i%len(bad)]
		if i%10 == 0 {
			to = fmt.Sprintf("%s-%d@example.com", prefix, i)
			valid++
		}
		fmt.Fprintf(&b, "{\"to\":%q}\n", to)
	}
	return []byte(b.String()), valid
}

// post publishes n rows to c through the API and returns the status; on
// 202 they are added to what c expects.
func (f *fleet) post(c *campaign, key string, n int) (int, string) {
	f.t.Helper()
	body, valid := rows(c.id+"-"+key, n)
	code, resp, err := f.do(http.MethodPost, "/v1/conversations/"+c.id+"/activations", "application/x-ndjson", body, "Idempotency-Key", key)
	if err != nil {
		return 0, err.Error()
	}
	if code == http.StatusAccepted {
		var a api.ActivationsAccepted
		if err := json.Unmarshal(resp, &a); err != nil || a.Accepted != int64(n) {
			f.t.Fatalf("post %s/%s: %s (%v), want %d accepted", c.id, key, resp, err, n)
		}
		c.accepted += int64(n)
		c.valid += valid
	}
	return code, string(resp)
}

// counts reads a conversation's counts through the API.
func (f *fleet) counts(id string) (api.Counts, error) {
	code, resp, err := f.do(http.MethodGet, "/v1/conversations/"+id, "", nil)
	if err != nil {
		return api.Counts{}, err
	}
	if code != http.StatusOK {
		return api.Counts{}, fmt.Errorf("GET conversation %s: %d %s", id, code, resp)
	}
	var c api.Conversation
	if err := json.Unmarshal(resp, &c); err != nil || c.Counts == nil {
		return api.Counts{}, fmt.Errorf("GET conversation %s: %s (%v)", id, resp, err)
	}
	return *c.Counts, nil
}

// waitCounted waits until at least n of c's messages have an outcome.
func (f *fleet) waitCounted(c *campaign, n int64) {
	f.t.Helper()
	poll(f.t, 2*time.Minute, fmt.Sprintf("%d outcomes in %s", n, c.id), func() (bool, string) {
		k, err := f.counts(c.id)
		if err != nil {
			return false, err.Error()
		}
		done := k.Delivered + k.Invalid + k.Failed + k.Purged
		return done >= n, fmt.Sprintf("%d counted", done)
	})
}

// streams are every stream and bucket a fleet replicates.
var streams = []string{orchestrator.StreamName, orchestrator.TransactionalStreamName, errorlog.SpillStream, "KV_sluice_control", "KV_" + api.ConversationsBucket}

// waitReplicated waits until every stream has f.replicas replicas, a leader
// and every follower current.
func (f *fleet) waitReplicated(d time.Duration) {
	f.t.Helper()
	for _, name := range streams {
		poll(f.t, d, name+" at full replication", func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			s, err := f.js.Stream(ctx, name)
			if err != nil {
				return false, err.Error()
			}
			info := s.CachedInfo()
			if info.Config.Replicas != f.replicas {
				return false, fmt.Sprintf("replicas %d, want %d", info.Config.Replicas, f.replicas)
			}
			if f.replicas == 1 {
				return true, ""
			}
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != f.replicas-1 {
				return false, fmt.Sprintf("cluster %+v", info.Cluster)
			}
			for _, p := range info.Cluster.Replicas {
				if !p.Current || p.Offline {
					return false, fmt.Sprintf("replica %s current %v offline %v lag %d", p.Name, p.Current, p.Offline, p.Lag)
				}
			}
			return true, ""
		})
	}
}

// leaderOf is the name of the node leading a stream.
func (f *fleet) leaderOf(stream string) string {
	f.t.Helper()
	var leader string
	poll(f.t, 30*time.Second, "a leader of "+stream, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := f.js.Stream(ctx, stream)
		if err != nil {
			return false, err.Error()
		}
		if c := s.CachedInfo().Cluster; c != nil {
			leader = c.Leader
		}
		return leader != "", "no leader"
	})
	return leader
}
