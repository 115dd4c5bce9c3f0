//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package pglocal

import (
	"errors"
	"os"
	"os/exec"
)

var errUnsupported = errors.New("pglocal: only supported on Linux, macOS and the BSDs")

type identity struct{ name string }

func serverIdentity() (*identity, error)       { return nil, errUnsupported }
func (id *identity) apply(*exec.Cmd)           {}
func (id *identity) chown(string) error        { return nil }
func (id *identity) chownTree(string) error    { return nil }
func (id *identity) unreachable(string) string { return "" }
func lockFile(string) (*os.File, error)        { return nil, errUnsupported }
func processAlive(int) bool                    { return false }
func servesDir(int, string) (serves, ok bool)  { return false, false }
func detach(*exec.Cmd)                         {}

var errLocked = errors.New("locked by another process")
