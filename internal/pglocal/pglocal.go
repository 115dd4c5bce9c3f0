package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config describes a local cluster. Only Dir is required.
type Config struct {
	// Dir is the data directory. It is created and initialised with initdb when it
	// holds no PG_VERSION file; a non-empty directory that is not a cluster is
	// refused. Required.
	Dir string
	// Port is the TCP port on 127.0.0.1. 0 picks a free port at each start.
	Port int
	// User is the superuser initdb creates, used in URL and AdminURL. Default "sluice".
	User string
	// Database is created after start when missing. Default "sluice".
	Database string
	// Logger receives progress messages. Default: discard.
	Logger *slog.Logger
	// LogFile receives the server's log. Default: next to Dir, named after it
	// (.data/pg → .data/pg.log). When running as root it is chowned to the postgres
	// user. Rotated to LogFile+".1" at start when larger than 16 MiB.
	LogFile string
	// BinDir is the directory holding initdb, pg_ctl and postgres. Default: the
	// result of FindBinaries, preferring the major version that created Dir.
	BinDir string
	// Fast trades durability for speed: initdb --no-sync, and fsync,
	// synchronous_commit and full_page_writes off. For throwaway test clusters only.
	Fast bool
	// Ephemeral deletes Dir, LogFile and the lock file at Stop, and makes a
	// watchdog process stop the server and delete them (and their directory, if
	// that leaves it empty) when this process exits without calling Stop (panic,
	// test timeout, kill -9). For tests only.
	Ephemeral bool
}

const (
	defaultUser     = "sluice"
	defaultDatabase = "sluice"
	maxLogSize      = 16 << 20
	pgctlTimeout    = 60 // seconds, pg_ctl -t
)

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("pglocal: Config.Dir is required")
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return c, fmt.Errorf("pglocal: Config.Dir: %w", err)
	}
	if dir == filepath.Dir(dir) {
		return c, fmt.Errorf("pglocal: Config.Dir must not be the root directory")
	}
	c.Dir = dir
	if c.Port < 0 || c.Port > 65535 {
		return c, fmt.Errorf("pglocal: Config.Port %d out of range 0..65535", c.Port)
	}
	if c.User == "" {
		c.User = defaultUser
	}
	if c.Database == "" {
		c.Database = defaultDatabase
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LogFile == "" {
		c.LogFile = filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".log")
	}
	if c.LogFile, err = filepath.Abs(c.LogFile); err != nil {
		return c, fmt.Errorf("pglocal: Config.LogFile: %w", err)
	}
	// pg_ctl hands these paths to /bin/sh inside double quotes. Checked in
	// a fixed order: LogFile derives from Dir, and the error names Dir then.
	for _, f := range []struct{ field, path string }{{"Dir", c.Dir}, {"LogFile", c.LogFile}, {"BinDir", c.BinDir}} {
		if strings.ContainsAny(f.path, "\"$`\\\n") {
			return c, fmt.Errorf("pglocal: Config.%s %q contains a character pg_ctl cannot quote (\" $ ` \\ or newline)", f.field, f.path)
		}
	}
	return c, nil
}

// Cluster is a running local server. Stop it with Stop.
type Cluster struct {
	cfg    Config
	binDir string
	id     *identity // nil: the invoking user
	log    *slog.Logger

	port     int
	lock     *os.File
	watchdog *os.File // write end of the watchdog's stdin; nil unless Ephemeral

	mu      sync.Mutex
	stopped bool
}

