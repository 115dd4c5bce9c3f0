package loadtest

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report file names inside the report directory.
const (
	ReportJSON = "report.json"
	ReportHTML = "report.html"
)

// WriteReport writes report.json and report.html into dir, creating it.
func WriteReport(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("loadtest: report dir: %w", err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("loadtest: report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ReportJSON), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("loadtest: report: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, ReportHTML))
	if err != nil {
		return fmt.Errorf("loadtest: report: %w", err)
	}
	if err := writeHTML(f, rep); err != nil {
		f.Close()
		return fmt.Errorf("loadtest: report: %w", err)
	}
	return f.Close()
}

// serverShare words the separate nats-server process's share of a CPU
// figure, or nothing with the embedded server.
func serverShare(secs float64) string {
	if secs <= 0 {
		return ""
	}
	return fmt.Sprintf(", of which nats-server %.2fs", secs)
}

// smtpSummary prints smtp-source's rates, each mode's ratios to them and
// the stack's CPU per 1,000 delivered.
func smtpSummary(w io.Writer, rep *Report) {
	for _, src := range []*SMTPSourceReport{rep.SMTPSource, rep.SMTPSourceKeep} {
		if src != nil {
			fmt.Fprintf(w, "smtp-source %s: %.0f msgs/s (%d messages, %.1fs, %.2f CPU s)\n", strings.Join(src.Args, " "), src.MsgsPerSec, src.Messages, src.Seconds, src.CPUSeconds)
		}
	}
	for _, m := range rep.Modes {
		if m.RatioToSMTPSource > 0 {
			fmt.Fprintf(w, "%s: %.0f msgs/s over %d SMTP connections = %.2f of smtp-source (new connection per message), %.2f of smtp-source -d (connections kept)\n",
				m.Mode, m.MsgsPerSec, rep.SMTPConns, m.RatioToSMTPSource, m.RatioToSMTPSourceKeep)
		}
		if c := m.CPU; c != nil {
			natsPart := ""
			if c.NATSSeconds > 0 {
				natsPart = fmt.Sprintf(", nats-server %.2fs", c.NATSSeconds)
			}
			fmt.Fprintf(w, "%s: CPU %.2fs (process %.2fs%s, postgres %.2fs) = %.3f s per 1,000 handled, %.3f s per 1,000 delivered\n",
				m.Mode, c.TotalSeconds, c.ProcessSeconds, natsPart, c.PostgresSeconds, c.PerThousandHandled, c.PerThousandDelivered)
		}
	}
}

