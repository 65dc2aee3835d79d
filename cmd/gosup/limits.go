package main

import (
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/supervisor/config"
)

// hostLimits are the limits of this host that bound how many processes a
// daemon started here can run. 0 (or unix.RLIM_INFINITY for the rlimits)
// is no limit known.
type hostLimits struct {
	// NoFile is RLIMIT_NOFILE's hard limit: the Go runtime raises the
	// soft limit to it at start, so it is what the daemon may open
	// (systemd's LimitNOFILE= sets both).
	NoFile uint64
	// NProc is RLIMIT_NPROC: the processes and threads of one user, for
	// each user other than root.
	NProc uint64
	// PidMax is /proc/sys/kernel/pid_max: the pids of the whole host.
	PidMax int
	// Pids is the smallest pids.max of the cgroup this runs in and its
	// parents (systemd's TasksMax= of its unit or slice), and PidsCgroup
	// the cgroup that sets it.
	Pids       int
	PidsCgroup string
	// Root: RLIMIT_NPROC does not bound root's own processes.
	Root bool
}

// readHostLimits reads what applies to a daemon started here.
func readHostLimits() hostLimits {
	h := hostLimits{NoFile: unix.RLIM_INFINITY, NProc: unix.RLIM_INFINITY, Root: os.Geteuid() == 0}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		h.NoFile = rl.Max
	}
	if unix.Getrlimit(unix.RLIMIT_NPROC, &rl) == nil {
		h.NProc = rl.Cur
	}
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		h.PidMax, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	h.Pids, h.PidsCgroup = cgroupPidsMax()
	return h
}

// cgroupPidsMax is the smallest pids.max on the way from the cgroup this
// process runs in up to the root (cgroup v2, or v1's pids hierarchy), and
// the cgroup that sets it; 0 when none is set.
func cgroupPidsMax() (int, string) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, ""
	}
	least, where := 0, ""
	for line := range strings.Lines(string(b)) {
		// ID:CONTROLLERS:PATH: "0::PATH" for v2, "N:pids:PATH" for v1.
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			continue
		}
		root := "/sys/fs/cgroup"
		switch {
		case f[0] == "0" && f[1] == "":
		case slices.Contains(strings.Split(f[1], ","), "pids"):
			root += "/pids"
		default:
			continue
		}
		for dir := path.Clean(f[2]); dir != "/"; dir = path.Dir(dir) {
			b, err := os.ReadFile(root + dir + "/pids.max")
			if err != nil {
				continue
			}
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && (least == 0 || n < least) {
				least, where = n, dir
			}
		}
	}
	return least, where
}

// limitWarnings says what of h the configuration needs more of, or comes
// close to: the file descriptors the daemon holds (config.FDs) against
// RLIMIT_NOFILE, and the processes against pid_max, RLIMIT_NPROC, the
// cgroup's pids.max and [supervisor] tasks_max. A process takes one pid
// and more for each of its threads and children: it comes close when the
// processes alone take half of a limit.
func limitWarnings(cfg *config.Config, h hostLimits) []*config.Error {
	procs, users := 0, 0
	var largest *config.Program
	for _, p := range cfg.Programs {
		procs += len(p.Procs)
		if p.Spec.User != "" {
			users += len(p.Procs)
		}
		if largest == nil || len(p.Procs) > len(largest.Procs) {
			largest = p
		}
	}
	if procs == 0 {
		return nil
	}
	// What the warnings point at: the program with the most processes.
	warn := func(format string, args ...any) *config.Error {
		key := "program." + largest.Name + ".numprocs"
		if len(largest.Procs) < 2 {
			key = "program." + largest.Name
		}
		return cfg.KeyError(largest.File, key, format, args...)
	}
	var out []*config.Error
	if need := cfg.FDs(); h.NoFile != unix.RLIM_INFINITY && uint64(need) > h.NoFile {
		want := 65536
		for want < need {
			want *= 2
		}
		out = append(out, warn("the daemon needs up to %d file descriptors for the %d processes (%d of its own; "+
			"for each process its pidfd, the pipe and file of each log it copies, and the /proc files it samples), "+
			"more than the %d RLIMIT_NOFILE allows here: past it a spawn fails (EMFILE). Under systemd set LimitNOFILE=%d "+
			"in the unit (gosup systemd-unit writes it); from a shell, ulimit -n %d before gosup start (as root: ulimit -Hn)",
			need, procs, config.DaemonFDs, h.NoFile, want, want))
	}
	near := func(n, limit int) bool { return limit > 0 && 2*n > limit }
	if near(procs, h.PidMax) {
		out = append(out, warn("the %d processes take more than half of this host's pids (kernel.pid_max %d), "+
			"and each of their threads and children takes one more: raise it (sysctl -w kernel.pid_max=4194304, "+
			"and in /etc/sysctl.d/ to keep it)", procs, h.PidMax))
	}
	nproc := procs
	if h.Root {
		nproc = users // root's own processes are not bounded
	}
	if h.NProc != unix.RLIM_INFINITY && h.NProc <= 1<<31 && near(nproc, int(h.NProc)) {
		out = append(out, warn("%d processes, and their threads, would run under a user whose processes are bounded "+
			"to %d here (RLIMIT_NPROC, for each user): raise it (LimitNPROC= in the unit, ulimit -u, or "+
			"/etc/security/limits.conf)", nproc, h.NProc))
	}
	if near(procs, h.Pids) {
		out = append(out, warn("the %d processes take more than half of the %d tasks (processes and threads) "+
			"that the cgroup this runs in allows (%s: pids.max, systemd's TasksMax= of its unit or slice, "+
			"DefaultTasksMax= by default): under systemd, gosup systemd-unit writes TasksMax= for the configuration", procs, h.Pids, h.PidsCgroup))
	}
	if t := cfg.Supervisor.TasksMax; t > 0 && near(procs, t-config.TasksDaemon) {
		out = append(out, cfg.KeyError(cfg.File, "supervisor.tasks_max", "the %d processes take more than half of "+
			"the %d tasks (processes and threads) left to them (%d for gosup): the unit's TasksMax= stops their "+
			"threads and children past it; raise it, or leave it out: gosup systemd-unit then derives it (%d for each process)",
			procs, t-config.TasksDaemon, config.TasksDaemon, config.TasksPerProcess))
	}
	return out
}