// Start initialises Dir if needed, starts the server and waits until it accepts
// connections on 127.0.0.1, then creates cfg.Database if it is missing. A
// postmaster left running on Dir by a crashed previous run is stopped first; a
// Dir used by another live process is refused.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	id, err := serverIdentity()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Dir), 0o755); err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	lockPath := cfg.Dir + ".lock"
	lock, err := lockFile(lockPath)
	if errors.Is(err, errLocked) {
		return nil, fmt.Errorf("pglocal: %s is in use by another process (it holds %s); stop that process first", cfg.Dir, lockPath)
	}
	if err != nil {
		return nil, fmt.Errorf("pglocal: lock %s: %w", lockPath, err)
	}
	c := &Cluster{cfg: cfg, id: id, log: cfg.Logger, lock: lock}
	started := false
	defer func() {
		if !started {
			c.release(false)
		}
	}()

	dataVersion, err := readDataVersion(cfg.Dir)
	if err != nil {
		return nil, err
	}
	c.binDir = cfg.BinDir
	if c.binDir == "" {
		if c.binDir, err = chooseBinaries(ctx, dataVersion); err != nil {
			return nil, err
		}
	}
	if dataVersion == "" {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	} else {
		v, err := binaryVersion(ctx, c.binDir)
		if err != nil {
			return nil, err
		}
		if !sameMajor(v, dataVersion) {
			return nil, fmt.Errorf("pglocal: %s was created by PostgreSQL %s but the server binaries in %s are version %s; "+
				"install PostgreSQL %s, or delete %s to start over (its data is lost)", cfg.Dir, dataVersion, c.binDir, v, dataVersion, cfg.Dir)
		}
		if err := id.chownTree(cfg.Dir); err != nil {
			return nil, fmt.Errorf("pglocal: chown %s to %s: %w", cfg.Dir, id.name, err)
		}
		if err := c.checkReachable(); err != nil {
			return nil, err
		}
	}
	if err := c.prepareLogFile(); err != nil {
		return nil, err
	}
	if err := c.clearStalePostmaster(ctx); err != nil {
		return nil, err
	}
	if cfg.Ephemeral {
		if err := c.startWatchdog(); err != nil {
			return nil, err
		}
	}
	if err := c.startServer(ctx); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		c.stopServer(context.WithoutCancel(ctx), "immediate")
		return nil, err
	}
	started = true
	c.log.Info("pglocal: postgres running", "dir", cfg.Dir, "url", c.URL(), "log", cfg.LogFile)
	return c, nil
}

// URL is the connection URL of Config.Database, e.g.
// postgres://sluice@127.0.0.1:54321/sluice?sslmode=disable.
func (c *Cluster) URL() string { return c.AdminURL(c.cfg.Database) }

// AdminURL is the connection URL of database db as the superuser.
func (c *Cluster) AdminURL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(c.cfg.User),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port is the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// Stop shuts the server down (pg_ctl stop -m fast, then -m immediate if that
// fails) and releases Dir. With Ephemeral it deletes Dir and LogFile. Calling it
// again does nothing.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	err := c.stopServer(ctx, "fast")
	if err != nil {
		c.log.Warn("pglocal: fast shutdown failed, trying immediate", "err", err)
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if ierr := c.stopServer(ictx, "immediate"); ierr == nil {
			err = nil
		}
	}
	c.release(err == nil)
	if err != nil {
		return err
	}
	c.log.Info("pglocal: postgres stopped", "dir", c.cfg.Dir)
	return nil
}

// Pause shuts the server down (pg_ctl stop -m fast) and keeps Dir, its lock
// and the watchdog, so that Resume starts it again on the same port with the
// same data: an outage, for tests of what clients do meanwhile.
func (c *Cluster) Pause(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pglocal: pause after Stop")
	}
	if err := c.stopServer(ctx, "fast"); err != nil {
		return fmt.Errorf("pglocal: pause: %w", err)
	}
	return nil
}

// Resume starts a paused server again, on the port it had, and waits until
// it accepts connections.
func (c *Cluster) Resume(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pglocal: resume after Stop")
	}
	configured := c.cfg.Port
	c.cfg.Port = c.port
	defer func() { c.cfg.Port = configured }()
	if err := c.startServer(ctx); err != nil {
		return err
	}
	return c.waitReady(ctx)
}

