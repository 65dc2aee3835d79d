package hostlimits

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadIsThisHosts holds Read to what the kernel says through other
// doors: getrlimit, /proc/sys/kernel/pid_max, the euid, and the pids.max
// file of the cgroup it names.
func TestReadIsThisHosts(t *testing.T) {
	h := Read()
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if h.NoFile != rl.Max {
		t.Errorf("NoFile %d, RLIMIT_NOFILE's hard limit is %d", h.NoFile, rl.Max)
	}
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &rl); err != nil {
		t.Fatal(err)
	}
	if h.NProc != rl.Cur {
		t.Errorf("NProc %d, RLIMIT_NPROC is %d", h.NProc, rl.Cur)
	}
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := strconv.Atoi(strings.TrimSpace(string(b))); h.PidMax != want || want == 0 {
		t.Errorf("PidMax %d, /proc/sys/kernel/pid_max says %d", h.PidMax, want)
	}
	if h.Root != (os.Geteuid() == 0) {
		t.Errorf("Root %v for euid %d", h.Root, os.Geteuid())
	}
	if h.Pids == 0 {
		if h.PidsCgroup != "" {
			t.Errorf("no pids.max, but cgroup %q named", h.PidsCgroup)
		}
		return
	}
	if !strings.HasPrefix(h.PidsCgroup, "/") {
		t.Fatalf("pids.max %d from cgroup %q, not a cgroup path", h.Pids, h.PidsCgroup)
	}
	found := false
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/pids"} {
		if b, err := os.ReadFile(root + h.PidsCgroup + "/pids.max"); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(h.Pids) {
			found = true
		}
	}
	if !found {
		t.Errorf("pids.max %d is not what %s/pids.max holds", h.Pids, h.PidsCgroup)
	}
}
