// Package pathtrust decides whether a path can be changed by someone
// other than root and the users a caller trusts: whether the file it
// names could be replaced, through a directory on the way or a symlink,
// or written, through its mode or a POSIX ACL. The configuration loader
// (as root), the daemon's socket directory check and procgroup/safefile
// (the logs and the nginx file gosup writes) use it, with their own
// policies. It is a leaf on the standard library and x/sys.
package pathtrust

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Policy says whom a caller trusts.
type Policy struct {
	// Owners may own every directory on the way, and every entry of a
	// directory that someone outside the policy may write.
	Owners []uint32
	// Groups may write what they like: their write permission is no
	// problem (root's group, for the configuration, as sudo allows).
	Groups []uint32
}

// Problem is why a path is not trusted: what is wrong, naming the file,
// directory or link at fault, and a command that repairs it.
type Problem struct {
	Path string // the file, directory or link at fault
	What string
	Fix  string // "" if there is none to suggest
}

func (p *Problem) Error() string { return p.What }

// maxLinks bounds the symlinks followed on the way to one file, as the
// kernel's ELOOP does.
const maxLinks = 40

// Resolve follows path from / one name at a time, through its symlinks,
// and returns the path of what it names with no symlink in it. On the
// way it checks that no one outside p could change which file that is:
//
//   - every directory passed through is owned by one of p.Owners (its
//     owner could replace anything in it);
//   - every entry (a directory, a symlink, the final name) of a
//     directory that someone outside p may write, by its mode or its
//     ACL, belongs to one of p.Owners, and that directory is sticky
//     (/tmp): otherwise whoever may write the directory may rename or
//     replace the entry. A symlink is an entry like any other: its
//     owner, in a sticky directory, may repoint it.
//
// The final file itself (its owner, mode and ACL) is not checked: the
// caller opens it and checks the descriptor (Writers, FileACL). With
// missingOK, a missing name ends the walk with no error, and the rest of
// the path is appended to what was resolved (for the caller to create);
// without, it is an *os.PathError. A refusal is a *Problem.
func Resolve(path string, p Policy, missingOK bool) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	dir := "/"
	var dst unix.Stat_t
	if err := unix.Lstat(dir, &dst); err != nil {
		return "", &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	if err := p.checkDir(dir, &dst); err != nil {
		return "", err
	}
	rest := strings.Split(abs, "/")
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// dir has no symlink in it, so its parent is what ..
			// names, and was checked on the way down.
			dir = filepath.Dir(dir)
			if err := unix.Lstat(dir, &dst); err != nil {
				return "", &os.PathError{Op: "lstat", Path: dir, Err: err}
			}
			continue
		}
		next := filepath.Join(dir, name)
		var st unix.Stat_t
		if err := unix.Lstat(next, &st); err != nil {
			if missingOK && errors.Is(err, unix.ENOENT) {
				return filepath.Join(append([]string{next}, rest...)...), nil
			}
			return "", &os.PathError{Op: "open", Path: path, Err: err}
		}
		if err := p.checkEntry(dir, &dst, name, &st); err != nil {
			return "", err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if links++; links > maxLinks {
				return "", &os.PathError{Op: "open", Path: path, Err: unix.ELOOP}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if filepath.IsAbs(target) {
				dir = "/"
				if err := unix.Lstat(dir, &dst); err != nil {
					return "", &os.PathError{Op: "lstat", Path: dir, Err: err}
				}
			}
			rest = append(strings.Split(target, "/"), rest...)
			continue
		}
		if allEmpty(rest) {
			return next, nil
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return "", &os.PathError{Op: "open", Path: path, Err: unix.ENOTDIR}
		}
		if err := p.checkDir(next, &st); err != nil {
			return "", err
		}
		dir, dst = next, st
	}
	return dir, nil
}

// checkDir refuses a directory on the way whose owner is not trusted.
func (p Policy) checkDir(dir string, st *unix.Stat_t) error {
	if !slices.Contains(p.Owners, st.Uid) {
		return &Problem{Path: dir,
			What: fmt.Sprintf("directory %s is owned by %s, %s, who could replace what is in it", dir, UserName(st.Uid), p.ownersText()),
			Fix:  "chown root " + dir}
	}
	return nil
}

// checkEntry refuses name, an entry of dir (st), if someone outside p
// may replace it.
func (p Policy) checkEntry(dir string, dst *unix.Stat_t, name string, st *unix.Stat_t) error {
	acl, err := ACLOf(dir, dst)
	if err != nil {
		return &Problem{Path: dir, What: fmt.Sprintf("directory %s: %v", dir, err), Fix: "setfacl -b " + dir}
	}
	w := Writers(dst, acl, p)
	if w.Who == "" {
		return nil
	}
	entry := filepath.Join(dir, name)
	if dst.Mode&unix.S_ISVTX == 0 {
		if w.ACL {
			return &Problem{Path: dir, What: fmt.Sprintf("directory %s has an ACL that lets %s replace %s", dir, w.Who, name), Fix: "setfacl -b " + dir}
		}
		return &Problem{Path: dir, What: fmt.Sprintf("directory %s (mode %04o) lets %s replace %s", dir, dst.Mode&0o7777, w.Who, name), Fix: "chmod go-w " + dir}
	}
	if !slices.Contains(p.Owners, st.Uid) {
		kind := ""
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			kind = "the symlink "
		}
		return &Problem{Path: entry,
			What: fmt.Sprintf("%s%s is owned by %s in the sticky directory %s, which lets its owner replace it", kind, entry, UserName(st.Uid), dir),
			Fix:  "chown -h root " + entry}
	}
	return nil
}

