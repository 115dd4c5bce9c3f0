package loadtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// startPhaseProfile profiles one measured phase (a ceiling, a mode's burst)
// of this process into cfg.PhaseProfiles, so that a mode can be set against
// a ceiling profile to profile: <name>.prof is its CPU profile, and
// <name>.heap0 and <name>.heap the heap profiles at its start and its end,
// whose difference (go tool pprof -sample_index=alloc_space -diff_base
// <name>.heap0 <name>.heap) is what the phase allocated. It does nothing
// when cfg.PhaseProfiles is empty, and creates the directory if missing.
func startPhaseProfile(cfg *Config, name string) (stop func(), err error) {
	if cfg.PhaseProfiles == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(cfg.PhaseProfiles, 0o755); err != nil {
		return nil, fmt.Errorf("loadtest: phase profile: %w", err)
	}
	base := filepath.Join(cfg.PhaseProfiles, name)
	if err := writeHeapProfile(base + ".heap0"); err != nil {
		return nil, err
	}
	f, err := os.Create(base + ".prof")
	if err != nil {
		return nil, fmt.Errorf("loadtest: phase profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("loadtest: phase profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if err := writeHeapProfile(base + ".heap"); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}, nil
}

// writeHeapProfile writes the heap profile (allocations since the process
// started, and what the last collection found live) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("loadtest: heap profile: %w", err)
	}
	werr := pprof.Lookup("heap").WriteTo(f, 0)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("loadtest: heap profile: %w", err)
	}
	return nil
}
