package loadtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat: 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSample is CPU time consumed so far, in seconds, by the parts of the
// self-contained stack.
type cpuSample struct {
	// Process is this process (getrusage RUSAGE_SELF, user + system): the
	// sluice node (workers, API, SMTP client), the embedded NATS server and
	// the load generator that publishes the burst.
	Process float64
	// NATS is the nats-server process, when the stack runs one
	// (Config.NATSServer), from /proc/<pid>/stat; 0 when embedded.
	NATS float64
	// Postgres is the postmaster and its children (backends, WAL writer,
	// checkpointer, ...), from /proc/<pid>/stat. A backend that exited
	// within the window is missed; the node's pool keeps its connections.
	Postgres float64
}

// processCPU returns this process's user + system CPU seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// postgresCPU returns the CPU seconds of the postmaster whose data
// directory is dataDir and of its children, 0 if unknown.
func postgresCPU(dataDir string) float64 {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	master, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total float64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, cpu, ok := procStat(pid)
		if ok && (pid == master || ppid == master) {
			total += cpu
		}
	}
	return total
}

// procStat reads a process's parent and its user + system CPU seconds from
// /proc/<pid>/stat.
func procStat(pid int) (ppid int, cpu float64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may hold spaces: the fields
	// that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseFloat(f[11], 64)
	st, err3 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return ppid, (ut + st) / clockTicks, true
}

// cpuReport is the difference between two samples, per 1,000 messages
// handled and per 1,000 delivered.
func cpuReport(from, to cpuSample, handled, delivered int64) *CPUReport {
	r := &CPUReport{ProcessSeconds: to.Process - from.Process, NATSSeconds: to.NATS - from.NATS, PostgresSeconds: to.Postgres - from.Postgres}
	r.TotalSeconds = r.ProcessSeconds + r.NATSSeconds + r.PostgresSeconds
	per := func(n int64) float64 {
		if n <= 0 {
			return 0
		}
		return r.TotalSeconds / float64(n) * 1000
	}
	r.PerThousandHandled, r.PerThousandDelivered = per(handled), per(delivered)
	return r
}
