package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gosup/gosup/procgroup/pathtrust"
	"golang.org/x/sys/unix"
)

// The socket directory holds the lock, the state file (which names
// processes for a successor to kill) and the socket: whoever can write in
// it can turn the daemon against the host. So, as sshd's StrictModes:
// the directory must be the daemon's user's, not writable by group or
// others (by its mode or an ACL), and not a symlink; on the way to it,
// from / and through every symlink, every directory must belong to root
// or the daemon's user, and every entry (directory or symlink) of a
// directory that others may write must be sticky-protected and belong to
// root or the daemon's user, since whoever may replace an entry may swap
// the whole tree: see procgroup/pathtrust, which the
// configuration's check as root shares.

// secureSocketDir creates dir (mode) if it is missing and checks it and
// the way to it; the error says what is wrong and what to do.
func secureSocketDir(dir string, mode os.FileMode) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	euid := os.Geteuid()
	pol := pathtrust.Policy{Owners: []uint32{0, uint32(euid)}}
	// Checked before creating anything: nothing is made under a
	// directory someone else controls.
	if _, err := pathtrust.Resolve(dir, pol, true); err != nil {
		return socketPathError(err)
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if _, err := pathtrust.Resolve(dir, pol, false); err != nil {
		return socketPathError(err)
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
		return fmt.Errorf("socket directory %s is %s, not a directory: %s", dir, fileType(st.Mode), fix)
	case int(st.Uid) != euid:
		return fmt.Errorf("socket directory %s is owned by uid %d (mode %04o), not by gosup's uid %d: %s", dir, st.Uid, st.Mode&0o7777, euid, fix)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("socket directory %s (uid %d, mode %04o) is writable by group or others: %s", dir, st.Uid, st.Mode&0o7777, fix)
	}
	acl, err := pathtrust.ACL(dir)
	if err != nil {
		return fmt.Errorf("socket directory %s: %w", dir, err)
	}
	if w := pathtrust.Writers(&st, acl, pol); w.Who != "" {
		return fmt.Errorf("socket directory %s has an ACL that lets %s write it: run `setfacl -b %s`, or choose another socket", dir, w.Who, dir)
	}
	return nil
}

// socketPathError is a refusal of the way to the socket directory.
func socketPathError(err error) error {
	var p *pathtrust.Problem
	if !errors.As(err, &p) {
		return fmt.Errorf("check the way to the socket: %w", err)
	}
	if p.Fix != "" {
		return fmt.Errorf("%s, on the way to the socket: run `%s`, or choose another socket", p.What, p.Fix)
	}
	return fmt.Errorf("%s, on the way to the socket: choose another socket", p.What)
}

// fileType names the type of a file of mode st_mode.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFREG:
		return "a regular file"
	}
	return fmt.Sprintf("of type %o", mode&unix.S_IFMT)
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
			return nil, notOwnError{fmt.Errorf("%s is a symlink; gosup follows none in its socket directory: remove it", path)}
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

// errNotOwn matches the refusals of openOwn and checkOwn: a file that is
// not gosup's own, as opposed to one that could not be read.
var errNotOwn = errors.New("not gosup's own file")

type notOwnError struct{ error }

func (notOwnError) Is(target error) bool { return target == errNotOwn }

// checkOwn checks an open file of the socket directory (see openOwn).
func checkOwn(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return notOwnError{fmt.Errorf("%s is %s (mode %04o), not a regular file: remove it", f.Name(), fileType(st.Mode), st.Mode&0o7777)}
	case int(st.Uid) != os.Geteuid():
		return notOwnError{fmt.Errorf("%s is owned by uid %d, not by gosup's uid %d: remove it", f.Name(), st.Uid, os.Geteuid())}
	case st.Mode&0o022 != 0:
		return notOwnError{fmt.Errorf("%s (mode %04o) is writable by group or others: remove it", f.Name(), st.Mode&0o7777)}
	case st.Nlink != 1:
		return notOwnError{fmt.Errorf("%s has %d links; gosup uses only a file of its own: remove it", f.Name(), st.Nlink)}
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
