//go:build fleet

package fleettest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// sluiceBin is SLUICE_FLEET_BIN, or the sluice binary built once for this
// test binary (into a directory removed when the process ends).
func sluiceBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLUICE_FLEET_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-fleet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sluice")
		out, err := exec.Command("go", "build", "-o", builtBin, "github.com/sluicehq/sluice/cmd/sluice").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// proc is one `sluice serve` process, restartable with the same arguments.
type proc struct {
	t        *testing.T
	name     string
	bin      string
	args     []string
	httpAddr string
	logFile  string
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd has been reaped
	starts   int
}

func newProc(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, bin: bin, name: name, httpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		logFile: filepath.Join(t.TempDir(), name+".log")}
	p.args = append(append([]string{"serve"}, args...), "--http-addr", p.httpAddr)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			logTail(t, p.logFile, 25)
		}
	})
	return p
}

// start runs the process and waits until /readyz answers 200.
func (p *proc) start() {
	p.t.Helper()
	log, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer log.Close()
	p.starts++
	fmt.Fprintf(log, "=== start %d of %s\n", p.starts, p.name)
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env = append(os.Environ(), "SLUICE_ERRORLOG_MASK_KEY=00112233445566778899aabbccddeeff")
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.exited = make(chan struct{})
	go func(c *exec.Cmd, exited chan struct{}) { _ = c.Wait(); close(exited) }(p.cmd, p.exited)
	p.waitReady()
}

func (p *proc) waitReady() {
	p.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	poll(p.t, 90*time.Second, p.name+" to be ready", func() (bool, string) {
		select {
		case <-p.exited:
			logTail(p.t, p.logFile, 20)
			p.t.Fatalf("%s exited during start", p.name)
		default:
		}
		resp, err := client.Get("http://" + p.httpAddr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// kill9 kills the process with SIGKILL: no drain, no flush, no acks.
func (p *proc) kill9() {
	p.t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		p.t.Fatalf("kill -9 %s: %v", p.name, err)
	}
	p.waitGone(10 * time.Second)
	p.cmd = nil
}

// stop asks the process to drain and exit (SIGTERM), then kills it after 30s.
func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	if !p.waitGone(30 * time.Second) {
		_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		p.waitGone(10 * time.Second)
	}
	p.cmd = nil
}

// waitGone waits up to d for the process to have exited and been reaped.
func (p *proc) waitGone(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}
