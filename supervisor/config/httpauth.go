package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/gosup/gosup/procgroup/pathtrust"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// The [http] credential files hold secrets, so whatever user the daemon
// runs as, each must be
//
//   - a regular file reached without a symlink at its end (opened with
//     O_NOFOLLOW and checked through that descriptor), through
//     directories no one else may write (pathtrust: a sticky one, /tmp,
//     only if the entry in it is the daemon's user's or root's);
//   - owned by the daemon's user or by root;
//   - writable by no one else (mode and ACL), since whoever may write it
//     may let themselves in;
//   - readable by no other user ("others" bits): a group the operator
//     chose may read it (as a ssh key's checks would not allow, but an
//     htpasswd file shared with nginx needs).
//
// --insecure-config accepts a file failing the ownership and mode checks,
// as it does for the configuration files.

// maxSecretBytes bounds a credential file.
const maxSecretBytes = 1 << 20

// minTokenBytes is the shortest bearer token accepted: a guessable
// token is no protection.
const minTokenBytes = 16

// lineError is a mistake on one line of a credential file.
type lineError struct {
	file string
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg) }

// credError is err, from reading or parsing the credential file key
// names, as an *Error: naming the line of the credential file at fault
// when there is one, else the key's line in the configuration.
func credError(main *source, key string, err error) *Error {
	if le := (*lineError)(nil); errors.As(err, &le) {
		return &Error{File: le.file, Line: le.line, Key: key, Msg: le.msg}
	}
	return main.cerr(key, "%v", err)
}

// readSecret reads the credential file path after the checks above.
func readSecret(path string, insecure bool) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symlink: a credential file must be the file itself (point the key at %s's target)", path, path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if !insecure {
		euid := uint32(os.Geteuid())
		policy := pathtrust.Policy{Owners: []uint32{euid, 0}}
		// The way to it: no directory that someone else may write (who
		// could replace the file), as for the socket directory. Then the
		// file resolved must be the one opened.
		real, err := pathtrust.Resolve(path, policy, false)
		if p := (*pathtrust.Problem)(nil); errors.As(err, &p) {
			msg := fmt.Sprintf("%s holds secrets, but %s", path, p.What)
			if p.Fix != "" {
				msg += ": " + p.Fix + ","
			}
			return nil, fmt.Errorf("%s or pass --insecure-config to accept it anyway", msg)
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var rst unix.Stat_t
		if err := unix.Lstat(real, &rst); err != nil || rst.Dev != st.Dev || rst.Ino != st.Ino {
			return nil, fmt.Errorf("%s changed while it was read: try again", path)
		}
		var problems, fixes []string
		if st.Uid != euid && st.Uid != 0 {
			problems = append(problems, fmt.Sprintf("owned by %s, not by %s (the daemon's user) or root", pathtrust.UserName(st.Uid), pathtrust.UserName(euid)))
			fixes = append(fixes, fmt.Sprintf("chown %s %s", pathtrust.UserName(euid), path))
		}
		acl, err := pathtrust.FileACL(int(f.Fd()))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if w := pathtrust.Writers(&st, acl, policy); w.ACL {
			problems = append(problems, fmt.Sprintf("its ACL lets %s write it", w.Who))
			fixes = append(fixes, "setfacl -b "+path)
		} else if w.Who != "" {
			problems = append(problems, fmt.Sprintf("mode %04o lets %s write it", st.Mode&0o777, w.Who))
			fixes = append(fixes, "chmod go-w "+path)
		}
		if st.Mode&0o004 != 0 {
			problems = append(problems, fmt.Sprintf("mode %04o lets every user read it", st.Mode&0o777))
			fixes = append(fixes, "chmod o-rwx "+path)
		}
		if len(problems) > 0 {
			return nil, fmt.Errorf("%s holds secrets but is %s: %s, or pass --insecure-config to accept it anyway", path, strings.Join(problems, ", and "), strings.Join(fixes, " and "))
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxSecretBytes {
		return nil, fmt.Errorf("%s is larger than %d KiB: too large for a credential file (is it one?)", path, maxSecretBytes>>10)
	}
	return b, nil
}

// secretLines calls f with each line of data that is not blank or a
// comment (#), trimmed, and its number.
func secretLines(data []byte, f func(n int, line string) error) error {
	for i, line := range bytes.Split(data, []byte("\n")) {
		l := strings.TrimSpace(string(line))
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if err := f(i+1, l); err != nil {
			return err
		}
	}
	return nil
}

// readHtpasswd reads an htpasswd file of bcrypt entries (what htpasswd
// -B writes: user:$2y$cost$...), one a line, and returns the hashes by
// user.
func readHtpasswd(path string, insecure bool) (map[string][]byte, error) {
	data, err := readSecret(path, insecure)
	if err != nil {
		return nil, err
	}
	users := map[string][]byte{}
	err = secretLines(data, func(n int, line string) error {
		user, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok || user == "":
			return &lineError{path, n, "want user:bcrypt-hash, as htpasswd -B writes"}
		case users[user] != nil:
			return &lineError{path, n, fmt.Sprintf("user %q appears twice", user)}
		case !strings.HasPrefix(hash, "$2"):
			return &lineError{path, n, fmt.Sprintf("user %q: only bcrypt entries are accepted ($2y$..., as htpasswd -B writes): MD5, SHA1 and crypt hashes are too cheap to guess", user)}
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return &lineError{path, n, fmt.Sprintf("user %q: not a valid bcrypt hash: %v", user, err)}
		}
		users[user] = []byte(hash)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s has no user: add one with htpasswd -B %s USER", path, path)
	}
	return users, nil
}

// readTokens reads a bearer token file: one token a line (more than one
// lets a token be replaced without a moment when neither works).
func readTokens(path string, insecure bool) ([][]byte, error) {
	data, err := readSecret(path, insecure)
	if err != nil {
		return nil, err
	}
	var tokens [][]byte
	err = secretLines(data, func(n int, line string) error {
		if len(line) < minTokenBytes {
			return &lineError{path, n, fmt.Sprintf("token is %d bytes: want at least %d (such as the output of openssl rand -hex 32)", len(line), minTokenBytes)}
		}
		for _, r := range line {
			if r <= ' ' || r >= 0x7f {
				return &lineError{path, n, fmt.Sprintf("token holds %q: a token is printable ASCII without spaces", r)}
			}
		}
		tokens = append(tokens, []byte(line))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%s has no token: write one, such as the output of openssl rand -hex 32", path)
	}
	return tokens, nil
}