func (p Policy) ownersText() string {
	names := make([]string, len(p.Owners))
	for i, uid := range p.Owners {
		if uid == 0 {
			names[i] = "root"
		} else {
			names[i] = "uid " + strconv.FormatUint(uint64(uid), 10)
		}
	}
	return "not " + strings.Join(slices.Compact(names), " or ")
}

// Writer is who besides the policy may write a file: "every user",
// "group N (NAME)", "uid N (NAME)"; ACL says an ACL entry grants it.
type Writer struct {
	Who string // "" for no one
	ACL bool
}

// POSIX ACL xattr format (linux/posix_acl_xattr.h): a little-endian
// version word, then entries of tag, permission (16 bits each) and id.
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclWrite    = 0x02
)

// Writers says who, besides p's owners and groups, may write a file of
// stat st whose system.posix_acl_access xattr is acl (nil for none).
// With an ACL, the mode's group bits are its mask: each named user and
// group entry, and the owning group's entry, counts as masked by it. An
// ACL that cannot be parsed counts as letting anyone write.
func Writers(st *unix.Stat_t, acl []byte, p Policy) Writer {
	if len(acl) == 0 {
		switch {
		case st.Mode&0o002 != 0:
			return Writer{Who: "every user"}
		case st.Mode&0o020 != 0 && !slices.Contains(p.Groups, st.Gid):
			return Writer{Who: "group " + GroupName(st.Gid)}
		}
		return Writer{}
	}
	if len(acl) < 4 || (len(acl)-4)%8 != 0 || binary.LittleEndian.Uint32(acl) != aclVersion {
		return Writer{Who: "anyone its unreadable ACL names", ACL: true}
	}
	mask := uint16(0o7)
	for e := acl[4:]; len(e) >= 8; e = e[8:] {
		if binary.LittleEndian.Uint16(e) == aclMask {
			mask = binary.LittleEndian.Uint16(e[2:])
		}
	}
	if st.Mode&0o002 != 0 {
		return Writer{Who: "every user"}
	}
	for e := acl[4:]; len(e) >= 8; e = e[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])
		switch {
		case tag == aclUser && perm&mask&aclWrite != 0 && !slices.Contains(p.Owners, id):
			return Writer{Who: UserName(id), ACL: true}
		case tag == aclGroupObj && perm&mask&aclWrite != 0 && !slices.Contains(p.Groups, st.Gid):
			return Writer{Who: "group " + GroupName(st.Gid), ACL: true}
		case tag == aclGroup && perm&mask&aclWrite != 0 && !slices.Contains(p.Groups, id):
			return Writer{Who: "group " + GroupName(id), ACL: true}
		case tag == aclOther && perm&aclWrite != 0:
			return Writer{Who: "every user", ACL: true}
		}
	}
	return Writer{}
}

// maxACLBytes bounds an ACL read: far more entries than any real one.
const maxACLBytes = 64 << 10

const aclName = "system.posix_acl_access"

// ACL returns the access ACL of path (not followed if a symlink), nil if
// it has none.
func ACL(path string) ([]byte, error) {
	return readACL(func(b []byte) (int, error) { return unix.Lgetxattr(path, aclName, b) })
}

// ACLOf is ACL(path) for a file of stat st, without reading it when no
// ACL could let anyone but the owner write it: an ACL's mask (or, in an
// ACL without one, its owning group's entry) is the mode's group bits,
// and its other entry the mode's other bits (the kernel keeps them one:
// acl(5)), so with neither writable every entry but the owner's is
// masked read-only, whatever the ACL says. It saves a getxattr for each
// directory on a walk (0755, as most are), at every spawn's log check.
func ACLOf(path string, st *unix.Stat_t) ([]byte, error) {
	if st.Mode&0o022 == 0 {
		return nil, nil
	}
	return ACL(path)
}

// FileACL returns the access ACL of an open file, nil if it has none.
func FileACL(fd int) ([]byte, error) {
	return readACL(func(b []byte) (int, error) { return unix.Fgetxattr(fd, aclName, b) })
}

func readACL(get func([]byte) (int, error)) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := get(buf)
		switch {
		case err == nil:
			return buf[:n], nil
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < maxACLBytes:
			buf = make([]byte, maxACLBytes)
		default:
			return nil, fmt.Errorf("read its ACL: %w", err)
		}
	}
}

func allEmpty(names []string) bool {
	for _, n := range names {
		if n != "" && n != "." {
			return false
		}
	}
	return true
}

// UserName is "uid N (NAME)", or "uid N" when N has no name.
func UserName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("uid %s (%s)", id, u.Username)
	}
	return "uid " + id
}

// GroupName is "N (NAME)", or "N" when N has no name.
func GroupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return fmt.Sprintf("%s (%s)", id, g.Name)
	}
	return id
}
