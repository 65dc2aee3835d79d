package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
//     is sticky (/tmp) and the entry in it is root's, which others then
//     cannot rename or remove;
//   - the file is opened without following a symlink at its end and
//     checked through that descriptor, so the bytes read are the file
//     checked.
//
// LoadOptions.InsecureFiles (gosup's --insecure-config) turns this off. A
// daemon that does not run as root reads its files as any program does.

// maxLinks bounds the symlinks followed on the way to one file, as the
// kernel's ELOOP does.
const maxLinks = 40

// insecureHint is what every refusal ends with.
const insecureHint = "or pass --insecure-config to accept it anyway"

// maxFileBytes bounds a configuration file (the main one, an included
// one, the nginx template): far above any real one, so that a mistaken
// include (a log, a link to /dev/zero) is refused instead of read into
// memory.
const maxFileBytes = 4 << 20

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
	real, err := resolveTrusted(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: no owner information", real)
	}
	if !fi.Mode().IsRegular() {
		return nil, untrusted(path, fmt.Sprintf("%s is not a regular file", real), "")
	}
	var problems, fixes []string
	if st.Uid != 0 {
		problems = append(problems, fmt.Sprintf("owned by %s, not root", userName(st.Uid)))
		fixes = append(fixes, "chown root "+real)
	}
	if w := othersWrite(fi.Mode(), st.Gid); w != "" {
		problems = append(problems, fmt.Sprintf("mode %04o lets %s write it", fi.Mode().Perm(), w))
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

// resolveTrusted follows path from / one name at a time, through its
// symlinks, checking each directory on the way, and returns the file it
// names (not itself checked: readFile checks it through its descriptor).
func resolveTrusted(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	dir := "/"
	dfi, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	if err := checkDir(path, dir, dfi); err != nil {
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
			// dir has no symlink in it, so its parent is what .. names,
			// and was checked on the way down.
			dir = filepath.Dir(dir)
			if dfi, err = os.Lstat(dir); err != nil {
				return "", err
			}
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			// As os.ReadFile would say it: open PATH: no such file or directory.
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", &os.PathError{Op: "open", Path: path, Err: err}
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return "", fmt.Errorf("%s: no owner information", p)
		}
		// Who may replace p: anyone who may write dir, unless dir is
		// sticky and p is root's.
		if w := othersWrite(dfi.Mode(), dirGid(dfi)); w != "" && (dfi.Mode()&os.ModeSticky == 0 || st.Uid != 0) {
			what := fmt.Sprintf("directory %s (mode %04o) lets %s replace %s", dir, dfi.Mode().Perm(), w, name)
			fix := "chmod go-w " + dir
			if dfi.Mode()&os.ModeSticky != 0 {
				what = fmt.Sprintf("%s is owned by %s in the sticky directory %s, which lets its owner replace it", p, userName(st.Uid), dir)
				fix = "chown root " + p
			}
			return "", untrusted(path, what, fix)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if links++; links > maxLinks {
				return "", &os.PathError{Op: "open", Path: path, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(p)
			if err != nil {
				return "", err
			}
			if filepath.IsAbs(target) {
				dir = "/"
				if dfi, err = os.Lstat(dir); err != nil {
					return "", err
				}
			}
			rest = append(strings.Split(target, "/"), rest...)
			continue
		}
		if len(rest) == 0 || allEmpty(rest) {
			return p, nil
		}
		if !fi.IsDir() {
			return "", &os.PathError{Op: "open", Path: path, Err: syscall.ENOTDIR}
		}
		if err := checkDir(path, p, fi); err != nil {
			return "", err
		}
		dir, dfi = p, fi
	}
	return dir, nil
}

// checkDir refuses a directory on the way to path that is not root's.
// Whether others may write it is checked per entry (see resolveTrusted).
func checkDir(path, dir string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", dir)
	}
	if st.Uid != 0 {
		return untrusted(path, fmt.Sprintf("directory %s is owned by %s, not root, who could replace what is in it", dir, userName(st.Uid)), "chown root "+dir)
	}
	return nil
}

// othersWrite says who besides root may write a file of mode and group
// gid: "every user", "group NAME", or "" for no one.
func othersWrite(mode os.FileMode, gid uint32) string {
	switch {
	case mode&0o002 != 0:
		return "every user"
	case mode&0o020 != 0 && gid != 0:
		return "group " + groupName(gid)
	}
	return ""
}

func dirGid(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Gid
	}
	return 0
}

func allEmpty(names []string) bool {
	for _, n := range names {
		if n != "" && n != "." {
			return false
		}
	}
	return true
}

// userName is "uid N (NAME)", or "uid N" when N has no name.
func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("uid %s (%s)", id, u.Username)
	}
	return "uid " + id
}

// groupName is "N (NAME)", or "N" when N has no name.
func groupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return fmt.Sprintf("%s (%s)", id, g.Name)
	}
	return id
}
