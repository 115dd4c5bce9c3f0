package loadtest

import (
	"os"
	"testing"
)

func TestProcStatReadsThisProcess(t *testing.T) {
	t.Parallel()
	// Burn some CPU so that the process's time is measurably above zero.
	x := 0
	for i := range 50_000_000 {
		x ^= i
	}
	_ = x
	ppid, cpu, ok := procStat(os.Getpid())
	if !ok {
		t.Skip("/proc not available")
	}
	if ppid != os.Getppid() {
		t.Errorf("ppid %d, want %d", ppid, os.Getppid())
	}
	if cpu <= 0 || cpu > processCPU()+0.05 {
		t.Errorf("cpu %.3fs from /proc, getrusage says %.3fs", cpu, processCPU())
	}
	if got := postgresCPU(t.TempDir()); got != 0 {
		t.Errorf("postgresCPU without a postmaster.pid: %v, want 0", got)
	}
}

func TestCPUReportPerThousand(t *testing.T) {
	t.Parallel()
	r := cpuReport(cpuSample{Process: 1, Postgres: 0.5}, cpuSample{Process: 4, Postgres: 1.5}, 100_000, 50_000)
	if r.TotalSeconds != 4 || r.PerThousandHandled != 0.04 || r.PerThousandDelivered != 0.08 {
		t.Errorf("got %+v, want total 4s, 0.04s per 1,000 handled and 0.08s per 1,000 delivered", r)
	}
	if r := cpuReport(cpuSample{}, cpuSample{Process: 1}, 0, 0); r.PerThousandHandled != 0 || r.PerThousandDelivered != 0 {
		t.Errorf("nothing handled: %+v, want no per-1,000 figures", r)
	}
}

func TestConfigValidatesSMTPSink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"SMTPConns", func(c *Config) { c.SMTPConns = -1 }},
		{"SMTPMessagesPerConn", func(c *Config) { c.SMTPMessagesPerConn = -1 }},
		{"NATSURL", func(c *Config) { c.NATSURL = "nats://127.0.0.1:4222" }},
	} {
		c := Config{Sinks: SinksSMTPSink, Messages: 10}
		tc.edit(&c)
		c.setDefaults()
		if err := c.validate(); err == nil {
			t.Errorf("%s: invalid config accepted", tc.name)
		}
	}
	c := Config{Sinks: SinksSMTPSink, Messages: 10}
	c.setDefaults()
	if err := c.validate(); err != nil || c.SMTPConns != SMTPConnsDefault {
		t.Errorf("defaults: %v, SMTPConns %d", err, c.SMTPConns)
	}
}