// release lets go of the lock and the watchdog. clean means the server is down:
// an Ephemeral cluster's files are deleted here and the watchdog is told to exit;
// otherwise closing its pipe makes it stop the server and delete them itself.
func (c *Cluster) release(clean bool) {
	if c.watchdog != nil {
		if clean {
			os.RemoveAll(c.cfg.Dir)
			os.Remove(c.cfg.LogFile)
			os.Remove(c.cfg.Dir + ".lock") // still held: nobody else can have it
			io.WriteString(c.watchdog, "done\n")
		}
		c.watchdog.Close()
		c.watchdog = nil
	}
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

func readDataVersion(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("pglocal: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("pglocal: %w", err)
	}
	if len(entries) > 0 {
		return "", fmt.Errorf("pglocal: %s is not empty and is not a PostgreSQL data directory (no PG_VERSION); "+
			"refusing to touch it: choose another Config.Dir or empty it", dir)
	}
	return "", nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	dir := c.cfg.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if err := c.id.chown(dir); err != nil {
		return fmt.Errorf("pglocal: chown %s to %s: %w", dir, c.id.name, err)
	}
	if err := c.checkReachable(); err != nil {
		return err
	}
	args := []string{"-D", dir, "-U", c.cfg.User, "--auth=trust", "-E", "UTF8", "--no-locale"}
	if c.cfg.Fast {
		args = append(args, "--no-sync")
	}
	c.log.Info("pglocal: initialising cluster", "dir", dir, "bin", c.binDir)
	start := time.Now()
	if err := c.run(ctx, "initdb", args...); err != nil {
		return err
	}
	c.log.Debug("pglocal: initdb done", "elapsed", time.Since(start))
	return nil
}

// checkReachable fails early, with a useful message, when the postgres user
// cannot reach Dir (root only: e.g. a clone under /root, which is mode 0700).
func (c *Cluster) checkReachable() error {
	if blocked := c.id.unreachable(c.cfg.Dir); blocked != "" {
		return fmt.Errorf("pglocal: the %s user, which runs the server because this process is root, cannot reach %s: "+
			"%s is not searchable by it; put the data directory elsewhere (e.g. under /var/tmp) or run `chmod o+x %s`",
			c.id.name, c.cfg.Dir, blocked, blocked)
	}
	return nil
}

func (c *Cluster) prepareLogFile() error {
	path := c.cfg.LogFile
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxLogSize {
		os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("pglocal: log file: %w", err)
	}
	f.Close()
	if err := c.id.chown(path); err != nil {
		return fmt.Errorf("pglocal: chown %s to %s: %w", path, c.id.name, err)
	}
	return nil
}

// clearStalePostmaster deals with a postmaster.pid left in Dir. We hold the lock,
// so no other pglocal manages Dir: a live postmaster for Dir is an orphan of a
// crashed run and is stopped; a pid that is alive but not a postmaster for Dir was
// reused by an unrelated process, and the file is removed so postgres can start.
// A dead pid needs nothing: postgres replaces the file itself.
func (c *Cluster) clearStalePostmaster(ctx context.Context) error {
	pidFile := filepath.Join(c.cfg.Dir, "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if pid < 0 {
		pid = -pid // a standalone backend writes its pid negated
	}
	if err != nil || !processAlive(pid) {
		return nil
	}
	if serves, known := servesDir(pid, c.cfg.Dir); known && !serves {
		c.log.Warn("pglocal: removing stale postmaster.pid: its pid now belongs to another process", "pid", pid, "dir", c.cfg.Dir)
		if err := os.Remove(pidFile); err != nil {
			return fmt.Errorf("pglocal: %w", err)
		}
		return nil
	}
	c.log.Warn("pglocal: a postmaster left by a previous run is still serving the data directory; restarting it", "pid", pid, "dir", c.cfg.Dir)
	if err := c.stopServer(ctx, "fast"); err != nil {
		if err := c.stopServer(ctx, "immediate"); err != nil {
			return fmt.Errorf("pglocal: cannot stop the postmaster (pid %d) left running on %s: %w", pid, c.cfg.Dir, err)
		}
	}
	return nil
}

func (c *Cluster) serverOptions(port int) string {
	opts := []string{
		"-c listen_addresses=127.0.0.1",
		"-c port=" + strconv.Itoa(port),
		"-c unix_socket_directories=''",
		"-c TimeZone=UTC",
		"-c log_timezone=UTC",
	}
	if c.cfg.Fast {
		opts = append(opts,
			"-c fsync=off",
			"-c synchronous_commit=off",
			"-c full_page_writes=off",
			"-c max_connections=200",
		)
	}
	return strings.Join(opts, " ")
}

func (c *Cluster) startServer(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		port := c.cfg.Port
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return fmt.Errorf("pglocal: pick a free port: %w", err)
			}
		}
		offset := fileSize(c.cfg.LogFile)
		err := c.run(ctx, "pg_ctl", "start", "-w", "-s", "-t", strconv.Itoa(pgctlTimeout),
			"-D", c.cfg.Dir, "-l", c.cfg.LogFile, "-o", c.serverOptions(port))
		if err == nil {
			c.port = port
			return nil
		}
		tail := logTail(c.cfg.LogFile, offset, 20)
		// pg_ctl gives up after -t or on ctx, possibly leaving a server coming up.
		c.stopServer(context.WithoutCancel(ctx), "immediate")
		portTaken := strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets")
		if c.cfg.Port == 0 && portTaken && attempt < 3 && ctx.Err() == nil {
			continue
		}
		if portTaken {
			return fmt.Errorf("pglocal: port %d on 127.0.0.1 is taken by another program (another PostgreSQL?); choose another port: %w\n%s", port, err, tail)
		}
		return fmt.Errorf("pglocal: start server: %w\nlast lines of %s:\n%s", err, c.cfg.LogFile, tail)
	}
}

