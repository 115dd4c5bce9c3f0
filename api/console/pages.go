package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"github.com/sluicehq/sluice/api"
)

// A live view is a page whose regions are rendered again every interval:
// model builds the page's body from the request, regions name the region
// templates (regions.html) that render parts of it.
type liveView struct {
	regions []string
	model   func(c *Console, ctx context.Context, r *http.Request, p api.Principal) (any, error)
}

var liveViews = map[string]liveView{
	"overview": {[]string{"ov-lanes", "ov-errorlog", "ov-fleet", "ov-switches", "ov-tenant"},
		func(c *Console, ctx context.Context, _ *http.Request, p api.Principal) (any, error) {
			return c.overviewModel(ctx, p)
		}},
	"storm": {[]string{"storm-table"},
		func(c *Console, ctx context.Context, _ *http.Request, p api.Principal) (any, error) {
			return c.stormModel(ctx, p)
		}},
	"conversations": {[]string{"conv-list"},
		func(c *Console, ctx context.Context, r *http.Request, p api.Principal) (any, error) {
			return c.listModel(ctx, p, r.URL.Query().Get("q"), r.URL.Query().Get("state"))
		}},
	"conversation": {[]string{"conv-state", "conv-counts", "conv-chart", "conv-audit"},
		func(c *Console, ctx context.Context, r *http.Request, p api.Principal) (any, error) {
			q := r.URL.Query()
			tenant, id := q.Get("tenant"), q.Get("id")
			if r.PathValue("tenant") != "" {
				tenant, id = r.PathValue("tenant"), r.PathValue("id")
			}
			return c.detailModel(ctx, p, tenant, id)
		}},
}

// livePage builds a live page's view: its body and the query that its
// live stream is opened with.
func (c *Console) livePage(name, title string, extra url.Values) func(r *http.Request, p api.Principal) (view, error) {
	return func(r *http.Request, p api.Principal) (view, error) {
		body, err := liveViews[name].model(c, r.Context(), r, p)
		if err != nil {
			return view{}, err
		}
		q := url.Values{"view": {name}}
		for k, v := range extra {
			q[k] = v
		}
		for _, k := range []string{"q", "state"} {
			if v := r.URL.Query().Get(k); v != "" {
				q.Set(k, v)
			}
		}
		if t := r.PathValue("tenant"); t != "" {
			q.Set("tenant", t)
			q.Set("id", r.PathValue("id"))
		}
		return view{Title: title, Live: q.Encode(), Body: body}, nil
	}
}

func (c *Console) overview(r *http.Request, p api.Principal) (view, error) {
	return c.livePage("overview", "Overview", nil)(r, p)
}

func (c *Console) storm(r *http.Request, p api.Principal) (view, error) {
	return c.livePage("storm", "Storm view", nil)(r, p)
}

func (c *Console) conversations(r *http.Request, p api.Principal) (view, error) {
	return c.livePage("conversations", "Conversations", nil)(r, p)
}

func (c *Console) conversation(r *http.Request, p api.Principal) (view, error) {
	v, err := c.livePage("conversation", "Conversation", nil)(r, p)
	if err == nil {
		v.Title = "Conversation " + r.PathValue("tenant") + "/" + r.PathValue("id")
	}
	return v, err
}

func (c *Console) audit(r *http.Request, p api.Principal) (view, error) {
	b, err := c.auditModel(r.Context(), r, p)
	return view{Title: "Audit", Body: b}, err
}

// live streams a live view's regions as server-sent events: each event's
// data is a JSON object from region name to its HTML (escaped by
// html/template like the page), sent when it changed, every interval.
func (c *Console) live(w http.ResponseWriter, r *http.Request) {
	lv, ok := liveViews[r.URL.Query().Get("view")]
	if !ok {
		http.Error(w, "view: want overview, storm, conversations or conversation", http.StatusBadRequest)
		return
	}
	p := principal(r)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	last := map[string]string{}
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		changed, err := c.renderRegions(r, p, lv, last)
		if err != nil {
			c.log.Warn("console: live update failed", "view", r.URL.Query().Get("view"), "err", err)
			changed = map[string]string{"live-error": "Live updates paused: " + template.HTMLEscapeString(err.Error())}
		}
		if len(changed) > 0 {
			data, _ := json.Marshal(changed)
			if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
				return
			}
		} else if _, err := fmt.Fprint(w, ": tick\n\n"); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		case <-t.C:
		}
	}
}

// renderRegions renders lv's regions and returns those that differ from
// last (which it updates).
func (c *Console) renderRegions(r *http.Request, p api.Principal, lv liveView, last map[string]string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	body, err := lv.model(c, ctx, r, p)
	if err != nil {
		return nil, err
	}
	changed := map[string]string{}
	if last["live-error"] != "" {
		changed["live-error"], last["live-error"] = "", ""
	}
	for _, name := range lv.regions {
		var buf bytes.Buffer
		if err := c.regions.ExecuteTemplate(&buf, name, body); err != nil {
			return nil, fmt.Errorf("console: region %s: %w", name, err)
		}
		if s := buf.String(); s != last[name] {
			changed[name], last[name] = s, s
		}
	}
	return changed, nil
}
