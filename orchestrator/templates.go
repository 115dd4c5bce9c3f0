package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/internal/ctxtime"
	"github.com/sluicehq/sluice/wire"
)

// ConversationsBucket is the NATS KV bucket where the API publishes each
// conversation (key <tenant>.<id>) with its template; the workers watch it,
// so rendering a message never reads Postgres. It is api.ConversationsBucket
// (a test keeps the two equal; api imports this package, not the reverse).
const ConversationsBucket = "sluice_conversations"

// templates keeps every conversation's template source, current through a
// watch of ConversationsBucket, and renders messages with templates parsed
// once per conversation and version (dispatch.TemplateCache).
type templates struct {
	log   *slog.Logger
	cache *dispatch.TemplateCache

	mu  sync.RWMutex
	src map[string]templateSource // by "<tenant>.<conversation>"
}

type templateSource struct {
	src     dispatch.TemplateSource
	version uint64
}

// conversationTemplate is the part of the API's conversation entry the
// workers read.
type conversationTemplate struct {
	Template struct {
		Subject string `json:"subject"`
		Text    string `json:"text"`
		HTML    string `json:"html"`
	} `json:"template"`
}

func newTemplates(log *slog.Logger) *templates {
	return &templates{log: log, cache: dispatch.NewTemplateCache(), src: map[string]templateSource{}}
}

// watch follows ConversationsBucket until ctx ends. Until the API has created
// the bucket it looks again every few seconds; messages of conversations it
// does not know are sent with the providers' default body.
func (t *templates) watch(ctx context.Context, js jetstream.JetStream) {
	for ctx.Err() == nil {
		kv, err := js.KeyValue(ctx, ConversationsBucket)
		if err != nil {
			if !errors.Is(err, jetstream.ErrBucketNotFound) && ctx.Err() == nil {
				t.log.Warn("conversation templates: bucket unavailable", "err", err)
			}
			ctxtime.Sleep(ctx, 5*time.Second)
			continue
		}
		w, err := kv.WatchAll(ctx)
		if err != nil {
			t.log.Warn("conversation templates: watch failed", "err", err)
			ctxtime.Sleep(ctx, 5*time.Second)
			continue
		}
		for e := range w.Updates() {
			if e != nil {
				t.apply(e)
			}
		}
		_ = w.Stop()
	}
}

func (t *templates) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(t.src, key)
		t.cache.Forget(key)
		return
	}
	var ct conversationTemplate
	if err := json.Unmarshal(e.Value(), &ct); err != nil {
		t.log.Warn("conversation templates: undecodable entry", "key", key, "err", err)
		return
	}
	t.src[key] = templateSource{
		src:     dispatch.TemplateSource{Subject: ct.Template.Subject, Text: ct.Template.Text, HTML: ct.Template.HTML},
		version: e.Revision(),
	}
}

// render fills m's wire.Subject, Body and HTML from its conversation's template.
// A conversation without a template leaves them empty (the provider's
// default); a template that fails for these variables is a *RejectedError
// (template_error): the message is failed, not retried.
func (t *templates) render(m *dispatch.Message) error {
	key := m.Tenant + "." + m.Conversation
	t.mu.RLock()
	s, ok := t.src[key]
	t.mu.RUnlock()
	if !ok || strings.TrimSpace(s.src.Subject+s.src.Text+s.src.HTML) == "" {
		return nil
	}
	tpl, err := t.cache.Get(dispatch.TemplateKey{Conversation: key, Version: s.version}, s.src)
	if err != nil {
		return &dispatch.RejectedError{Reason: wire.ReasonTemplate, Detail: err.Error()}
	}
	r, err := tpl.Render(m.Vars)
	if err != nil {
		return err
	}
	m.Subject, m.Body, m.HTML = r.Subject, r.Text, r.HTML
	return nil
}
