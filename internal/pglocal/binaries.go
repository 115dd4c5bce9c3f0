package pglocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// serverBinaries are the programs a directory must hold to be usable.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// packageRoots are glob patterns of versioned binary directories, searched after
// PATH, highest version first.
var packageRoots = []string{
	"/usr/lib/postgresql/*/bin",          // Debian, Ubuntu
	"/usr/pgsql-*/bin",                   // PGDG RPMs (RHEL, Fedora)
	"/opt/homebrew/opt/postgresql@*/bin", // Homebrew, Apple silicon
	"/usr/local/opt/postgresql@*/bin",    // Homebrew, Intel
	"/usr/local/pgsql/bin",               // built from source
}

// ErrNoBinaries is returned (wrapped) by FindBinaries when no PostgreSQL server
// binaries are installed.
var ErrNoBinaries = errors.New("pglocal: PostgreSQL server binaries not found")

// FindBinaries returns the directory that holds initdb, pg_ctl and postgres,
// searching PATH first (symlinks are resolved to the real directory), then the
// package locations listed in the package documentation, highest version first.
// The error says what to install.
func FindBinaries() (string, error) {
	dirs, err := candidateDirs(filepath.SplitList(os.Getenv("PATH")), packageRoots)
	if err != nil {
		return "", err
	}
	return dirs[0], nil
}

// candidateDirs lists every usable binary directory, PATH entries first, then
// package roots by descending version, without duplicates.
func candidateDirs(path []string, roots []string) ([]string, error) {
	var out []string
	add := func(dir string) {
		if !hasServerBinaries(dir) || slices.Contains(out, dir) {
			return
		}
		out = append(out, dir)
	}
	for _, p := range path {
		if p == "" {
			continue
		}
		initdb := filepath.Join(p, "initdb")
		if !isExecutable(initdb) {
			continue
		}
		real, err := filepath.EvalSymlinks(initdb)
		if err != nil {
			continue
		}
		add(filepath.Dir(real))
	}
	var versioned []string
	for _, root := range roots {
		matches, _ := filepath.Glob(root)
		versioned = append(versioned, matches...)
	}
	slices.SortStableFunc(versioned, func(a, b string) int { return compareVersions(dirVersion(b), dirVersion(a)) })
	for _, d := range versioned {
		add(d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w (initdb, pg_ctl and postgres are neither on PATH nor under %s); "+
			"install them: Debian/Ubuntu `apt-get install -y postgresql`, Fedora/RHEL `dnf install -y postgresql-server`, "+
			"macOS `brew install postgresql@16`", ErrNoBinaries, strings.Join(roots, ", "))
	}
	return out, nil
}

func hasServerBinaries(dir string) bool {
	for _, b := range serverBinaries {
		if !isExecutable(filepath.Join(dir, b)) {
			return false
		}
	}
	return true
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

var versionInPath = regexp.MustCompile(`(\d+(?:\.\d+)*)`)

// dirVersion extracts the version from a path such as /usr/lib/postgresql/15/bin.
func dirVersion(dir string) string {
	parent := filepath.Base(filepath.Dir(dir))
	return versionInPath.FindString(parent)
}

// compareVersions compares dotted numeric versions ("9.6" < "15" < "15.2").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

var versionOutput = regexp.MustCompile(`\(PostgreSQL\)\s+(\d+(?:\.\d+)*)`)

// binaryVersion runs `pg_ctl --version` and returns the version, e.g. "15.8".
func binaryVersion(ctx context.Context, binDir string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "pg_ctl"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("pglocal: %s --version: %w", filepath.Join(binDir, "pg_ctl"), err)
	}
	m := versionOutput.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("pglocal: cannot parse pg_ctl version from %q", strings.TrimSpace(string(out)))
	}
	return string(m[1]), nil
}

// sameMajor reports whether a server version ("15.8", "9.6.24") belongs to the
// major version recorded in PG_VERSION ("15", "9.6").
func sameMajor(serverVersion, dataVersion string) bool {
	return serverVersion == dataVersion || strings.HasPrefix(serverVersion, dataVersion+".")
}

// chooseBinaries picks the binary directory for a data directory whose
// PG_VERSION is dataVersion ("" for a new cluster): the first candidate of that
// major version, else the first candidate, which Start then reports as a mismatch.
func chooseBinaries(ctx context.Context, dataVersion string) (string, error) {
	dirs, err := candidateDirs(filepath.SplitList(os.Getenv("PATH")), packageRoots)
	if err != nil {
		return "", err
	}
	if dataVersion == "" {
		return dirs[0], nil
	}
	for _, d := range dirs {
		if v, err := binaryVersion(ctx, d); err == nil && sameMajor(v, dataVersion) {
			return d, nil
		}
	}
	return dirs[0], nil
}
