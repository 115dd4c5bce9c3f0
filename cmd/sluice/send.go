package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice/dispatch"
	"github.com/sluicehq/sluice/wire"
)

// maxSendCount bounds `sluice send --count`: the rows are sent as one
// request body; a larger burst is the load test's job.
const maxSendCount = 1_000_000

// runSend implements `sluice send`: activations for a first message against
// `make run` or a quick burst, sent through the campaign API so that they are
// accepted, authorized and counted exactly as a client's are
// (accepted = delivered + invalid + failed + suppressed + expired + purged holds for them too).
func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", stderr)
	o := &ctlOptions{apiURL: env("SLUICE_API_URL", defaultAPIURL), key: env("SLUICE_API_KEY", "")}
	o.register(fs)
	conv := fs.String("conversation", "hello", "conversation id (in the API key's tenant; under 'make run', tenant demo)")
	create := fs.Bool("create", false, "create the conversation first if it does not exist, with --channel and --lane and a plain template")
	lane := fs.String("lane", string(wire.LaneTransactional), "lane of a conversation made by --create: transactional or bulk")
	channel := fs.String("channel", string(dispatch.ChannelEmail), "channel of a conversation made by --create: email, sms or push")
	to := fs.String("to", "", "recipient address (required; invalid ones are counted as invalid, which is a fine thing to try)")
	count := fs.Int("count", 1, "number of activations to send, each with its own id")
	var vars kvFlag
	fs.Var(&vars, "var", "template variable name=value (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case !wire.Lane(*lane).Valid():
		return fmt.Errorf("send: --lane must be transactional or bulk, not %q", *lane)
	case !dispatch.Channel(*channel).Valid():
		return fmt.Errorf("send: --channel must be email, sms or push, not %q", *channel)
	case !wire.ValidToken(*conv):
		return errors.New("send: --conversation must be 1-64 of [A-Za-z0-9_-]")
	case *count < 1 || *count > maxSendCount:
		return fmt.Errorf("send: --count must be from 1 to %d (use sluice loadtest for more)", maxSendCount)
	}
	if err := ensureConversation(ctx, o, *conv, *create, *channel, *lane, explicit(fs, "channel", "lane")); err != nil {
		return err
	}
	rows := make([]sendRow, *count)
	for i := range rows {
		rows[i] = sendRow{To: *to, Vars: vars.m}
	}
	body, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	data, err := o.call(ctx, http.MethodPost, "/v1/conversations/"+*conv+"/activations", body)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	var got struct {
		Accepted int64 `json:"accepted"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		return fmt.Errorf("send: unexpected answer %q: %w", data, err)
	}
	fmt.Fprintf(stdout, "accepted %d activation(s) for conversation %s\n", got.Accepted, *conv)
	if got.Accepted != int64(*count) {
		return fmt.Errorf("send: %d of %d accepted", got.Accepted, *count)
	}
	return nil
}

// sendRow is one activation row of the API's body.
type sendRow struct {
	To   string            `json:"to"`
	Vars map[string]string `json:"vars,omitempty"`
}

// ensureConversation checks that conv exists, creating it when create is
// set; an existing conversation must have the channel and lane the flags
// name explicitly.
func ensureConversation(ctx context.Context, o *ctlOptions, conv string, create bool, channel, lane string, named map[string]bool) error {
	data, err := o.call(ctx, http.MethodGet, "/v1/conversations/"+conv, nil)
	var have struct {
		Channel string `json:"channel"`
		Lane    string `json:"lane"`
	}
	switch {
	case err == nil:
		if json.Unmarshal(data, &have) != nil {
			return fmt.Errorf("send: unexpected answer %q", data)
		}
		if named["channel"] && have.Channel != channel || named["lane"] && have.Lane != lane {
			return fmt.Errorf("send: conversation %s is %s on the %s lane, not %s on %s", conv, have.Channel, have.Lane, channel, lane)
		}
		return nil
	case !strings.Contains(err.Error(), " 404 "):
		return fmt.Errorf("send: %w", err)
	case !create:
		return fmt.Errorf("send: conversation %s does not exist: add --create (with --channel and --lane) or create it with POST /v1/conversations", conv)
	}
	tpl := map[string]string{"text": "Hello from sluice send."}
	if channel == string(dispatch.ChannelEmail) {
		tpl["subject"] = "Hello from sluice"
	}
	req, _ := json.Marshal(map[string]any{"id": conv, "name": conv + " (sluice send)", "channel": channel, "lane": lane, "template": tpl})
	if _, err := o.call(ctx, http.MethodPost, "/v1/conversations", req); err != nil {
		return fmt.Errorf("send: create conversation %s: %w", conv, err)
	}
	return nil
}

// explicit reports which of the named flags were set on the command line.
func explicit(fs *flag.FlagSet, names ...string) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		for _, n := range names {
			if f.Name == n {
				set[n] = true
			}
		}
	})
	return set
}

// kvFlag collects repeated name=value flags.
type kvFlag struct{ m map[string]string }

func (k *kvFlag) String() string { return fmt.Sprint(k.m) }

func (k *kvFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", s)
	}
	if k.m == nil {
		k.m = map[string]string{}
	}
	k.m[name] = value
	return nil
}
