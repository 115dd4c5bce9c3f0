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

Credentials (--key): [operator] commands need an operator key (sluice ctl
apikey create --operator); [admin] commands take an operator key or a tenant's
admin key, which acts on its own tenant only (another tenant's conversation
is "not found"). sluice dev needs no key: its keyless identity may do both.

commands:
  status                         [operator] the whole deployment: the NATS
                                 cluster (peers, each stream's leader,
                                 replicas and lag), every process's
                                 heartbeat (version, roles, lane load, error
                                 log and provider breakers), each lane's
                                 pending and ack-pending, the error log
                                 (mode, writer breakers, spill depth,
                                 partitions ahead), held conversations,
                                 intake, channels, PostgreSQL. Works while
                                 PostgreSQL is down (those items say
                                 unavailable)
  errorlog show                  [operator] the error log's mode and its last
                                 change
  errorlog set MODE [--first N] [--then M] [--window D]
                                 [operator] change the mode for the whole
                                 fleet. MODE is
                                 full (every event a row), sample (per
                                 conversation and reason, the first N events of
                                 each window D, then 1 in M; defaults 100, 1000,
                                 1m), off (counters only) or sync (one INSERT per
                                 event, the legacy design)
  errors top [--window 5m] [--limit 20]
                                 [operator] the conversations with the most undeliverable
                                 messages over the window, with their reasons
  conversation pause|resume|stop TENANT ID [--reason TEXT]
                                 [admin] pause (queued messages wait), resume (also
                                 ends a quarantine) or stop a conversation;
                                 stop is final and purges its queued messages,
                                 counted as purged
  conversation show TENANT ID    [admin] a conversation's control state
  conversation list [--state paused|quarantined|stopped|active]
                                 [admin] conversations whose state was set
                                 (a tenant's admin key: its own only)
  intake show|pause|resume       [operator] while intake is paused the API answers 503
                                 with Retry-After; workers keep draining
  channel list                   [operator] each channel, enabled or disabled
  channel disable|enable NAME    [operator] a disabled channel's messages wait (email,
                                 sms or push); they are not failed
  apikey ...                     manage API keys, operator keys included
                                 (sluice ctl apikey -h); talks to Postgres
                                 directly: needs the database, not a key

