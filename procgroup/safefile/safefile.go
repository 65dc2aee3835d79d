// Package safefile opens the files the daemon writes outside its socket
// directory (program logs and their rotations, the rendered nginx file)
// so that no other user can turn those writes against the host: a root
// daemon that appends to whatever a user planted at a log path appends to
// /etc/shadow.
//
// The rule, checked at every open (a directory's owner or mode may change
// while the daemon runs):
//
//   - every directory on the way to the file, from / and through every
//     symlink, is owned by root or the daemon's user, and is not writable
//     by group (unless the group is root) or others, unless it is sticky
//     (/tmp), where what the path goes through must then be owned by root
//     or the daemon's user too: nobody else can then replace a directory
//     on the way;
//   - the file's own directory may also belong to the program's user
//     (`user = app` with /var/log/app owned by app, as supervisord setups
//     often have): that user could only swap the files in it, which the
//     next rule covers;
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
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// NoUser is the program user of a file that belongs to no program (the
// nginx file), or of a program that runs as the daemon's user.
const NoUser = -1

// maxLinks bounds the symlinks followed on the way to one directory, as
// the kernel's ELOOP does.
const maxLinks = 40

// ours reports whether uid is root or the daemon's user.
func ours(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// Dir checks dir (see the package rule; program is the uid that may also
// own dir itself, or NoUser). With mkdir, missing directories are made
// (mode 0755, owned by the daemon's user) as the walk reaches them.
func Dir(dir string, program int, mkdir bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	cur := "/"
	fi, err := os.Lstat(cur)
	if err != nil {
		return err
	}
	if err := checkDir(cur, fi, NoUser); err != nil {
		return err
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
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, os.ErrNotExist) && mkdir {
			if err := os.Mkdir(next, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			fi, err = os.Lstat(next)
		}
		if err != nil {
			return err
		}
		owner := fi.Sys().(*syscall.Stat_t).Uid
		last := len(strings.Join(rest, "")) == 0
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			// cur is checked: only its owner, or in a sticky cur the
			// link's owner, can replace the link.
			if !ours(owner) {
				return refuse(next, fmt.Sprintf("is a symlink owned by %s in the sticky directory %s", userName(owner), cur))
			}
			if links++; links > maxLinks {
				return fmt.Errorf("%s: too many levels of symbolic links", dir)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			rest = append(strings.Split(target, "/"), rest...)
		case fi.IsDir():
			p := NoUser
			if last {
				p = program
			}
			if err := checkDir(next, fi, p); err != nil {
				return err
			}
			cur = next
		default:
			return fmt.Errorf("%s: not a directory", next)
		}
	}
	return nil
}

// checkDir checks one directory: owned by root, the daemon's user (or
// program), not writable by others unless sticky.
func checkDir(path string, fi os.FileInfo, program int) error {
	st := fi.Sys().(*syscall.Stat_t)
	if !ours(st.Uid) && (program == NoUser || int(st.Uid) != program) {
		return refuse(path, fmt.Sprintf("is owned by %s (mode %04o)", userName(st.Uid), fi.Mode().Perm()))
	}
	if fi.Mode()&os.ModeSticky != 0 {
		return nil
	}
	switch m := fi.Mode().Perm(); {
	case m&0o002 != 0:
		return refuse(path, fmt.Sprintf("(owner %s, mode %04o) is writable by every user", userName(st.Uid), m))
	case m&0o020 != 0 && st.Gid != 0:
		return refuse(path, fmt.Sprintf("(owner %s, mode %04o) is writable by group %s", userName(st.Uid), m, groupName(st.Gid)))
	}
	return nil
}

// refuse is the error for a directory another user could change.
func refuse(path, what string) error {
	return fmt.Errorf("directory %s %s: another user could replace the files gosup writes there; "+
		"make it owned by root or gosup's user (or, for a log, the program's user) and not writable by group or others (chown, chmod go-w)", path, what)
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
		return fmt.Errorf("open %s: the file is owned by %s; gosup writes only its own files or the program's", path, userName(st.Uid))
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

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(int(uid))
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		return g.Name
	}
	return "gid " + strconv.Itoa(int(gid))
}
