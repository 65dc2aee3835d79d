package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gosup/gosup/procgroup/pathtrust"
	"golang.org/x/sys/unix"
)

// A daemon running as root runs the commands its configuration names, so
// every file it reads (the main file, the included files, the nginx
// template) must be one that only root can change, or replace: like sshd's
// StrictModes and sudo's check of sudoers,
//
//   - the file is a regular file owned by root, not writable by others
//     (group-writable only when its group is root, as sudo allows);
//   - every directory on the way to it, from /, and through every symlink
//     (a symlink to a root-owned file is fine: what counts is who can
//     replace the link), is owned by root and not writable by others, or
//     is sticky (/tmp) and the entry in it (a directory, a symlink, the
//     file) is root's, which others then cannot rename or remove;
//   - a POSIX ACL counts as the mode does: an entry that lets another
//     user or group write the file or a directory on the way refuses it
//     (see procgroup/pathtrust, shared with the socket
//     directory's check);
//   - the file is opened without following a symlink at its end and
//     checked through that descriptor, so the bytes read are the file
//     checked.
//
// LoadOptions.InsecureFiles (gosup's --insecure-config) turns this off. A
// daemon that does not run as root reads its files as any program does.

// insecureHint is what every refusal ends with.
const insecureHint = "or pass --insecure-config to accept it anyway"

// maxFileBytes bounds a configuration file (the main one, an included
// one, the nginx template): far above any real one, so that a mistaken
// include (a log, a link to /dev/zero) is refused instead of read into
// memory.
const maxFileBytes = 4 << 20

// trustPolicy is whom a root daemon trusts with its files: root, and
// root's group.
var trustPolicy = pathtrust.Policy{Owners: []uint32{0}, Groups: []uint32{0}}

// readFile reads a configuration file, at most maxFileBytes; with strict,
// only one that root alone can change (see above). A file that fails the
// check, or is too large, is an *Error naming it, what is wrong and what
// to do.
func readFile(path string, strict bool) ([]byte, error) {
	if !strict {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readBounded(path, f)
	}
	real, err := pathtrust.Resolve(path, trustPolicy, false)
	if p := (*pathtrust.Problem)(nil); errors.As(err, &p) {
		return nil, untrusted(path, p.What, p.Fix)
	} else if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, untrusted(path, fmt.Sprintf("%s is not a regular file", real), "")
	}
	var problems, fixes []string
	if st.Uid != 0 {
		problems = append(problems, fmt.Sprintf("owned by %s, not root", pathtrust.UserName(st.Uid)))
		fixes = append(fixes, "chown root "+real)
	}
	acl, err := pathtrust.FileACL(int(f.Fd()))
	if err != nil {
		return nil, untrusted(path, fmt.Sprintf("%s: %v", real, err), "")
	}
	if w := pathtrust.Writers(&st, acl, trustPolicy); w.ACL {
		problems = append(problems, fmt.Sprintf("its ACL lets %s write it", w.Who))
		fixes = append(fixes, "setfacl -b "+real)
	} else if w.Who != "" {
		problems = append(problems, fmt.Sprintf("mode %04o lets %s write it", st.Mode&0o777, w.Who))
		fixes = append(fixes, "chmod go-w "+real)
	}
	if len(problems) > 0 {
		what := strings.Join(problems, ", and ")
		if abs, _ := filepath.Abs(path); real != abs {
			what = fmt.Sprintf("%s, which it links to, is %s", real, what)
		}
		return nil, untrusted(path, what, strings.Join(fixes, " and "))
	}
	return readBounded(path, f)
}

// readBounded reads f, the file at path, refusing more than maxFileBytes.
func readBounded(path string, f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileBytes {
		return nil, &Error{File: path, Msg: fmt.Sprintf("more than %d MiB: too large for a configuration file (is it one?)", maxFileBytes>>20)}
	}
	return b, nil
}

// untrusted is the refusal of path: what is wrong and what to do.
func untrusted(path, what, fix string) *Error {
	msg := what + ": gosup runs as root and reads only files that root alone can change; "
	if fix != "" {
		msg += fix + ", "
	}
	return &Error{File: path, Msg: msg + insecureHint}
}
