// Package safefile opens the files the daemon writes outside its socket
// directory (program logs and their rotations, the rendered nginx file)
// so that no other user can turn those writes against the host: a root
// daemon that appends to whatever a user planted at a log path appends to
// /etc/shadow.
//
// The rule, checked at every open (a directory's owner or mode may change
// while the daemon runs):
//
//   - the way to the file's directory, from / and through every symlink,
//     passes the walk of procgroup/pathtrust with root and the daemon's
//     user as owners and root's group as a writer: every directory on the
//     way is theirs, and one that anyone else may write (by its mode or a
//     POSIX ACL) is sticky (/tmp) and what the path goes through in it (a
//     directory or a symlink) is theirs: nobody else can then replace a
//     directory on the way;
//   - the file's own directory is owned by root, the daemon's user or the
//     program's user (`user = app` with /var/log/app owned by app, as
//     supervisord setups often have: that user could only swap the files
//     in it, which the next rule covers), and writable by no one else,
//     by its mode or an ACL, unless sticky;
//   - the file itself is opened without following a symlink at its name
//     (O_NOFOLLOW) and without blocking on a FIFO (O_NONBLOCK), and must be
//     a regular file with a single link, owned by root, the daemon's user
//     or the program's user.
//
// Renames (rotation) never follow a symlink at either name, so in a
// checked directory they can only move links around, never touch what
// the links point to.
package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/gosup/gosup/procgroup/pathtrust"
	"golang.org/x/sys/unix"
)

// NoUser is the program user of a file that belongs to no program (the
// nginx file), or of a program that runs as the daemon's user.
const NoUser = -1

// ours reports whether uid is root or the daemon's user.
func ours(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// policy is whom the walk to a directory trusts: root and the daemon's
// user may own what is on the way, root's group may write it.
func policy() pathtrust.Policy {
	return pathtrust.Policy{Owners: []uint32{0, uint32(os.Geteuid())}, Groups: []uint32{0}}
}

// Dir checks dir (see the package rule; program is the uid that may also
// own dir itself, or NoUser). With mkdir, missing directories are made
// (mode 0755, owned by the daemon's user) once the way to them is checked.
func Dir(dir string, program int, mkdir bool) error {
	pol := policy()
	real, err := pathtrust.Resolve(dir, pol, false)
	if mkdir && errors.Is(err, fs.ErrNotExist) {
		// Something on the way is missing: walk to what is there, make
		// the rest under it and walk again. (A directory that exists,
		// as at every spawn but the first, is walked once.)
		real, err = pathtrust.Resolve(dir, pol, true)
	} else {
		mkdir = false
	}
	if err != nil {
		return walkError(err)
	}
	if mkdir {
		// Only under what was checked: nothing is made in a directory
		// someone else controls.
		if err := os.MkdirAll(real, 0o755); err != nil {
			return err
		}
		if real, err = pathtrust.Resolve(dir, pol, false); err != nil {
			return walkError(err)
		}
	}
	return checkDir(real, program, pol)
}

// checkDir checks the directory the files are in (dir, with no symlink in
// it): owned by root, the daemon's user or program, and writable by no
// one else (by its mode or an ACL) unless sticky.
func checkDir(dir string, program int, pol pathtrust.Policy) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s: not a directory", dir)
	}
	if program != NoUser {
		pol.Owners = append(pol.Owners, uint32(program))
	}
	mode := st.Mode & 0o7777
	if !slices.Contains(pol.Owners, st.Uid) {
		return refuse(fmt.Sprintf("directory %s is owned by %s, mode %04o", dir, pathtrust.UserName(st.Uid), mode), "chown root "+dir)
	}
	if st.Mode&unix.S_ISVTX != 0 {
		return nil
	}
	acl, err := pathtrust.ACLOf(dir, &st)
	if err != nil {
		return refuse(fmt.Sprintf("directory %s: %v", dir, err), "setfacl -b "+dir)
	}
	switch w := pathtrust.Writers(&st, acl, pol); {
	case w.ACL:
		return refuse(fmt.Sprintf("directory %s has an ACL that lets %s write it", dir, w.Who), "setfacl -b "+dir)
	case w.Who != "":
		return refuse(fmt.Sprintf("directory %s is writable by %s (owner %s, mode %04o)", dir, w.Who, pathtrust.UserName(st.Uid), mode), "chmod go-w "+dir)
	}
	return nil
}

// walkError is a refusal of the way to a directory, or err as it is.
func walkError(err error) error {
	var p *pathtrust.Problem
	if errors.As(err, &p) {
		return refuse(p.What, p.Fix)
	}
	return err
}

// refuse is the error for a directory another user could change: what is
// wrong, and fix, a command that repairs it.
func refuse(what, fix string) error {
	return fmt.Errorf("%s: another user could replace the files gosup writes there; "+
		"make it owned by root or gosup's user (or, for a log, the program's user) and not writable by group or others (%s)", what, fix)
}

// OpenAppend opens path to append to it, creating it (mode 0644) and its
// missing directories, under the package rule. program is the uid of the
// program whose log it is, or NoUser.
func OpenAppend(path string, program int) (*os.File, error) {
	if err := Dir(filepath.Dir(path), program, true); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o644)
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("open %s: it is a symbolic link; gosup does not follow one at the path of a file it writes (point the path at the file itself)", path)
	case errors.Is(err, unix.ENXIO):
		return nil, fmt.Errorf("open %s: not a regular file (a FIFO)", path)
	case err != nil:
		return nil, err
	}
	if err := checkFile(path, f, program); err != nil {
		f.Close()
		return nil, err
	}
	// A regular file: O_NONBLOCK changes nothing for it, but a child that
	// inherits the descriptor should see a plain one.
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkFile checks what was opened: a regular file, one link, ours or the
// program's.
func checkFile(path string, f *os.File, program int) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("open %s: not a regular file (%s)", path, fi.Mode().Type())
	case st.Nlink > 1:
		return fmt.Errorf("open %s: the file has %d hard links; gosup writes only a file with one", path, st.Nlink)
	case !ours(st.Uid) && (program == NoUser || int(st.Uid) != program):
		return fmt.Errorf("open %s: the file is owned by %s; gosup writes only its own files or the program's", path, pathtrust.UserName(st.Uid))
	}
	return nil
}

// CreateTemp creates a new file in dir (which the caller has checked with
// Dir) named pattern with a random part for its "*", exclusively and
// without following a symlink: what O_EXCL|O_NOFOLLOW promise.
func CreateTemp(dir, pattern string) (*os.File, error) {
	prefix, suffix, _ := strings.Cut(pattern, "*")
	for range 100 {
		var b [8]byte
		if _, err := unix.Getrandom(b[:], 0); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, fmt.Sprintf("%s%x%s", prefix, b, suffix))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create a temporary file in %s: too many names taken", dir)
}

// ProgramUser is the uid of a program's `user` (a name or a number), or
// NoUser for none or one that does not resolve (its spawn fails anyway).
func ProgramUser(name string) int {
	if name == "" {
		return NoUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return NoUser
		}
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return NoUser
	}
	return uid
}
