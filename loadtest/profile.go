package loadtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// startPhaseProfile starts a CPU profile of this process into
// cfg.PhaseProfiles/<name>.prof for one measured phase (a ceiling, a mode's
// burst), so that a mode can be set against a ceiling profile to profile;
// it does nothing when cfg.PhaseProfiles is empty.
func startPhaseProfile(cfg *Config, name string) (stop func(), err error) {
	if cfg.PhaseProfiles == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(cfg.PhaseProfiles, name+".prof"))
	if err != nil {
		return nil, fmt.Errorf("loadtest: phase profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("loadtest: phase profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
