package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The socket directory holds the lock, the state file (which names
// processes for a successor to kill) and the socket: whoever can write in
// it can turn the daemon against the host. So, as sshd's StrictModes:
// the directory must be the daemon's user's, not writable by group or
// others, and not a symlink; every directory above it must belong to root
// or the daemon's user and be writable by group or others only with the
// sticky bit (as /tmp), since whoever may rename an entry of an ancestor
// may swap the whole tree. Symlinks among the ancestors are followed, and
// every directory they lead through is checked the same way.

// secureSocketDir creates dir (mode) if it is missing and checks it and
// its ancestors; the error says what is wrong and what to do.
func secureSocketDir(dir string, mode os.FileMode) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	euid := os.Geteuid()
	// Checked before creating anything: nothing is made under a
	// directory someone else controls.
	if err := checkAncestors(filepath.Dir(dir), euid); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if err := checkAncestors(filepath.Dir(dir), euid); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("socket directory %s: %w", dir, err)
	}
	fix := fmt.Sprintf("remove it (gosup creates it), or make it a directory of uid %d with `chown %d %s && chmod go-w %s`, or choose another socket",
		euid, euid, dir, dir)
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("socket directory %s is a symlink (owned by uid %d); gosup uses only a real directory of its own: %s", dir, st.Uid, fix)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("socket directory %s is not a directory: %s", dir, fix)
	case int(st.Uid) != euid:
		return fmt.Errorf("socket directory %s is owned by uid %d (mode %04o), not by gosup's uid %d: %s", dir, st.Uid, st.Mode&0o7777, euid, fix)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("socket directory %s (uid %d, mode %04o) is writable by group or others: %s", dir, st.Uid, st.Mode&0o7777, fix)
	}
	return nil
}

// checkAncestors checks dir and every directory above it, resolving
// symlinks one component at a time; it stops at the first component that
// does not exist (secureSocketDir creates it, as ours).
func checkAncestors(dir string, euid int) error {
	check := func(path string, st *unix.Stat_t) error {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s, above the socket, is not a directory", path)
		}
		if st.Uid != 0 && int(st.Uid) != euid {
			return fmt.Errorf("%s, above the socket, is owned by uid %d (mode %04o): every directory above the socket must belong to root or gosup's uid %d; choose another socket",
				path, st.Uid, st.Mode&0o7777, euid)
		}
		if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
			return fmt.Errorf("%s, above the socket, is writable by group or others without the sticky bit (uid %d, mode %04o): run `chmod go-w %s`, or choose another socket",
				path, st.Uid, st.Mode&0o7777, path)
		}
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		return err
	}
	if err := check("/", &st); err != nil {
		return err
	}
	resolved := "/"
	rest := strings.Split(filepath.Clean(dir), "/")
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, c)
		if err := unix.Lstat(next, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("check %s, above the socket: %w", next, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if hops++; hops > 40 {
				return fmt.Errorf("check %s, above the socket: too many symlinks", dir)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("check %s, above the socket: %w", next, err)
			}
			if filepath.IsAbs(target) {
				resolved = "/"
			}
			rest = append(strings.Split(target, "/"), rest...)
			continue
		}
		if err := check(next, &st); err != nil {
			return err
		}
		resolved = next
	}
	return nil
}

// openOwn opens a file in the socket directory that may already exist
// (flags gets O_NOFOLLOW, O_CLOEXEC and O_NONBLOCK: never a symlink, and
// a planted FIFO does not block) and checks, on the open descriptor,
// that it is a regular file of the daemon's user, writable by no one
// else, with one link.
func openOwn(path string, flags int, perm uint32) (*os.File, error) {
	fd, err := unix.Open(path, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, perm)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink; gosup follows none in its socket directory: remove it", path)
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	if err := checkOwn(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkOwn checks an open file of the socket directory (see openOwn).
func checkOwn(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is not a regular file (mode %o): remove it", f.Name(), st.Mode)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s is owned by uid %d, not by gosup's uid %d: remove it", f.Name(), st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s (mode %04o) is writable by group or others: remove it", f.Name(), st.Mode&0o7777)
	case st.Nlink != 1:
		return fmt.Errorf("%s has %d links; gosup uses only a file of its own: remove it", f.Name(), st.Nlink)
	}
	return nil
}

// createOwn creates a new file in the socket directory, replacing a stale
// one (unlinked, never followed): O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC.
func createOwn(path string, perm uint32) (*os.File, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// maxStateBytes bounds the state file read by a successor: a record is
// under 100 bytes, so this is tens of thousands of children.
const maxStateBytes = 4 << 20

// readOwn reads a file of the socket directory (see openOwn), at most
// limit bytes. A missing file is (nil, nil).
func readOwn(path string, limit int64) ([]byte, error) {
	f, err := openOwn(path, unix.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", path, limit)
	}
	return b, nil
}
