package procgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// childEnv is the daemon's environment plus daemonEnv, supervisord's
// SUPERVISOR_* variables, PORT, GOSUP_PROCESS, the program's environment
// and last the spawn's own entries (its GOSUP_SPAWN marker), later entries
// replacing earlier ones (execve keeps duplicates and getenv takes the
// first, so they are merged here).
func childEnv(s *ProcSpec, daemonEnv []string, spawnEnv ...string) []string {
	base := os.Environ()
	extra := slices.Concat(daemonEnv, []string{
		"SUPERVISOR_ENABLED=1",
		"SUPERVISOR_PROCESS_NAME=" + s.Name,
		"SUPERVISOR_GROUP_NAME=" + string(s.Group),
		"GOSUP_PROCESS=" + s.FullName(),
	})
	if s.Port > 0 {
		extra = append(extra, "PORT="+strconv.Itoa(s.Port))
	}
	extra = append(extra, s.Env...)
	extra = append(extra, spawnEnv...)
	idx := make(map[string]int, len(base)+len(extra))
	out := make([]string, 0, len(base)+len(extra))
	for _, kv := range append(base, extra...) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// lookPath finds the executable as supervisord does: a name with a slash is
// a path (relative to dir), anything else is searched in the child's PATH.
func lookPath(file, dir string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("command %s: %w", file, err)
		}
		return p, nil
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	var firstErr error
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, file)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if firstErr == nil && !errors.Is(err, fs.ErrNotExist) {
			firstErr = fmt.Errorf("command %s: %w", p, err)
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("command %q: executable file not found in PATH (%s)", file, pathEnv)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err // the caller names the path
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("permission denied: not executable")
	}
	return nil
}

// credential resolves user to the uid, gid and groups to run as. It never
// falls back to the daemon's own user: a bad user is a spawn error.
func credential(name string) (*syscall.Credential, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", name, err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if me := os.Getuid(); me != 0 {
		if uint64(me) == uid {
			return nil, nil
		}
		return nil, fmt.Errorf("user %q: gosup runs as uid %d and can only switch users as root", name, me)
	}
	var groups []uint32
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, nil
}

// checkPort reports who holds port, if anyone does. It binds the wildcard
// address (v4 and v6), which fails if anything listens on the port on any address.
func checkPort(port int) error {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err == nil {
		return ln.Close()
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("port %d: %w", port, err)
	}
	if pid, comm := portOwner(port); pid > 0 {
		return &portBusyError{port: port, pid: pid, comm: comm}
	}
	return fmt.Errorf("port %d in use by another process (not visible to gosup)", port)
}

// portOwner finds the pid listening on port through /proc.
func portOwner(port int) (int, string) {
	inodes := map[string]bool{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		_ = listenInodes(f, port, inodes) // a file cut short: what it showed
		f.Close()
	}
	if len(inodes) == 0 {
		return 0, ""
	}
	procs, _ := os.ReadDir("/proc")
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", d.Name(), "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", d.Name(), "fd", fd.Name()))
			if err == nil && inodes[link] {
				comm, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
				return pid, strings.TrimSpace(string(comm))
			}
		}
	}
	return 0, ""
}

// maxSocketLine bounds a line of /proc/net/tcp{,6}: the kernel writes
// them at a fixed width of about 150 bytes.
const maxSocketLine = 4 << 10

// listenInodes adds to inodes ("socket:[INODE]") the sockets of a
// /proc/net/tcp{,6} table read line by line from r, within maxSocketLine
// each, that listen on port. A longer line ends the table with an error.
func listenInodes(r io.Reader, port int, inodes map[string]bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxSocketLine)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" { // 0A = LISTEN
			continue
		}
		_, hexPort, _ := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
			inodes["socket:["+fields[9]+"]"] = true
		}
	}
	return sc.Err()
}

// portBusyError is a port another process listens on.
type portBusyError struct {
	port, pid int
	comm      string
}

func (e *portBusyError) Error() string {
	return fmt.Sprintf("port %d in use by pid %d (%s)", e.port, e.pid, e.comm)
}

// LookPath finds a program's executable as its spawn will: file with a
// slash is a path (relative to dir), anything else is searched in the
// PATH that env (KEY=VALUE, the last PATH= winning) gives.
func LookPath(file, dir string, env []string) (string, error) {
	return lookPath(file, dir, env)
}
