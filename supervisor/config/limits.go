package config

import (
	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/procgroup/hostlimits"
)

// LimitWarnings says what of h the configuration needs more of, or comes
// close to (Load adds them to Warnings for this host): the file descriptors the daemon holds (config.FDs) against
// RLIMIT_NOFILE, and the processes against pid_max, RLIMIT_NPROC, the
// cgroup's pids.max and [supervisor] tasks_max. A process takes one pid
// and more for each of its threads and children: it comes close when the
// processes alone take half of a limit.
func LimitWarnings(cfg *Config, h hostlimits.Limits) []*Error {
	procs, users := 0, 0
	var largest *Program
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
	warn := func(format string, args ...any) *Error {
		key := "program." + largest.Name + ".numprocs"
		if len(largest.Procs) < 2 {
			key = "program." + largest.Name
		}
		return cfg.KeyError(largest.File, key, format, args...)
	}
	var out []*Error
	if need := cfg.FDs(); h.NoFile != unix.RLIM_INFINITY && uint64(need) > h.NoFile {
		want := 65536
		for want < need {
			want *= 2
		}
		out = append(out, warn("the daemon needs up to %d file descriptors for the %d processes (%d of its own; "+
			"for each process its pidfd, the pipe and file of each log it copies, and the /proc files it samples), "+
			"more than the %d RLIMIT_NOFILE allows here: past it a spawn fails (EMFILE). Under systemd set LimitNOFILE=%d "+
			"in the unit (gosup systemd-unit writes it); from a shell, ulimit -n %d before gosup start (as root: ulimit -Hn)",
			need, procs, DaemonFDs, h.NoFile, want, want))
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
	if t := cfg.Supervisor.TasksMax; t > 0 && near(procs, t-TasksDaemon) {
		out = append(out, cfg.KeyError(cfg.File, "supervisor.tasks_max", "the %d processes take more than half of "+
			"the %d tasks (processes and threads) left to them (%d for gosup): the unit's TasksMax= stops their "+
			"threads and children past it; raise it, or leave it out: gosup systemd-unit then derives it (%d for each process)",
			procs, t-TasksDaemon, TasksDaemon, TasksPerProcess))
	}
	return out
}