flags, before or after the command:
  --api-url URL   the API (SLUICE_API_URL, default ` + defaultAPIURL + `)
  --key KEY       an operator key, or a tenant's admin key for conversation
                  commands (SLUICE_API_KEY; sluice dev needs none)
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
	fs.Var(secretFlag{&o.key}, "key", "an operator key, or a tenant's admin key for conversation commands (SLUICE_API_KEY)")
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
	if cmd[0] == "status" {
		return ctlStatus(ctx, o, cmd[1:], stdout, stderr)
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
	case "conversation pause", "conversation resume", "conversation stop", "conversation show":
		return ctlConversation(ctx, o, name, sub, cmd[2:], stdout, stderr)
	case "conversation list":
		return ctlConversationList(ctx, o, name, cmd[2:], stdout, stderr)
	case "intake show", "intake pause", "intake resume":
		return ctlIntake(ctx, o, name, sub, cmd[2:], stdout, stderr)
	case "channel list":
		return ctlChannelList(ctx, o, name, cmd[2:], stdout, stderr)
	case "channel disable", "channel enable":
		return ctlChannel(ctx, o, name, sub, cmd[2:], stdout, stderr)
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

// callDecode calls the API and, with --json, prints its answer as it is
// (printed true); otherwise it decodes the answer into a T for a table.
func callDecode[T any](ctx context.Context, o *ctlOptions, method, path string, in []byte, stdout io.Writer) (v T, printed bool, err error) {
	body, err := o.call(ctx, method, path, in)
	if err != nil {
		return v, false, err
	}
	if o.json {
		return v, true, writeIndented(stdout, body)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, false, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return v, false, nil
}

// parseNoArgs parses the common flags of a command that takes no positional
// arguments.
func (o *ctlOptions) parseNoArgs(name string, args []string, stderr io.Writer) error {
	fs := newFlagSet(name, stderr)
	o.register(fs)
	pos, err := parseCommand(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fmt.Fprintf(stderr, "sluice %s: unexpected arguments %q\n", name, pos)
		return errUsage
	}
	return nil
}

func ctlErrorLogShow(ctx context.Context, o *ctlOptions, name string, args []string, stdout, stderr io.Writer) error {
	if err := o.parseNoArgs(name, args, stderr); err != nil {
		return err
	}
	st, printed, err := callDecode[control.ErrorLogStatus](ctx, o, http.MethodGet, "/v1/admin/errorlog", nil, stdout)
	if err != nil || printed {
		return err
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
	st, printed, err := callDecode[control.ErrorLogStatus](ctx, o, http.MethodPut, "/v1/admin/errorlog", req, stdout)
	if err != nil || printed {
		return err
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
	r, printed, err := callDecode[control.TopErrorsReport](ctx, o, http.MethodGet, "/v1/admin/errors/top?"+q.Encode(), nil, stdout)
	if err != nil || printed {
		return err
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
	case http.StatusUnauthorized:
		msg += " (an operator key, or a tenant's admin key for conversation commands: --key or SLUICE_API_KEY)"
	case http.StatusForbidden:
		msg += " (this command needs an operator key: sluice ctl apikey create --operator; a tenant's admin key only acts on its own conversations)"
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

func ctlConversation(ctx context.Context, o *ctlOptions, name, verb string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(name, stderr)
	o.register(fs)
	reason := fs.String("reason", "", "why, recorded with the change")
	pos, err := parseCommand(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fmt.Fprintf(stderr, "usage: sluice %s TENANT ID\n", name)
		return errUsage
	}
	path := "/v1/admin/conversations/" + url.PathEscape(pos[0]) + "/" + url.PathEscape(pos[1])
	method := http.MethodGet
	var req []byte
	if verb != "show" {
		method, path = http.MethodPost, path+"/"+verb
		if req, err = json.Marshal(map[string]string{"reason": *reason}); err != nil {
			return err
		}
	} else if *reason != "" {
		fmt.Fprintf(stderr, "sluice %s: --reason is for changes\n", name)
		return errUsage
	}
	body, err := o.call(ctx, method, path, req)
	if err != nil {
		return err
	}
	if o.json {
		return writeIndented(stdout, body)
	}
	var ci control.ConversationInfo
	if err := json.Unmarshal(body, &ci); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	switch {
	case verb == "show":
		return printConversations(stdout, []control.ConversationInfo{ci})
	case ci.Purged != nil:
		_, err = fmt.Fprintf(stdout, "conversation %s/%s: %s -> %s, %d queued messages purged\n", ci.Tenant, ci.Conversation, ci.Previous, ci.State, *ci.Purged)
	default:
		_, err = fmt.Fprintf(stdout, "conversation %s/%s: %s -> %s\n", ci.Tenant, ci.Conversation, ci.Previous, ci.State)
	}
	return err
}

func ctlConversationList(ctx context.Context, o *ctlOptions, name string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(name, stderr)
	o.register(fs)
	state := fs.String("state", "", "only this state: paused, quarantined, stopped or active")
	if pos, err := parseCommand(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		fmt.Fprintf(stderr, "sluice %s: unexpected arguments %q\n", name, pos)
		return errUsage
	}
	path := "/v1/admin/conversations"
	if *state != "" {
		path += "?" + url.Values{"state": {*state}}.Encode()
	}
	body, err := o.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if o.json {
		return writeIndented(stdout, body)
	}
	var l control.ConversationList
	if err := json.Unmarshal(body, &l); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if len(l.Conversations) == 0 {
		_, err := fmt.Fprintln(stdout, "no conversations")
		return err
	}
	return printConversations(stdout, l.Conversations)
}

func printConversations(w io.Writer, list []control.ConversationInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tCONVERSATION\tSTATE\tBY\tAT\tREASON")
	for _, c := range list {
		at := "-"
		if c.UpdatedAt != nil {
			at = c.UpdatedAt.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Tenant, c.Conversation, c.State, cmp.Or(c.UpdatedBy, "-"), at, c.Reason)
	}
	return tw.Flush()
}

func ctlIntake(ctx context.Context, o *ctlOptions, name, verb string, args []string, stdout, stderr io.Writer) error {
	if err := o.parseNoArgs(name, args, stderr); err != nil {
		return err
	}
	method := http.MethodGet
	var req []byte
	if verb != "show" {
		method = http.MethodPut
		req, _ = json.Marshal(map[string]bool{"paused": verb == "pause"})
	}
	body, err := o.call(ctx, method, "/v1/admin/intake", req)
	if err != nil {
		return err
	}
	if o.json {
		return writeIndented(stdout, body)
	}
	var ii control.IntakeInfo
	if err := json.Unmarshal(body, &ii); err != nil {
		return fmt.Errorf("%s /v1/admin/intake: %w", method, err)
	}
	state := "running"
	if ii.Paused {
		state = "paused (the API answers 503 to new activations)"
	}
	if ii.UpdatedAt != nil {
		state += fmt.Sprintf(", since %s by %s", ii.UpdatedAt.Local().Format(time.RFC3339), ii.UpdatedBy)
	}
	_, err = fmt.Fprintf(stdout, "intake: %s\n", state)
	return err
}

func ctlChannelList(ctx context.Context, o *ctlOptions, name string, args []string, stdout, stderr io.Writer) error {
	if err := o.parseNoArgs(name, args, stderr); err != nil {
		return err
	}
	l, printed, err := callDecode[control.ChannelList](ctx, o, http.MethodGet, "/v1/admin/channels", nil, stdout)
	if err != nil || printed {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tSTATE\tBY\tAT")
	for _, c := range l.Channels {
		state, at := "enabled", "-"
		if c.Disabled {
			state = "disabled"
		}
		if c.UpdatedAt != nil {
			at = c.UpdatedAt.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Channel, state, cmp.Or(c.UpdatedBy, "-"), at)
	}
	return tw.Flush()
}

func ctlChannel(ctx context.Context, o *ctlOptions, name, verb string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(name, stderr)
	o.register(fs)
	pos, err := parseCommand(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "usage: sluice %s email|sms|push\n", name)
		return errUsage
	}
	path := "/v1/admin/channels/" + url.PathEscape(pos[0])
	req, _ := json.Marshal(map[string]bool{"disabled": verb == "disable"})
	body, err := o.call(ctx, http.MethodPut, path, req)
	if err != nil {
		return err
	}
	if o.json {
		return writeIndented(stdout, body)
	}
	var ci control.ChannelInfo
	if err := json.Unmarshal(body, &ci); err != nil {
		return fmt.Errorf("PUT %s: %w", path, err)
	}
	state := "enabled"
	if ci.Disabled {
		state = "disabled: its messages wait in the queue"
	}
	_, err = fmt.Fprintf(stdout, "channel %s %s\n", ci.Channel, state)
	return err
}
