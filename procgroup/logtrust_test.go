package procgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/pathtrust/pathtrusttest"
)

const nobody = pathtrusttest.Nobody

// othersDir makes a directory owned by nobody, mode 0755, in a directory
// of root's, and a root-owned file beside it with the content the test
// checks is never touched.
func othersDir(t *testing.T) (dir, secret string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	secret = filepath.Join(base, "secret")
	if err := os.WriteFile(secret, []byte("root's own\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

func untouched(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "root's own\n" {
		t.Errorf("%s was written through a planted name: %q %v", path, b, err)
	}
}

// A log directory owned by another user, who planted app.log -> a file of
// root's: the program does not start (FATAL, the error naming the
// directory, its owner and mode) and root's file stays untouched. On main
// the child's output was appended to root's file.
func TestLogInAnotherUsersDirectoryRefusesTheStart(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir, secret := othersDir(t)
	log := filepath.Join(dir, "app.log")
	if err := os.Symlink(secret, log); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, log+".1"); err != nil {
		t.Fatal(err)
	}
	spec := helperSpec("echo", "planted", "planted")
	spec.StdoutLogfile = log
	spec.RedirectStderr = true
	refusedStart(t, spec, secret, "stdout_logfile", dir, "owned by uid 65534 (nobody)", "mode 0755")
}

// refusedStart starts spec's process and waits until it is FATAL (its
// spawns failed, retried), or secret was written: it must be the first,
// secret untouched, the spawn's error saying each of wants.
func refusedStart(t *testing.T, spec *Spec, secret string, wants ...string) {
	t.Helper()
	p := newTestPool(t, spec).Procs()[0]
	_ = p.Start()
	var st Status
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st = p.Status()
		b, _ := os.ReadFile(secret)
		if st.State == Fatal || string(b) != "root's own\n" || time.Now().After(deadline) {
			break
		}
	}
	untouched(t, secret)
	if st.State != Fatal {
		t.Fatalf("want FATAL, have %s (%s)", st.State, st.SpawnError)
	}
	for _, want := range wants {
		if !strings.Contains(st.SpawnError, want) {
			t.Errorf("spawn error %q does not say %q", st.SpawnError, want)
		}
	}
}

// A spawn checks a directory both its logs are in once; a stderr log in
// a directory of its own is checked on its own: stdout's in a directory
// of root's does not vouch for stderr's in another user's.
func TestStderrLogInAnotherUsersDirectoryRefusesTheStart(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir, secret := othersDir(t)
	errLog := filepath.Join(dir, "app.err")
	if err := os.Symlink(secret, errLog); err != nil {
		t.Fatal(err)
	}
	spec := helperSpec("echo", "planted", "planted")
	spec.StdoutLogfile = filepath.Join(t.TempDir(), "app.log")
	spec.StderrLogfile = errLog
	refusedStart(t, spec, secret, "stderr_logfile", dir, "owned by uid 65534 (nobody)")
}

// The program's own log directory (`user = app`, /var/log/app owned by
// app) is accepted, but what that user plants at the log's path is never
// written through: a symlink, a hard link to a file of root's, a FIFO (on
// main: written, written, and the open blocked for ever). Planted backups
// (path.1, path.2 -> root's file) are moved by rotation, never followed.
func TestLogInTheProgramsDirectoryWritesOnlyARealFile(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir, secret := othersDir(t)
	log := filepath.Join(dir, "app.log")
	write := func(r *rotator, line string) error {
		done := make(chan error, 1)
		go func() { _, err := r.Write([]byte(line)); done <- err }()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatalf("a write to %s hung", log)
			return nil
		}
	}
	plants := map[string]func() error{
		"symlink":   func() error { return os.Symlink(secret, log) },
		"hard link": func() error { return os.Link(secret, log) },
		"fifo":      func() error { return syscall.Mkfifo(log, 0o666) },
	}
	for what, plant := range plants {
		if err := plant(); err != nil {
			t.Fatal(err)
		}
		r, _ := newRotator(log, 0, 0)
		r.program = nobody
		if err := write(r, "through a "+what+"\n"); err == nil {
			t.Errorf("a write through a planted %s succeeded", what)
		}
		r.Close()
		untouched(t, secret)
		if err := os.Remove(log); err != nil {
			t.Fatal(err)
		}
	}

	for _, n := range []string{".1", ".2"} {
		if err := os.Symlink(secret, log+n); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := newRotator(log, 10, 2)
	r.program = nobody
	defer r.Close()
	for _, line := range []string{"one 56789\n", "two 56789\n", "three 789\n"} {
		if err := write(r, line); err != nil {
			t.Fatal(err)
		}
	}
	untouched(t, secret)
	// Each line fills a file (limit 10), which then rotates.
	for n, want := range map[string]string{"": "", ".1": "three 789\n", ".2": "two 56789\n"} {
		if fi, err := os.Lstat(log + n); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s%s: want a regular file: %v %v", log, n, fi, err)
			continue
		}
		if b, _ := os.ReadFile(log + n); string(b) != want {
			t.Errorf("%s%s: want %q, have %q", log, n, want, b)
		}
	}
}

// A log directory that becomes another user's while the process runs
// fails the log's next open (at rotation), counted, without stopping the
// process's output elsewhere or touching what is planted.
func TestLogDirectoryTakenOverLaterFailsTheLog(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	base := t.TempDir()
	dir := filepath.Join(base, "logs")
	log := filepath.Join(dir, "app.log")
	r, _ := newRotator(log, 15, 1)
	defer r.Close()
	if _, err := r.Write([]byte("one 56789\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := r.Write([]byte("two 56789\n"))
	if err == nil || !strings.Contains(err.Error(), "writable by every user") {
		t.Fatalf("want the rotation refused in a world-writable directory, have %v", err)
	}
	if b, _ := os.ReadFile(log); string(b) != "one 56789\n" {
		t.Errorf("the log changed: %q", b)
	}
	if _, err := os.Lstat(log + ".1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rotated in a world-writable directory: %v", err)
	}
}
