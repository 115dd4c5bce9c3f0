package pglocal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDir returns a fresh directory that the postgres user can reach when the
// tests run as root (t.TempDir is mode 0700).
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startT(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	return c
}

func query[T any](t *testing.T, url, sql string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	var v T
	if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func accepts(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFindBinaries(t *testing.T) {
	dir, err := FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range serverBinaries {
		if !isExecutable(filepath.Join(dir, b)) {
			t.Errorf("%s has no %s", dir, b)
		}
	}

	_, err = candidateDirs([]string{t.TempDir()}, []string{filepath.Join(t.TempDir(), "*/bin")})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	if !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Errorf("error does not say what to install: %v", err)
	}
}

func TestCandidateDirsOrder(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "13"} {
		bin := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, b := range serverBinaries {
			if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	onPath := filepath.Join(root, "13", "bin")
	got, err := candidateDirs([]string{"", onPath}, []string{filepath.Join(root, "*/bin")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{onPath, filepath.Join(root, "15", "bin"), filepath.Join(root, "9.6", "bin")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("candidateDirs = %v, want %v (PATH first, then highest version, no duplicates)", got, want)
	}
}

func TestSameMajor(t *testing.T) {
	for _, tc := range []struct {
		server, data string
		want         bool
	}{
		{"15.8", "15", true},
		{"15", "15", true},
		{"16.1", "15", false},
		{"9.6.24", "9.6", true},
		{"9.60", "9.6", false},
	} {
		if got := sameMajor(tc.server, tc.data); got != tc.want {
			t.Errorf("sameMajor(%q, %q) = %v, want %v", tc.server, tc.data, got, tc.want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Config.Dir is required"},
		{Config{Dir: "/"}, "root directory"},
		{Config{Dir: "/tmp/x", Port: 70000}, "Config.Port"},
		{Config{Dir: "/tmp/a$b"}, "Config.Dir"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want it to mention %q", tc.cfg, err, tc.want)
		}
	}
	c, err := Config{Dir: "/tmp/sluice/.data/pg"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.LogFile != "/tmp/sluice/.data/pg.log" || c.User != "sluice" || c.Database != "sluice" {
		t.Errorf("defaults = %+v", c)
	}
}

func TestRefusesForeignDirectory(t *testing.T) {
	dir := filepath.Join(testDir(t), "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), Config{Dir: dir, Fast: true})
	if err == nil || !strings.Contains(err.Error(), "not a PostgreSQL data directory") {
		t.Fatalf("err = %v, want refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious.txt")); err != nil {
		t.Fatalf("foreign file touched: %v", err)
	}
}

func TestUnreachableDirAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the server to the postgres user")
	}
	private := filepath.Join(testDir(t), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), Config{Dir: filepath.Join(private, "pg"), Fast: true})
	if err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), private) {
		t.Fatalf("err = %v, want it to name %s", err, private)
	}
}

// TestLifecycle walks one data directory through the situations `sluice dev`
// meets: first start (initdb), restart with data kept, a second process, a crash
// that leaves the postmaster running, and a stale pid file.
func TestLifecycle(t *testing.T) {
	base := testDir(t)
	dir := filepath.Join(base, ".data", "pg")
	cfg := Config{Dir: dir, Fast: true, Logger: testLogger(t)}

	c := startT(t, cfg)
	if got := query[string](t, c.URL(), "SELECT current_user || '@' || current_database() || ' ' || host(inet_server_addr())"); got != "sluice@sluice 127.0.0.1" {
		t.Errorf("connected as %q", got)
	}
	if got := query[string](t, c.URL(), "SHOW fsync"); got != "off" {
		t.Errorf("Fast: fsync = %s", got)
	}
	if got := query[string](t, c.URL(), "SHOW unix_socket_directories"); got != "" {
		t.Errorf("unix_socket_directories = %q, want disabled", got)
	}
	if want := fmt.Sprintf("postgres://sluice@127.0.0.1:%d/sluice?sslmode=disable", c.Port()); c.URL() != want {
		t.Errorf("URL = %s, want %s", c.URL(), want)
	}
	if _, err := os.Stat(filepath.Join(base, ".data", "pg.log")); err != nil {
		t.Errorf("default log file: %v", err)
	}
	mustExec(t, c.URL(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")

	t.Run("second process is refused", func(t *testing.T) {
		_, err := Start(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), "in use by another process") {
			t.Fatalf("err = %v", err)
		}
		if !accepts(c.Port()) {
			t.Fatal("refused Start disturbed the running server")
		}
	})

	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if accepts(c.Port()) {
		t.Fatal("server still accepting after Stop")
	}

	// Restart: no initdb, data kept.
	c = startT(t, cfg)
	if got := query[int](t, c.URL(), "SELECT v FROM kept"); got != 42 {
		t.Fatalf("kept = %d", got)
	}

	// Crash: the owning process dies (its lock goes away) but the daemonized
	// postmaster keeps running.
	orphanPort := c.Port()
	c.release(false)
	c.stopped = true // its process is "dead": its cleanup must not stop the next server
	if !accepts(orphanPort) {
		t.Fatal("orphan not running")
	}
	c = startT(t, cfg)
	if got := query[int](t, c.URL(), "SELECT v FROM kept"); got != 42 {
		t.Fatalf("after orphan restart kept = %d", got)
	}
	if orphanPort != c.Port() && accepts(orphanPort) {
		t.Errorf("orphan postmaster still listening on %d", orphanPort)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	// A fixed port held by another program is reported as such, never used.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taken := cfg
	taken.Port = l.Addr().(*net.TCPAddr).Port
	_, err = Start(t.Context(), taken)
	l.Close()
	if err == nil || !strings.Contains(err.Error(), "taken by another program") {
		t.Fatalf("Start on a taken port: %v", err)
	}
	t.Logf("taken port: %v", err)

	// Stale pid file whose pid belongs to a live, unrelated process (this one).
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), fmt.Appendf(nil, "%d\n%s\n", os.Getpid(), dir), 0o600); err != nil {
		t.Fatal(err)
	}
	c = startT(t, cfg)
	if got := query[int](t, c.URL(), "SELECT v FROM kept"); got != 42 {
		t.Fatalf("after stale pid kept = %d", got)
	}
}

func mustExec(t *testing.T, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatal(err)
	}
}

// TestEphemeralWatchdog starts an Ephemeral cluster in a child process that
// exits without Stop; the watchdog must stop the server and delete its files.
func TestEphemeralWatchdog(t *testing.T) {
	if os.Getenv("PGLOCAL_TEST_CHILD") != "" {
		t.Skip("child")
	}
	base := filepath.Join(testDir(t), "ephemeral")
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "data")
	logFile := filepath.Join(base, "pg.log")

	cmd := exec.Command(os.Args[0], "-test.run=^TestEphemeralChild$", "-test.v")
	cmd.Env = append(os.Environ(), "PGLOCAL_TEST_CHILD="+dir+string(os.PathListSeparator)+logFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	port := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "PORT="); ok {
			port, _ = strconv.Atoi(p)
		}
	}
	cmd.Wait()
	if port == 0 {
		t.Fatal("child did not start a cluster")
	}
	waitFor(t, "server stopped by watchdog", func() bool { return !accepts(port) })
	waitFor(t, "files removed by watchdog", func() bool {
		_, err := os.Stat(base) // data dir, log, lock, then the emptied directory
		return errors.Is(err, fs.ErrNotExist)
	})
}

func TestEphemeralChild(t *testing.T) {
	env := os.Getenv("PGLOCAL_TEST_CHILD")
	if env == "" {
		t.Skip("run by TestEphemeralWatchdog")
	}
	dir, logFile, _ := strings.Cut(env, string(os.PathListSeparator))
	c, err := Start(t.Context(), Config{Dir: dir, LogFile: logFile, Fast: true, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PORT=%d\n", c.Port())
	os.Exit(0) // exit without Stop, as a crashed test binary would
}

func TestEphemeralStopRemoves(t *testing.T) {
	base := testDir(t)
	dir := filepath.Join(base, "data")
	c := startT(t, Config{Dir: dir, Fast: true, Ephemeral: true})
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, dir + ".lock", dir + ".log"} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Stop: %v", p, err)
		}
	}
}
