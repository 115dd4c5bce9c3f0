package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/errorlog"
	"github.com/sluicehq/sluice/orchestrator/control"
)

// defaultAPIURL is the API of `make run` (sluice dev).
const defaultAPIURL = "http://" + defaultHTTPAddr

const ctlUsage = `usage: sluice ctl [flags] <command> [flags]

Operate a running sluice through its admin API. Changes take effect on every
worker within a second and are audited (who, when, old and new value).

commands:
  errorlog show                  the error log's mode and its last change
  errorlog set MODE [--first N] [--then M] [--window D]
                                 change the mode for the whole fleet. MODE is
                                 full (every event a row), sample (per
                                 conversation and reason, the first N events of
                                 each window D, then 1 in M; defaults 100, 1000,
                                 1m), off (counters only) or sync (one INSERT per
                                 event, the legacy design)
  errors top [--window 5m] [--limit 20]
                                 the conversations with the most undeliverable
                                 messages over the window, with their reasons
  apikey ...                     manage API keys (sluice ctl apikey -h)

flags, before or after the command:
  --api-url URL   the API (SLUICE_API_URL, default ` + defaultAPIURL + `)
  --key KEY       an API key with the admin scope (SLUICE_API_KEY; sluice dev
                  needs none)
  --json          print the API's JSON instead of a table
`

// ctlOptions are the flags every ctl command takes.
type ctlOptions struct {
	apiURL string
	key    string
	json   bool
}

// register adds the common flags to fs, defaulting to o's values, so they can
// be given before or after the command.
func (o *ctlOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.apiURL, "api-url", o.apiURL, "the API's base URL (SLUICE_API_URL)")
	fs.Var(secretFlag{&o.key}, "key", "an API key with the admin scope (SLUICE_API_KEY)")
	fs.BoolVar(&o.json, "json", o.json, "print JSON")
}

// secretFlag is a string flag whose value is never printed, not even as the
// default in -h output (where SLUICE_API_KEY would otherwise show).
type secretFlag struct{ p *string }

func (f secretFlag) String() string     { return "" }
func (f secretFlag) Set(v string) error { *f.p = v; return nil }

// runCtl implements `sluice ctl`.
func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &ctlOptions{apiURL: env("SLUICE_API_URL", defaultAPIURL), key: env("SLUICE_API_KEY", "")}
	fs := newFlagSet("ctl", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	o.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		fs.Usage()
		return errUsage
	}
	if cmd[0] == "help" {
		fmt.Fprint(stdout, ctlUsage)
		return nil
	}
	if cmd[0] == "apikey" {
		// Keys are managed in the database directly: the first admin key
		// cannot come from an API that needs one.
		return runAPIKey(ctx, cmd[1:], stdout, stderr)
	}
	sub := ""
	if len(cmd) > 1 {
		sub = cmd[1]
	}
	name := "ctl " + cmd[0] + " " + sub
	switch cmd[0] + " " + sub {
	case "errorlog show":
		return ctlErrorLogShow(ctx, o, name, cmd[2:], stdout, stderr)
	case "errorlog set":
		return ctlErrorLogSet(ctx, o, name, cmd[2:], stdout, stderr)
	case "errors top":
		return ctlErrorsTop(ctx, o, name, cmd[2:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "sluice ctl: unknown command %q\n\n%s", strings.TrimSpace(cmd[0]+" "+sub), ctlUsage)
		return errUsage
	}
}

// parseCommand parses a command's flags, which may come before, between or
// after its positional arguments, and returns the positional arguments.
func parseCommand(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func ctlErrorLogShow(ctx context.Context, o *ctlOptions, name string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(name, stderr)
	o.register(fs)
	if pos, err := parseCommand(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		fmt.Fprintf(stderr, "sluice %s: unexpected arguments %q\n", name, pos)
		return errUsage
	}
	body, err := o.call(ctx, http.MethodGet, "/v1/admin/errorlog", nil)
	if err != nil {
		return err
	}
	if o.json {
		return writeIndented(stdout, body)
	}
	var st control.ErrorLogStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("GET /v1/admin/errorlog: %w", err)
	}
	return printErrorLogStatus(stdout, st)
}

