// Package pglocal runs a PostgreSQL server on this machine from the system's own
// server binaries (initdb, pg_ctl, postgres). `sluice dev` uses it with the data
// directory .data/pg; the test helper internal/pgtest uses it with a temporary
// directory. It is not meant for production.
//
// # Finding the binaries
//
// FindBinaries searches PATH first, then the usual package locations, highest
// version first: /usr/lib/postgresql/<ver>/bin (Debian, Ubuntu: `apt-get install -y
// postgresql` does not put initdb on PATH), /usr/pgsql-<ver>/bin (PGDG RPMs),
// Homebrew's postgresql@<ver>. When Dir already holds a cluster, its PG_VERSION must
// match the binaries; a mismatch is reported instead of letting postgres fail.
//
// # Running as root
//
// initdb and postgres refuse to run as root. When the calling process is root
// (os.Geteuid() == 0, the usual case in CI containers and fresh clones built by
// root), every server command runs as the "postgres" system user that the
// distribution packages create: pglocal sets the child's credentials directly
// (syscall.Credential, the same effect as `runuser -u postgres --` without needing
// util-linux or opening a PAM session), chowns Dir and LogFile to that user, and
// checks before initdb that the user can reach Dir, naming the directory on the way
// that blocks it (for example /root, mode 0700). When the process is not root the
// commands run as the invoking user and nothing is chowned.
//
// # Choices
//
//   - The server listens on 127.0.0.1 only, with unix sockets disabled
//     (unix_socket_directories set to the empty string), so no socket
//     directory has to exist or be writable, and pg_hba trust authentication is reachable from this machine only.
//   - initdb runs once, when Dir has no PG_VERSION: -E UTF8 --no-locale, trust
//     authentication, the superuser named by Config.User. A non-empty Dir that is
//     not a cluster is refused, never overwritten.
//   - Server settings are passed on the pg_ctl command line, not written into the
//     cluster's configuration files: TimeZone=UTC, fsync stays on by default; Fast
//     (tests) turns off fsync, synchronous_commit and full_page_writes.
//   - Exactly one process manages a Dir at a time, enforced with a lock file next to
//     it (<Dir>.lock, flock: released by the kernel when the process dies). A
//     postmaster still running on Dir after its owner crashed (kill -9 of
//     `sluice dev`: pg_ctl daemonizes the server, so it survives) is stopped and
//     started again with this run's settings; a postmaster.pid whose process is not a
//     postmaster for Dir (pid reused after a reboot or in a container) is removed.
//   - After start pglocal checks that the server answering on the port really serves
//     Dir (data_directory), so a second PostgreSQL instance on the same port can
//     never be mistaken for this one.
//   - Ephemeral (tests) starts a small watchdog process that stops the server and
//     deletes Dir when the calling process exits for any reason, including a panic,
//     a test timeout or kill -9, so throwaway servers never outlive their test
//     binary.
package pglocal
