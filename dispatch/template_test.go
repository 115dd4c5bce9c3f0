package dispatch_test

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/wire"
)

func TestTemplateRender(t *testing.T) {
	tpl, err := dispatch.ParseTemplate(dispatch.TemplateSource{
		Subject: "Hello {{.name}}",
		Text:    "Your code is {{.code}}.",
		HTML:    "<p>Hi {{.name}}</p><a href=\"/u?c={{.code}}\">go</a>",
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := tpl.Render(map[string]string{"name": "<Ann & Bob>", "code": "a b"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "Hello <Ann & Bob>" || r.Text != "Your code is a b." {
		t.Errorf("text parts: %+v (text/template must not escape)", r)
	}
	if want := `<p>Hi &lt;Ann &amp; Bob&gt;</p><a href="/u?c=a%20b">go</a>`; r.HTML != want {
		t.Errorf("HTML = %q, want %q (escaped per context)", r.HTML, want)
	}

	_, err = tpl.Render(map[string]string{"name": "x"})
	var re *dispatch.RejectedError
	if !errors.As(err, &re) || re.Reason != wire.ReasonTemplate {
		t.Fatalf("missing variable: %v, want a RejectedError with reason template_error", err)
	}

	empty, err := dispatch.ParseTemplate(dispatch.TemplateSource{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := empty.Render(nil); err != nil || r != (dispatch.Rendered{}) {
		t.Errorf("empty template renders %+v, %v", r, err)
	}
	if _, err := dispatch.ParseTemplate(dispatch.TemplateSource{Text: "{{.x"}); err == nil {
		t.Error("a malformed template parsed")
	}
}

func TestTemplateCacheParsesOncePerVersion(t *testing.T) {
	c := dispatch.NewTemplateCache()
	src := func(v int) dispatch.TemplateSource {
		return dispatch.TemplateSource{Text: fmt.Sprintf("v%d {{.n}}", v)}
	}
	k1 := dispatch.TemplateKey{Conversation: "c1", Version: 1}
	var wg sync.WaitGroup
	got := make([]*dispatch.Template, 16)
	for i := range got {
		wg.Go(func() {
			tpl, err := c.Get(k1, src(1))
			if err != nil {
				t.Error(err)
			}
			got[i] = tpl
		})
	}
	wg.Wait()
	for _, tpl := range got[1:] {
		if tpl != got[0] {
			t.Fatal("concurrent Gets of one version returned different parses")
		}
	}
	// A newer version replaces the entry; the older one is not cached again.
	t2, _ := c.Get(dispatch.TemplateKey{Conversation: "c1", Version: 2}, src(2))
	if r, _ := t2.Render(map[string]string{"n": "x"}); r.Text != "v2 x" {
		t.Errorf("version 2 renders %q", r.Text)
	}
	old, _ := c.Get(k1, src(1))
	if old == got[0] {
		t.Error("an older version came back from the cache after a newer one")
	}
	if again, _ := c.Get(dispatch.TemplateKey{Conversation: "c1", Version: 2}, dispatch.TemplateSource{Text: "ignored"}); again != t2 {
		t.Error("the current version was parsed again")
	}
	// Parse errors are cached too.
	bad := dispatch.TemplateKey{Conversation: "c2", Version: 1}
	_, e1 := c.Get(bad, dispatch.TemplateSource{Text: "{{"})
	_, e2 := c.Get(bad, dispatch.TemplateSource{Text: "fine"})
	if e1 == nil || e2 == nil {
		t.Error("the parse error of a version was not cached")
	}
	if c.Len() != 2 {
		t.Errorf("Len = %d, want 2", c.Len())
	}
	c.Forget("c1")
	if c.Len() != 1 {
		t.Errorf("Len after Forget = %d, want 1", c.Len())
	}
}

func TestMessageDefaults(t *testing.T) {
	m := &dispatch.Message{ID: "x1", Vars: map[string]string{"b": "2", "a": "1"}}
	if got := m.BodyOrDefault(); got != "sluice message x1\na: 1\nb: 2" {
		t.Errorf("BodyOrDefault = %q", got)
	}
	if m.SubjectOrDefault() == "" {
		t.Error("empty default subject")
	}
	m.Subject, m.Body = "s", "b"
	if m.SubjectOrDefault() != "s" || m.BodyOrDefault() != "b" {
		t.Error("rendered text not preferred")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", time.Minute},
		{"7", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", time.Minute},
		{"-3", time.Minute},
		{"soon", time.Minute},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), time.Minute},
	} {
		if got := dispatch.ParseRetryAfter(tc.in, now, time.Minute); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
