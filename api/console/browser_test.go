package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// EnvScreenshots names the directory the browser test writes its
// screenshots to (default: the test's artifact directory). `make
// console-screenshots` points it at docs/console.
const EnvScreenshots = "SLUICE_CONSOLE_SCREENSHOTS"

// EnvRequireBrowser, set by `make test`, turns a missing Chromium from a
// skip into a failure.
const EnvRequireBrowser = "SLUICE_REQUIRE_BROWSER"

// chromium returns the path of Debian's chromium (or another Chrome).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(EnvRequireBrowser) != "" {
		t.Fatal("no Chromium found: make test installs Debian's chromium (as root), or: sudo apt-get install -y chromium")
	}
	t.Skip("no Chromium found (sudo apt-get install -y chromium); the browser test needs it")
	return ""
}

// browser is one headless Chromium tab, with every console message,
// uncaught exception and dialog it meets recorded.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	// allowStatus lets the browser log network errors for 4xx answers, which
	// the sign-in checks cause on purpose.
	allowStatus bool

	mu       sync.Mutex
	problems []string
}

// newAllocator starts Chromium, stopped when the test ends.
func newAllocator(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.WindowSize(1280, 820), chromedp.Flag("hide-scrollbars", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	ctx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	return ctx
}

// newBrowser opens a tab: in the browser of alloc, or (isolated) in a new
// browser context of parent's browser, with cookies of its own.
func newBrowser(t *testing.T, parent context.Context, base string, isolated bool) *browser {
	t.Helper()
	b := &browser{t: t, base: base}
	opts := []chromedp.ContextOption{chromedp.WithListener(b.listen)}
	if isolated {
		opts = append(opts, chromedp.WithNewBrowserContext())
	}
	ctx, cancel := chromedp.NewContext(parent, opts...)
	t.Cleanup(cancel)
	b.ctx = ctx
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// listen records what the page must never do: write an error to the
// console, throw, open a dialog (alert() of injected script).
func (b *browser) listen(ev any) {
	var p string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			p = fmt.Sprintf("console.%s: %v", ev.Type, argsText(ev.Args))
		}
	case *runtime.EventExceptionThrown:
		p = "uncaught exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			p += " " + ev.ExceptionDetails.Exception.Description
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			if b.allowStatus && ev.Entry.Source == log.EntrySourceNetwork && strings.Contains(ev.Entry.Text, "status of 4") {
				return
			}
			p = fmt.Sprintf("browser log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	case *page.EventJavascriptDialogOpening:
		p = fmt.Sprintf("a JavaScript %s dialog opened: %q", ev.Type, ev.Message)
	}
	if p != "" {
		b.mu.Lock()
		b.problems = append(b.problems, p)
		b.mu.Unlock()
	}
}

func argsText(args []*runtime.RemoteObject) string {
	var parts []string
	for _, a := range args {
		if len(a.Value) > 0 {
			parts = append(parts, string(a.Value))
		} else {
			parts = append(parts, a.Description)
		}
	}
	return strings.Join(parts, " ")
}

// clean fails the test for every problem met so far.
func (b *browser) clean(step string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("%s: %s", step, p)
	}
	b.problems = nil
}

// open navigates to path and waits for the page's main element.
func (b *browser) open(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(b.base+path), chromedp.WaitReady("main")); err != nil {
		b.t.Fatalf("open %s: %v", path, err)
	}
}

// do runs actions on the tab.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression on the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := tryEval[T](b, expr)
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func tryEval[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// navigating reports an evaluation that met the page being replaced (a
// form's submission, a redirect): asked again, it answers from the new page.
func navigating(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "navigated or closed") || strings.Contains(msg, "context was destroyed") ||
		strings.Contains(msg, "Cannot find context")
}

// waitJS polls expr on the page every 100ms until it is true; it returns
// when it became true, or fails after timeout.
func (b *browser) waitJS(what, expr string, timeout time.Duration) time.Time {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := tryEval[bool](b, expr)
		if err != nil && !navigating(err) {
			b.t.Fatalf("evaluate %s: %v", expr, err)
		}
		if ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %v waiting for %s (%s); at %s: %.300s", timeout, what, expr,
				eval[string](b, `location.href`), eval[string](b, `document.body ? document.body.innerText : ''`))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shot writes a screenshot of the viewport as <name>.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	dir := os.Getenv(EnvScreenshots)
	if dir == "" {
		dir = b.t.ArtifactDir()
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
