//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pglocal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
)

// identity is the OS user the server commands run as. A nil *identity means the
// invoking user.
type identity struct {
	name   string
	uid    uint32
	gid    uint32
	groups []uint32
}

// serverIdentity returns nil when the process is not root, else the "postgres"
// system user, which initdb and postgres require instead of root.
func serverIdentity() (*identity, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pglocal: running as root, and PostgreSQL refuses to run as root, "+
			"but there is no \"postgres\" user to run it as (%v); install the distribution package "+
			"(apt-get install -y postgresql creates it), create one (useradd --system postgres), or run as a non-root user", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pglocal: postgres user: %w", err)
	}
	id := &identity{name: u.Username, uid: uint32(uid), gid: uint32(gid)}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			id.groups = append(id.groups, uint32(n))
		}
	}
	if len(id.groups) == 0 {
		id.groups = []uint32{id.gid}
	}
	return id, nil
}

// apply makes cmd run as id (no-op for the invoking user).
func (id *identity) apply(cmd *exec.Cmd) {
	if id == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: id.groups}
}

// chown gives path to id (no-op for the invoking user).
func (id *identity) chown(path string) error {
	if id == nil {
		return nil
	}
	return os.Lchown(path, int(id.uid), int(id.gid))
}

// chownTree gives every file under root to id when root is not already owned by it.
func (id *identity) chownTree(root string) error {
	if id == nil {
		return nil
	}
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == id.uid {
		return nil
	}
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(id.uid), int(id.gid))
	})
}

// unreachable returns the first directory from / down to dir that id cannot
// search (mode bits only, ACLs ignored), or "" when all can be searched.
func (id *identity) unreachable(dir string) string {
	if id == nil {
		return ""
	}
	var chain []string
	for d := dir; ; d = filepath.Dir(d) {
		chain = append(chain, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		fi, err := os.Stat(chain[i])
		if err != nil {
			return chain[i]
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		mode := uint32(fi.Mode().Perm())
		var bit uint32 = 0o001
		switch {
		case st.Uid == id.uid:
			bit = 0o100
		case id.inGroup(st.Gid):
			bit = 0o010
		}
		if mode&bit == 0 {
			return chain[i]
		}
	}
	return ""
}

func (id *identity) inGroup(gid uint32) bool {
	if gid == id.gid {
		return true
	}
	for _, g := range id.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// lockFile takes an exclusive, non-blocking flock on path. The kernel releases it
// when the process exits, however it exits.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return f, nil
}

var errLocked = errors.New("locked by another process")

// processAlive reports whether a process with this pid exists (EPERM counts: it
// exists but belongs to another user).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// servesDir reports whether process pid is a postmaster for the data directory
// dir: a postmaster's working directory is its data directory. ok is false when
// this cannot be determined on this platform.
func servesDir(pid int, dir string) (serves, ok bool) {
	if runtime.GOOS != "linux" {
		return false, false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		// Not readable: the process belongs to a user other than us (or postgres
		// when we are root), so it is not a server we started.
		return false, true
	}
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		want = dir
	}
	return cwd == want, true
}

// detach puts cmd in its own session so terminal signals (Ctrl-C) do not reach it.
func detach(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
}