// Summary writes the short text summary of rep.
func Summary(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "sluice loadtest: scenario %s, %d messages (%.0f%% invalid), %d conversations, trickle %.0f/s, seed %d\n",
		rep.Scenario, rep.Messages, rep.InvalidRatio*100, rep.Conversations, rep.TrickleRate, rep.Seed)
	fmt.Fprintf(w, "target: %s; quarantine: %s; %d CPUs %s\n", rep.Target, rep.Quarantine, rep.Machine.CPUs, rep.Machine.CPUModel)
	if rep.Machine.Postgres != "" {
		fmt.Fprintf(w, "Postgres %s\n", rep.Machine.Postgres)
	}
	if rep.DuplicateWindowSeconds > 0 {
		fmt.Fprintf(w, "activation streams' duplicate window: %v\n", time.Duration(rep.DuplicateWindowSeconds*float64(time.Second)))
	}
	if rep.PublishRate > 0 {
		fmt.Fprintf(w, "publishing paced at %.0f msgs/s (ceiling included)\n", rep.PublishRate)
	}
	if rep.Machine.GOGC != "" || rep.Machine.GOMEMLIMIT != "" {
		fmt.Fprintf(w, "Go runtime: GOGC=%q GOMEMLIMIT=%q from the environment\n", rep.Machine.GOGC, rep.Machine.GOMEMLIMIT)
	}
	if rep.NATSServer != "" {
		fmt.Fprintf(w, "NATS: each server a separate process of %s\n", rep.NATSServer)
	}
	if rep.BulkConsumersInMemory {
		fmt.Fprintln(w, "conversation consumers' state kept in memory (--bulk-consumers-in-memory)")
	}
	if rep.CeilingMsgsPerSec > 0 {
		fmt.Fprintf(w, "raw JetStream ceiling: %.0f msgs/s (%d messages, %.1fs, CPU %.2fs%s)\n", rep.CeilingMsgsPerSec, rep.CeilingMessages, rep.CeilingSeconds, rep.CeilingCPUSeconds, serverShare(rep.CeilingNATSSeconds))
	}
	for _, r := range rep.References {
		fmt.Fprintf(w, "reference, %s: %.0f msgs/s (%d consumers, %.1fs, CPU %.2fs%s)\n", referenceName(r.Shape), r.MsgsPerSec, r.Consumers, r.Seconds, r.CPUSeconds, serverShare(r.NATSSeconds))
	}
	fmt.Fprintf(w, "%-8s %9s %9s %10s %7s %9s %10s %9s %9s %9s %10s %11s %9s %s\n",
		"mode", "messages", "drain_s", "msgs/s", "ratio", "ratio_adj", "ratio_conv", "tx_p50ms", "tx_p99ms", "base_p99", "after_max", "error_rows", "rss_MiB", "accounting")
	for _, m := range rep.Modes {
		ratio, ratioAdj, ratioConv := fmtRatio(m.RatioToCeiling), fmtRatio(m.RatioToAdjacent), fmtRatio(m.RatioToPerConversation)
		base := "-"
		if m.TransactionalBase != nil && m.TransactionalBase.Count > 0 {
			base = fmt.Sprintf("%.1f", m.TransactionalBase.P99)
		}
		after := "-"
		if m.TransactionalAfter != nil && m.TransactionalAfter.Count > 0 {
			after = fmt.Sprintf("%.1f", m.TransactionalAfter.Max)
		}
		acc := "exact"
		if !m.AccountingExact {
			acc = "NOT EXACT"
		}
		fmt.Fprintf(w, "%-8s %9d %9.1f %10.0f %7s %9s %10s %9s %9s %9s %10s %11d %9.0f %s\n",
			m.Mode, m.Messages, m.DrainSeconds, m.MsgsPerSec, ratio, ratioAdj, ratioConv, fmtMs(m.TransactionalP50Ms), fmtMs(m.TransactionalP99Ms), base, after,
			m.ErrorRowsWritten, float64(m.PeakRSSBytes)/(1<<20), acc)
	}
	for _, m := range rep.Modes {
		if m.RatioToAdjacent > 0 {
			fmt.Fprintf(w, "%s: the ceiling measured just before it %.0f msgs/s, just after %.0f (ratio_adj: to their mean)\n", m.Mode, m.CeilingBeforeMsgsPerSec, m.CeilingAfterMsgsPerSec)
		}
	}
	smtpSummary(w, rep)
	for _, m := range rep.Modes {
		for _, q := range m.Quarantine {
			fmt.Fprintf(w, "%s: %s quarantined %.1fs after activation, %d processed before, %d purged\n",
				m.Mode, q.Conversation, q.AfterSeconds, q.ProcessedBefore, q.Purged)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// referenceName says what a CeilingReport's shape measures.
func referenceName(shape string) string {
	switch ceilingShape(shape) {
	case ceilingOneLimits:
		return "one consumer, Limits retention (the bulk stream's; acks remove nothing)"
	case ceilingPerConversation:
		return "one consumer per conversation, Limits retention (the bulk lane's topology)"
	case ceilingBacklog:
		return "the whole burst queued first, then consumed"
	}
	return shape
}

func fmtMs(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *p)
}

// series is one line of a chart.
type series struct {
	Name   string
	Points []Point
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"}

// svgChart renders a line chart as inline SVG.
func svgChart(title, yUnit string, ss []series, logY bool) template.HTML {
	const w, h, left, right, top, bottom = 760.0, 280.0, 70.0, 150.0, 30.0, 40.0
	var maxX, maxY float64
	minY := math.Inf(1)
	for _, s := range ss {
		for _, p := range s.Points {
			maxX = math.Max(maxX, p.T)
			maxY = math.Max(maxY, p.V)
			if p.V > 0 {
				minY = math.Min(minY, p.V)
			}
		}
	}
	if maxX == 0 {
		maxX = 1
	}
	if maxY == 0 {
		maxY = 1
	}
	if math.IsInf(minY, 1) || !logY {
		minY = 0
	}
	logY = logY && minY > 0 && maxY/minY > 20
	ymap := func(v float64) float64 {
		if logY {
			v = math.Max(v, minY)
			return top + (h-top-bottom)*(1-(math.Log10(v)-math.Log10(minY))/(math.Log10(maxY)-math.Log10(minY)))
		}
		return top + (h-top-bottom)*(1-v/maxY)
	}
	xmap := func(t float64) float64 { return left + (w-left-right)*t/maxX }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`, w, h, w, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="13" font-weight="bold">%s</text>`, left, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, left, top, w-left-right, h-top-bottom)
	for i := 0; i <= 4; i++ {
		var v float64
		if logY {
			v = math.Pow(10, math.Log10(minY)+(math.Log10(maxY)-math.Log10(minY))*float64(i)/4)
		} else {
			v = maxY * float64(i) / 4
		}
		y := ymap(v)
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`,
			left, w-right, y, y, left-4, y+4, humanNum(v))
	}
	for i := 0; i <= 5; i++ {
		t := maxX * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%.0fs</text>`, xmap(t), h-bottom+16, t)
	}
	fmt.Fprintf(&b, `<text x="12" y="%.0f" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`, (h)/2, h/2, template.HTMLEscapeString(yUnit))
	for i, s := range ss {
		color := palette[i%len(palette)]
		var pts strings.Builder
		for _, p := range s.Points {
			fmt.Fprintf(&pts, "%.1f,%.1f ", xmap(p.T), ymap(p.V))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, pts.String())
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="3" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`,
			w-right+10, top+8+float64(i)*16, color, w-right+26, top+12+float64(i)*16, template.HTMLEscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func humanNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 10 || v == 0:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":  fmtMs,
	"mib": func(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) },
	"f1":  func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"f0":  func(v float64) string { return fmt.Sprintf("%.0f", v) },
	"f2":  func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"ref": referenceName,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice loadtest: {{.R.Scenario}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}.bad{color:#b00;font-weight:bold}</style>
</head><body>
<h1>sluice loadtest: {{.R.Scenario}}</h1>
<p>{{.R.Messages}} messages, {{f0 .Pct}}% invalid, {{.R.Conversations}} conversations, transactional trickle {{f0 .R.TrickleRate}}/s, seed {{.R.Seed}}.
Target: {{.R.Target}}. Quarantine: {{.R.Quarantine}}. Machine: {{.R.Machine.CPUs}} CPUs {{.R.Machine.CPUModel}}, {{mib .R.Machine.MemBytes}} MiB, {{.R.Machine.GoVersion}}{{if .R.Machine.GOGC}} GOGC={{.R.Machine.GOGC}}{{end}}{{if .R.Machine.GOMEMLIMIT}} GOMEMLIMIT={{.R.Machine.GOMEMLIMIT}}{{end}}, Postgres {{.R.Machine.Postgres}}. Started {{.R.StartedAt.Format "2006-01-02 15:04:05Z07:00"}}.</p>
{{if gt .R.CeilingMsgsPerSec 0.0}}<p>Raw JetStream ceiling (publish + consume-with-ack, no processing): <b>{{f0 .R.CeilingMsgsPerSec}} msgs/s</b> ({{.R.CeilingMessages}} messages in {{f1 .R.CeilingSeconds}}s, CPU {{f2 .R.CeilingCPUSeconds}}s).</p>{{end}}
{{range .R.References}}<p>Reference, {{ref .Shape}}: {{f0 .MsgsPerSec}} msgs/s ({{.Consumers}} consumers, {{f1 .Seconds}}s, CPU {{f2 .CPUSeconds}}s).</p>
{{end}}<table><tr><th>mode</th><th>messages</th><th>publish s</th><th>drain s</th><th>msgs/s</th><th>ratio to ceiling</th><th>ratio to adjacent ceilings</th><th>ratio to per-conversation</th><th>tx p50 ms</th><th>tx p99 ms</th><th>tx max ms</th><th>baseline p99 ms</th><th>after-drain max ms</th><th>error rows</th><th>rows/s</th><th>PG write s</th><th>peak RSS MiB</th><th>goroutines</th><th>accounting</th></tr>
{{range .R.Modes}}<tr><td>{{.Mode}}</td><td>{{.Messages}}</td><td>{{f1 .PublishSeconds}}</td><td>{{f1 .DrainSeconds}}</td><td>{{f0 .MsgsPerSec}}</td><td>{{f2 .RatioToCeiling}}</td><td>{{f2 .RatioToAdjacent}}</td><td>{{f2 .RatioToPerConversation}}</td><td>{{ms .TransactionalP50Ms}}</td><td>{{ms .TransactionalP99Ms}}</td><td>{{ms .TransactionalMaxMs}}</td><td>{{if .TransactionalBase}}{{f1 .TransactionalBase.P99}}{{else}}-{{end}}</td><td>{{if .TransactionalAfter}}{{f1 .TransactionalAfter.Max}}{{else}}-{{end}}</td><td>{{.ErrorRowsWritten}}</td><td>{{f0 .ErrorRowsPerSec}}</td><td>{{ms .ErrorLogWriteSeconds}}</td><td>{{mib .PeakRSSBytes}}</td><td>{{.PeakGoroutines}}</td><td>{{if .AccountingExact}}exact{{else}}<span class="bad">not exact</span>{{end}}</td></tr>
{{end}}</table>
<h2>Throughput</h2>{{.Throughput}}
<h2>Transactional latency (p99 per second)</h2>{{.Latency}}
<h2>Error-log write rate</h2>{{.Rows}}
<h2>Accounting per conversation</h2>
{{range .R.Modes}}<h3>{{.Mode}}</h3><table><tr><th>conversation</th><th>accepted</th><th>delivered</th><th>invalid</th><th>failed</th><th>suppressed</th><th>expired</th><th>purged</th><th>exact</th></tr>
{{range .Accounting}}<tr><td>{{.Conversation}}</td><td>{{.Accepted}}</td><td>{{.Delivered}}</td><td>{{.Invalid}}</td><td>{{.Failed}}</td><td>{{.Suppressed}}</td><td>{{.Expired}}</td><td>{{.Purged}}</td><td>{{if .Exact}}yes{{else}}<span class="bad">no</span>{{end}}</td></tr>
{{end}}</table>{{end}}
{{range .R.Modes}}{{if .Quarantine}}<h2>Quarantine ({{.Mode}})</h2><table><tr><th>conversation</th><th>seconds after activation</th><th>processed before</th><th>purged</th></tr>
{{range .Quarantine}}<tr><td>{{.Conversation}}</td><td>{{f1 .AfterSeconds}}</td><td>{{.ProcessedBefore}}</td><td>{{.Purged}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{if .R.Notes}}<h2>Notes</h2><ul>{{range .R.Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p>Every figure is in report.json next to this page.</p>
</body></html>
`))

func writeHTML(w io.Writer, rep *Report) error {
	var thr, lat, rows []series
	for _, m := range rep.Modes {
		thr = append(thr, series{Name: m.Mode, Points: m.Throughput})
		if len(m.Latency) > 0 {
			p := make([]Point, len(m.Latency))
			for i, l := range m.Latency {
				p[i] = Point{T: l.T, V: l.P99}
			}
			lat = append(lat, series{Name: m.Mode, Points: p})
		}
		if len(m.ErrorRowRate) > 0 {
			rows = append(rows, series{Name: m.Mode, Points: m.ErrorRowRate})
		}
	}
	return page.Execute(w, map[string]any{
		"R":          rep,
		"Pct":        rep.InvalidRatio * 100,
		"Throughput": svgChart("Burst messages processed per second, per mode (x: seconds since the mode started)", "msgs/s", thr, false),
		"Latency":    svgChart("Transactional latency p99 per second (log scale when wide)", "ms", lat, true),
		"Rows":       svgChart("Error-log rows written per second", "rows/s", rows, false),
	})
}

// fmtRatio is a ratio for the summary, "-" when not measured.
func fmtRatio(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}
