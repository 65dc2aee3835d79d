// Package hostlimits reads the host's limits on the processes and file
// descriptors a daemon started here may have.
package hostlimits

import (
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits are the limits of this host that bound how many processes a
// daemon started here can run. 0 (or unix.RLIM_INFINITY for the rlimits)
// is no limit known.
type Limits struct {
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

// Read reads what applies to a daemon started here.
func Read() Limits {
	h := Limits{NoFile: unix.RLIM_INFINITY, NProc: unix.RLIM_INFINITY, Root: os.Geteuid() == 0}
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
