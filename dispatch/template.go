package dispatch

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"sync"
	texttemplate "text/template"

	"github.com/sluicehq/sluice/wire"
)

// TemplateSource is the source text of a conversation's message template.
// Each part is optional; an empty part renders as "".
type TemplateSource struct {
	// Subject is a text/template for the email subject or push title.
	Subject string
	// Text is a text/template for the plain-text body (email, SMS, push).
	Text string
	// HTML is an html/template for the HTML body of an email; values are
	// escaped for their HTML context.
	HTML string
}

// Template is a parsed [TemplateSource]. Parse it once per conversation
// template version (see [TemplateCache]) and Render it per message; it is
// safe for concurrent use.
//
// Templates see the activation's variables as a map: {{.name}}. A variable
// the template uses but the message lacks is an error, so that no
// recipient receives "Hello <no value>".
type Template struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// Rendered is the output of [Template.Render].
type Rendered struct {
	Subject, Text, HTML string
}

// ParseTemplate parses src. The error names the part that failed.
func ParseTemplate(src TemplateSource) (*Template, error) {
	var t Template
	var err error
	if t.subject, err = parseText("subject", src.Subject); err != nil {
		return nil, err
	}
	if t.text, err = parseText("text", src.Text); err != nil {
		return nil, err
	}
	if src.HTML != "" {
		if t.html, err = htmltemplate.New("html").Option("missingkey=error").Parse(src.HTML); err != nil {
			return nil, fmt.Errorf("dispatch: template html: %w", err)
		}
	}
	return &t, nil
}

func parseText(name, src string) (*texttemplate.Template, error) {
	if src == "" {
		return nil, nil
	}
	t, err := texttemplate.New(name).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("dispatch: template %s: %w", name, err)
	}
	return t, nil
}

// Render executes the template with vars. A failure (a missing variable,
// for instance) is a *[RejectedError] with reason [wire.ReasonTemplate]: the
// message cannot be rendered on any retry.
func (t *Template) Render(vars map[string]string) (Rendered, error) {
	if vars == nil {
		vars = map[string]string{}
	}
	var r Rendered
	var buf bytes.Buffer
	exec := func(name string, run func() error, out *string) error {
		buf.Reset()
		if err := run(); err != nil {
			return &RejectedError{Reason: wire.ReasonTemplate, Detail: name + ": " + templateDetail(err)}
		}
		*out = buf.String()
		return nil
	}
	if t.subject != nil {
		if err := exec("subject", func() error { return t.subject.Execute(&buf, vars) }, &r.Subject); err != nil {
			return Rendered{}, err
		}
	}
	if t.text != nil {
		if err := exec("text", func() error { return t.text.Execute(&buf, vars) }, &r.Text); err != nil {
			return Rendered{}, err
		}
	}
	if t.html != nil {
		if err := exec("html", func() error { return t.html.Execute(&buf, vars) }, &r.HTML); err != nil {
			return Rendered{}, err
		}
	}
	return r, nil
}

// templateDetail keeps the execution error's text, which names the template
// position and the missing key, never a variable's value.
func templateDetail(err error) string {
	var te texttemplate.ExecError
	if errors.As(err, &te) {
		return te.Err.Error()
	}
	return err.Error()
}

// TemplateKey identifies one version of one conversation's template.
type TemplateKey struct {
	Conversation string
	// Version changes whenever the template changes; the NATS KV revision
	// of the conversation entry serves.
	Version uint64
}

// TemplateCache holds parsed templates by conversation and version, so that
// a template is parsed once per version, never per message. It keeps one
// version per conversation: getting a newer version replaces the older one,
// so the cache holds at most one entry per live conversation; Forget drops
// a conversation that ended. A parse error is cached too. It is safe for
// concurrent use.
type TemplateCache struct {
	mu      sync.Mutex
	entries map[string]*templateEntry
}

type templateEntry struct {
	version uint64
	once    sync.Once
	src     TemplateSource
	t       *Template
	err     error
}

// NewTemplateCache returns an empty cache.
func NewTemplateCache() *TemplateCache {
	return &TemplateCache{entries: make(map[string]*templateEntry)}
}

// Get returns the parsed template of key, parsing src only if this version
// of this conversation is not cached yet. Concurrent callers of a version
// being parsed wait for that one parse. A request for a version older than
// the cached one parses it without caching it.
func (c *TemplateCache) Get(key TemplateKey, src TemplateSource) (*Template, error) {
	c.mu.Lock()
	e, ok := c.entries[key.Conversation]
	switch {
	case ok && e.version == key.Version:
	case ok && e.version > key.Version:
		c.mu.Unlock()
		return ParseTemplate(src)
	default:
		e = &templateEntry{version: key.Version, src: src}
		c.entries[key.Conversation] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		e.t, e.err = ParseTemplate(e.src)
		e.src = TemplateSource{}
	})
	return e.t, e.err
}

// Forget drops the cached template of a conversation.
func (c *TemplateCache) Forget(conversation string) {
	c.mu.Lock()
	delete(c.entries, conversation)
	c.mu.Unlock()
}

// Len returns the number of cached conversations.
func (c *TemplateCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
