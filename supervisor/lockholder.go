package supervisor

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gosup/gosup/procgroup/proctree"
	"golang.org/x/sys/unix"
)

// lockHolder looks in /proc for a live daemon on the lock file path when
// the abstract name cannot tell (another user squats it: anyone can
// compute it). Such a daemon is a process of our user, in our mount
// namespace (where path names the same file), that holds an flock
// through a descriptor opened as path, which /proc shows as "PATH
// (deleted)" once the directory was removed; own, our own lock file,
// does not count. Only root or our user could have opened a file there,
// and only they own the processes that count, so another user cannot
// fake one. It reports the holder's pid.
func lockHolder(path string, own *os.File) (int32, bool) {
	var ownSt, ns unix.Stat_t
	if unix.Fstat(int(own.Fd()), &ownSt) != nil || unix.Stat("/proc/self/ns/mnt", &ns) != nil {
		return 0, false
	}
	names := map[string]bool{path: true, path + " (deleted)": true}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		real := filepath.Join(dir, filepath.Base(path))
		names[real], names[real+" (deleted)"] = true, true
	}
	euid := uint32(os.Geteuid())
	pids, err := proctree.Pids()
	if err != nil {
		return 0, false
	}
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid)
		var st, pns unix.Stat_t
		if unix.Stat(dir, &st) != nil || st.Uid != euid {
			continue
		}
		if unix.Stat(dir+"/ns/mnt", &pns) != nil || pns.Dev != ns.Dev || pns.Ino != ns.Ino {
			continue
		}
		d, err := os.Open(dir + "/fd")
		if err != nil {
			continue
		}
		fds, _ := d.Readdirnames(-1)
		d.Close()
		for _, fd := range fds {
			target, err := os.Readlink(dir + "/fd/" + fd)
			if err != nil || !names[target] {
				continue
			}
			var fst unix.Stat_t
			if unix.Stat(dir+"/fd/"+fd, &fst) != nil || (fst.Dev == ownSt.Dev && fst.Ino == ownSt.Ino) {
				continue
			}
			if flocked(dir + "/fdinfo/" + fd) {
				return int32(pid), true
			}
		}
	}
	return 0, false
}

// flocked reports whether /proc/PID/fdinfo/FD lists an flock held
// through that descriptor ("lock:\t1: FLOCK  ADVISORY  WRITE ...").
func flocked(fdinfo string) bool {
	f, err := os.Open(fdinfo)
	if err != nil {
		return false
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	for line := range bytes.Lines(b) {
		if bytes.HasPrefix(line, []byte("lock:")) && bytes.Contains(line, []byte(" FLOCK ")) {
			return true
		}
	}
	return false
}