func ctlErrorLogSet(ctx context.Context, o *ctlOptions, name string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(name, stderr)
	o.register(fs)
	var m errorlog.Mode
	fs.IntVar(&m.First, "first", 0, "sample: events kept per conversation, reason and window (default 100)")
	fs.IntVar(&m.Then, "then", 0, "sample: then keep 1 in this many (default 1000)")
	fs.DurationVar(&m.Window, "window", 0, "sample: the window (default 1m)")
	pos, err := parseCommand(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "usage: sluice %s full|sample|off|sync [--first N] [--then M] [--window D]\n", name)
		return errUsage
	}
	if m.Name, err = errorlog.ParseModeName(pos[0]); err != nil {
		fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
		return errUsage
	}
	if m.Name != errorlog.ModeSample {
		var set []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "first" || f.Name == "then" || f.Name == "window" {
				set = append(set, "--"+f.Name)
			}
		})
		if len(set) > 0 {
			fmt.Fprintf(stderr, "sluice %s: %s: for sample mode only\n", name, strings.Join(set, ", "))
			return errUsage
		}
	}
	if err := m.Validate(); err != nil {
		fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
		return errUsage
	}
	req, err := json.Marshal(m)
	if err != nil {
		return err
	}
	body, err := o.call(ctx, http.MethodPut, "/v1/admin/errorlog", req)
	if err != nil {
		return err
	}
	if o.json {
		return writeIndented(stdout, body)
	}
	var st control.ErrorLogStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("PUT /v1/admin/errorlog: %w", err)
	}
	prev := "?"
	if st.Previous != nil {
		prev = st.Previous.String()
	}
	_, err = fmt.Fprintf(stdout, "error log mode: %s -> %s (revision %d, by %s)\n", prev, st.Mode, st.Revision, st.UpdatedBy)
	return err
}

func printErrorLogStatus(w io.Writer, st control.ErrorLogStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "mode\t%s\n", st.Mode.Name)
	if st.Mode.Name == errorlog.ModeSample {
		d := st.Mode.WithDefaults()
		fmt.Fprintf(tw, "first\t%d per conversation, reason and window\n", d.First)
		fmt.Fprintf(tw, "then\t1 in %d\n", d.Then)
		fmt.Fprintf(tw, "window\t%v\n", d.Window)
	}
	if st.Revision == 0 {
		fmt.Fprintf(tw, "updated\tnever (the default)\n")
	} else {
		fmt.Fprintf(tw, "updated by\t%s\n", st.UpdatedBy)
		fmt.Fprintf(tw, "updated at\t%s (%s ago)\n", st.UpdatedAt.Local().Format(time.RFC3339), time.Since(st.UpdatedAt).Round(time.Second))
		fmt.Fprintf(tw, "revision\t%d\n", st.Revision)
	}
	if st.Previous != nil {
		fmt.Fprintf(tw, "previous\t%s\n", st.Previous)
	}
	return tw.Flush()
}

func ctlErrorsTop(ctx context.Context, o *ctlOptions, name string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(name, stderr)
	o.register(fs)
	window := fs.Duration("window", control.DefaultTopWindow, "how far back to count")
	limit := fs.Int("limit", control.DefaultTopLimit, "how many conversations to list")
	if pos, err := parseCommand(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		fmt.Fprintf(stderr, "sluice %s: unexpected arguments %q\n", name, pos)
		return errUsage
	}
	q := url.Values{"window": {window.String()}, "limit": {strconv.Itoa(*limit)}}
	body, err := o.call(ctx, http.MethodGet, "/v1/admin/errors/top?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if o.json {
		return writeIndented(stdout, body)
	}
	var r control.TopErrorsReport
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("GET /v1/admin/errors/top: %w", err)
	}
	if len(r.Conversations) == 0 {
		_, err := fmt.Fprintf(stdout, "no undeliverable messages in the last %s\n", r.Window)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tCONVERSATION\tFAILURES\tREASONS")
	for _, c := range r.Conversations {
		reasons := make([]string, len(c.Reasons))
		for i, rc := range c.Reasons {
			reasons[i] = fmt.Sprintf("%s=%d", rc.Reason, rc.Count)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", c.Tenant, c.Conversation, c.Total, strings.Join(reasons, " "))
	}
	return tw.Flush()
}

// ctlTimeout bounds one request to the API.
const ctlTimeout = 30 * time.Second

// call sends one request to the API and returns the body of a 2xx answer;
// any other answer is an error carrying the problem document's detail.
func (o *ctlOptions) call(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	base, err := url.Parse(o.apiURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("--api-url %q: want http://host:port or https://host:port", o.apiURL)
	}
	target := strings.TrimRight(o.apiURL, "/") + path
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if o.key != "" {
		req.Header.Set("Authorization", "Bearer "+o.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is sluice running there? set --api-url or SLUICE_API_URL)", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, apiError(method, path, resp.StatusCode, data)
	}
	return data, nil
}

// apiError describes an answer other than 2xx, from its problem document if
// it has one.
func apiError(method, path string, status int, body []byte) error {
	msg := fmt.Sprintf("%s %s: %d %s", method, path, status, http.StatusText(status))
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		msg += ": " + cmp.Or(p.Detail, p.Title)
	} else if s := strings.TrimSpace(string(body)); s != "" && len(s) < 512 {
		msg += ": " + s
	}
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		msg += " (an API key with the admin scope: --key or SLUICE_API_KEY)"
	}
	return errors.New(msg)
}

// writeIndented prints a JSON body indented, ending with a newline.
func writeIndented(w io.Writer, body []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("the API answered something other than JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}