// stopServer runs pg_ctl stop with the given mode ("fast", "immediate"). It
// succeeds when no server is running.
func (c *Cluster) stopServer(ctx context.Context, mode string) error {
	if _, err := os.Stat(filepath.Join(c.cfg.Dir, "postmaster.pid")); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return c.run(ctx, "pg_ctl", "stop", "-w", "-s", "-t", strconv.Itoa(pgctlTimeout), "-D", c.cfg.Dir, "-m", mode)
}

// waitReady waits until the server accepts connections, checks that it is the
// server for Dir, and creates the database.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var conn *pgx.Conn
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		var err error
		conn, err = pgx.Connect(actx, c.AdminURL("postgres"))
		acancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pglocal: server on port %d does not accept connections: %w", c.port, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var dataDir string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if !samePath(dataDir, c.cfg.Dir) {
		return fmt.Errorf("pglocal: the server on 127.0.0.1:%d serves %s, not %s: another PostgreSQL instance answered", c.port, dataDir, c.cfg.Dir)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", c.cfg.Database).Scan(&exists); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{c.cfg.Database}.Sanitize()); err != nil {
			return fmt.Errorf("pglocal: create database %s: %w", c.cfg.Database, err)
		}
		c.log.Info("pglocal: created database", "database", c.cfg.Database)
	}
	return nil
}

// watchdogScript runs as the invoking user, in its own session, with a pipe from
// us on stdin. "done" means Stop cleaned up; EOF means we exited without Stop,
// so it stops the server (SIGQUIT: immediate shutdown, as pg_ctl -m immediate
// does) and deletes the files, and their directory if that leaves it empty.
// $1 data dir, $2 log file.
const watchdogScript = `
if IFS= read -r line && [ "$line" = done ]; then exit 0; fi
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i+1)); done
fi
rm -rf "$1"
rm -f "$2" "$1.lock"
rmdir "$(dirname "$1")" 2>/dev/null
exit 0
`

func (c *Cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pglocal: watchdog: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "pglocal-watchdog", c.cfg.Dir, c.cfg.LogFile)
	cmd.Stdin = r
	cmd.Dir = "/"
	detach(cmd)
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("pglocal: watchdog: %w", err)
	}
	go cmd.Wait()
	c.watchdog = w
	return nil
}

// run runs a server binary as the server identity and returns its output in the
// error when it fails.
func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = "/" // the invoking user's working directory may not be reachable by postgres
	cmd.Env = childEnv()
	cmd.WaitDelay = 5 * time.Second
	c.id.apply(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if name == "pg_ctl" {
			name += " " + args[0] // the subcommand
		}
		return fmt.Errorf("pglocal: %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// childEnv is our environment without PG* variables (PGPORT, PGDATA, PGHOST...),
// which would otherwise change what the server commands do.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns up to n last lines written to path after offset.
func logTail(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func samePath(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}
