package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/orchestrator/control"
	"github.com/sluicehq/sluice/status"
)

// ctlStatus implements `sluice ctl status`: GET /v1/admin/status, printed
// in sections (or as JSON with --json).
func ctlStatus(ctx context.Context, o *ctlOptions, args []string, stdout, stderr io.Writer) error {
	if err := o.parseNoArgs("ctl status", args, stderr); err != nil {
		return err
	}
	r, printed, err := callDecode[status.Report](ctx, o, http.MethodGet, "/v1/admin/status", nil, stdout)
	if err != nil || printed {
		return err
	}
	return printStatus(stdout, r)
}

// printStatus writes a report as sections of aligned text; an item that
// could not be read says "unavailable" with the reason.
func printStatus(w io.Writer, r status.Report) error {
	fmt.Fprintf(w, "sluice status at %s\n", r.At.Format(time.RFC3339))
	// Each section is aligned on its own.
	for _, show := range []func(io.Writer, status.Report){printNATS, printWorkers, printLanes, printErrorLog, printControls, printPostgres, printUnavailable} {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		show(tw, r)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func printUnavailable(w io.Writer, r status.Report) {
	if len(r.Unavailable) == 0 {
		return
	}
	section(w, "UNAVAILABLE")
	for _, k := range sortedKeys(r.Unavailable) {
		fmt.Fprintf(w, "  %s\t%s\n", k, r.Unavailable[k])
	}
}

func section(w io.Writer, title string) { fmt.Fprintf(w, "\n%s\n", title) }

func printNATS(w io.Writer, r status.Report) {
	n := r.NATS
	section(w, "NATS")
	fmt.Fprintf(w, "  connected to\t%s (cluster %q) at %s\n", n.Server, n.Cluster, n.URL)
	fmt.Fprintf(w, "  known servers\t%s\n", strings.Join(n.Known, ", "))
	fmt.Fprintf(w, "  account\t%d streams, %d consumers, %d bytes stored\n", n.Streams, n.Consumers, n.Storage)
	fmt.Fprintf(w, "  PEER\tCURRENT\tOFFLINE\tLAG\tLEADS\n")
	for _, p := range n.Peers {
		fmt.Fprintf(w, "  %s\t%v\t%v\t%d\t%s\n", p.Name, p.Current, p.Offline, p.Lag, strings.Join(p.Leads, ","))
	}
	fmt.Fprintf(w, "  STREAM\tMESSAGES\tREPLICAS\tLEADER\tFOLLOWERS (current/lag)\n")
	for _, s := range r.Streams {
		var f []string
		for _, p := range s.Peers {
			f = append(f, fmt.Sprintf("%s(%v/%d)", p.Name, p.Current && !p.Offline, p.Lag))
		}
		fmt.Fprintf(w, "  %s\t%d\t%d\t%s\t%s\n", s.Name, s.Messages, s.Replicas, orDash(s.Leader), orDash(strings.Join(f, " ")))
	}
}

func printWorkers(w io.Writer, r status.Report) {
	live := 0
	for _, p := range r.Workers {
		if p.Live {
			live++
		}
	}
	section(w, fmt.Sprintf("PROCESSES (%d live, heartbeat every %s, gone after %s)", live, control.HeartbeatInterval, control.HeartbeatGoneAfter))
	fmt.Fprintf(w, "  ID\tSTATE\tHOST\tVERSION\tROLES\tSTARTED\tLOAD (in flight/workers)\tERRORLOG\tPROVIDER BREAKERS\n")
	for _, p := range r.Workers {
		state := "live"
		if !p.Live {
			state = fmt.Sprintf("gone (%.0fs)", p.AgeSeconds)
		}
		var load, provs []string
		for _, l := range p.Lanes {
			load = append(load, fmt.Sprintf("%s %d/%d", l.Lane, l.InFlight, l.Workers))
		}
		for _, pr := range p.Providers {
			provs = append(provs, pr.Name+"="+pr.Breaker)
		}
		el := ""
		if p.ErrorLogMode != "" {
			el = p.ErrorLogMode + ", breaker " + p.ErrorLogBreaker
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, state, p.Host, p.Version, strings.Join(p.Roles, "+"),
			p.StartedAt.Format(time.RFC3339), orDash(strings.Join(load, ", ")), orDash(el), orDash(strings.Join(provs, " ")))
	}
}

func printLanes(w io.Writer, r status.Report) {
	section(w, "LANES")
	fmt.Fprintf(w, "  LANE\tCONSUMERS\tQUEUED\tPENDING\tACK PENDING\tREDELIVERED\n")
	for _, l := range r.Lanes {
		fmt.Fprintf(w, "  %s\t%d\t%d\t%d\t%d\t%d\n", l.Lane, l.Consumers, l.Queued, l.Pending, l.AckPending, l.Redelivered)
	}
}

func printErrorLog(w io.Writer, r status.Report) {
	e := r.ErrorLog
	section(w, "ERROR LOG")
	mode := "unavailable"
	if e.Mode != nil {
		mode = e.Mode.Mode.String()
		if e.Mode.UpdatedBy != "" {
			mode += " (set by " + e.Mode.UpdatedBy + " at " + e.Mode.UpdatedAt.Format(time.RFC3339) + ")"
		}
	}
	fmt.Fprintf(w, "  mode\t%s\n", mode)
	var breakers []string
	for _, id := range sortedKeys(e.Breakers) {
		breakers = append(breakers, id+"="+e.Breakers[id])
	}
	fmt.Fprintf(w, "  writer breakers\t%s\n", orDash(strings.Join(breakers, " ")))
	fmt.Fprintf(w, "  spill depth\t%s\n", optional(e.SpillDepth))
	fmt.Fprintf(w, "  partitions ahead\t%s\n", optional(e.PartitionsAhead))
}

func printControls(w io.Writer, r status.Report) {
	section(w, "CONTROLS")
	intake := "unavailable"
	if r.Intake != nil {
		intake = map[bool]string{true: "PAUSED", false: "running"}[r.Intake.Paused]
	}
	fmt.Fprintf(w, "  intake\t%s\n", intake)
	var chans []string
	for _, c := range r.Channels {
		chans = append(chans, string(c.Channel)+"="+map[bool]string{true: "DISABLED", false: "enabled"}[c.Disabled])
	}
	fmt.Fprintf(w, "  channels\t%s\n", orDash(strings.Join(chans, " ")))
	for _, held := range []struct {
		name string
		list []control.ConversationInfo
	}{{"quarantined", r.Conversations.Quarantined}, {"paused", r.Conversations.Paused}} {
		fmt.Fprintf(w, "  %s\t%d\n", held.name, len(held.list))
		for _, c := range held.list {
			fmt.Fprintf(w, "    %s/%s\t%s (by %s)\n", c.Tenant, c.Conversation, orDash(c.Reason), c.UpdatedBy)
		}
	}
}

func printPostgres(w io.Writer, r status.Report) {
	p := r.Postgres
	section(w, "POSTGRES")
	reach := "UNREACHABLE"
	if p.Reachable {
		reach = "reachable, system identifier " + p.SystemIdentifier
	}
	fmt.Fprintf(w, "  database\t%s\n", reach)
	fmt.Fprintf(w, "  bound to\t%s\n", orDash(p.BoundTo))
}

func optional[T any](v *T) string {
	if v == nil {
		return "unavailable"
	}
	return fmt.Sprint(*v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
