package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/pathtrust/pathtrusttest"
	"github.com/gosup/gosup/procgroup/proctree"
	"github.com/gosup/gosup/supervisor/config"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// claimHelper is the helper mode "claim": claim the default socket (as
// whatever user the helper runs as) and print the outcome.
func claimHelper() int {
	in, err := claim(config.DefaultSocket(), 0o700, discardLog())
	fmt.Println("result:", err)
	if err == nil {
		in.release()
	}
	return 0
}

// A root daemon whose socket directory belongs to another user refuses
// it, naming the path, its owner and mode, and touches nothing in it:
// neither the root-owned file its .lock and .state symlinks point at, nor
// the symlinks.
func TestClaimRefusesSocketDirOfAnotherUser(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sdir := filepath.Join(dir, "s")
	if err := os.Mkdir(sdir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sdir, "gosup.sock")
	for _, ext := range []string{".lock", ".state"} {
		if err := os.Symlink(victim, sock+ext); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(sdir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	in, err := claim(sock, 0o700, discardLog())
	if err == nil {
		in.release()
		t.Error("claim accepted a socket directory owned by uid 65534")
	} else if msg := err.Error(); !strings.Contains(msg, sdir) || !strings.Contains(msg, "uid 65534") || !strings.Contains(msg, "0755") {
		t.Errorf("refusal should name %s, its owner uid 65534 and mode 0755: %v", sdir, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the root-owned file behind the symlinks was changed: %q", b)
	}
	for _, ext := range []string{".lock", ".state"} {
		if fi, err := os.Lstat(sock + ext); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s was touched: %v %v", sock+ext, fi, err)
		}
	}
}

// A directory of our own reached through a symlink, a group- or
// world-writable one, or one under a directory another user may write
// to, is refused too; a sticky world-writable ancestor (/tmp) is not.
func TestClaimRefusesUnsafeSocketDirs(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the socket directory
		want  string                                // in the error; "" for none
	}{
		{"ours, 0700", func(t *testing.T, dir string) string {
			return mkdir(t, filepath.Join(dir, "s"), 0o700)
		}, ""},
		{"created for us", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "new", "s")
		}, ""},
		{"under a sticky world-writable directory", func(t *testing.T, dir string) string {
			tmp := mkdir(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky)
			return mkdir(t, filepath.Join(tmp, "s"), 0o700)
		}, ""},
		{"group-writable", func(t *testing.T, dir string) string {
			return mkdir(t, filepath.Join(dir, "s"), 0o770)
		}, "writable by group or others"},
		{"a symlink to a directory of ours", func(t *testing.T, dir string) string {
			real := mkdir(t, filepath.Join(dir, "real"), 0o700)
			if err := os.Symlink(real, filepath.Join(dir, "s")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "s")
		}, "symlink"},
		{"under a world-writable directory", func(t *testing.T, dir string) string {
			open := mkdir(t, filepath.Join(dir, "open"), 0o777)
			return mkdir(t, filepath.Join(open, "s"), 0o700)
		}, "(mode 0777) lets every user replace s"},
		{"under a directory of another user", func(t *testing.T, dir string) string {
			theirs := mkdir(t, filepath.Join(dir, "theirs"), 0o755)
			s := mkdir(t, filepath.Join(theirs, "s"), 0o700)
			if err := os.Chown(theirs, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return s
		}, "uid 65534"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "gs")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			sdir := tc.setup(t, dir)
			in, err := claim(filepath.Join(sdir, "gosup.sock"), 0o700, discardLog())
			if err == nil {
				in.release()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("accepted; want an error saying %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("want an error saying %q, have %v", tc.want, err)
			}
		})
	}
}

func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // not cut by the umask
		t.Fatal(err)
	}
	return path
}

// A non-root daemon's default socket directory (TMPDIR/gosup-UID)
// created beforehand by another user, open to the daemon's user, is
// refused.
func TestDefaultSocketDirPrecreatedByAnotherUser(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	tmp := writeDir(t)
	if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	planted := mkdir(t, filepath.Join(tmp, "gosup-65534"), 0o777)
	t.Setenv("TMPDIR", tmp)
	t.Setenv("XDG_RUNTIME_DIR", "")
	pr, exitC := spawnAsNobody(t, tmp, "claim")
	out, _ := io.ReadAll(pr)
	<-exitC
	if !strings.Contains(string(out), "result: ") || strings.Contains(string(out), "result: <nil>") ||
		!strings.Contains(string(out), planted) || !strings.Contains(string(out), "uid 0") {
		t.Errorf("uid 65534 claimed %s, created by root: %q", planted, out)
	}
	if ents, _ := os.ReadDir(planted); len(ents) != 0 {
		t.Errorf("the daemon wrote into %s: %v", planted, ents)
	}
}

// plantState writes a state file naming pid with its real start time and
// the instance marker id, and chowns it to uid.
func plantState(t *testing.T, sock string, id string, uid int, pids ...int) {
	t.Helper()
	sf := stateFile{DaemonPid: 1, Instance: id}
	for i, pid := range pids {
		st, err := proctree.StartTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		sf.Children = append(sf.Children, childRecord{Name: fmt.Sprintf("a:a_%d", i), Pid: pid, StartTime: st})
	}
	b, _ := json.Marshal(sf)
	if err := os.WriteFile(sock+".state", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sock+".state", uid, -1); err != nil {
		t.Fatal(err)
	}
}

// groupLeader starts a helper that sleeps as the leader of its own
// process group, with extra environment.
func groupLeader(t *testing.T, env ...string) int {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	proc, _ := spawnHelper(t, &syscall.SysProcAttr{Setpgid: true}, nil, "sleep")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// The helper must have exec'd: the environment read is the new one.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", proc.Pid)); err == nil && strings.Contains(string(b), "sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper %d never exec'd", proc.Pid)
		}
	}
	return proc.Pid
}

// A state file naming a live process of ours with its real start time
// does not get it killed unless the process carries the recorded
// instance marker; one that does carry it is killed. A state file owned
// by another user is not trusted at all.
func TestLeftoversNeedOurStateAndTheMarker(t *testing.T) {
	sock := filepath.Join(writeDir(t), "gosup.sock")
	const id = "4242-planted0001"
	unmarked := groupLeader(t)
	marked := groupLeader(t, "GOSUP_INSTANCE="+id)
	plantState(t, sock, id, os.Geteuid(), unmarked, marked)
	in, err := claim(sock, 0o700, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	n := in.killLeftovers(10 * time.Second)
	in.release()
	if !alive(unmarked) {
		t.Errorf("pid %d, named in the state file but without GOSUP_INSTANCE=%s, was killed", unmarked, id)
	}
	if alive(marked) || n != 1 {
		t.Errorf("the marked leftover %d: alive %v; killed %d, want 1", marked, alive(marked), n)
	}
}

func TestLeftoversOfAStateFileNotOursAreSpared(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	sock := filepath.Join(writeDir(t), "gosup.sock")
	const id = "4242-planted0002"
	marked := groupLeader(t, "GOSUP_INSTANCE="+id)
	plantState(t, sock, id, 65534, marked)
	in, err := claim(sock, 0o700, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	n := in.killLeftovers(10 * time.Second)
	in.release()
	if !alive(marked) || n != 0 {
		t.Errorf("a state file owned by uid 65534 got %d killed (pid %d alive: %v)", n, marked, alive(marked))
	}
}

// writeDir is a fresh socket directory of ours (short path).
func writeDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// In a socket directory of our own, a .lock that is a symlink or a hard
// link to another file is refused, naming it, and the file behind it is
// left alone; a .state symlink is neither read nor followed: the new
// state file replaces the link.
func TestLinksInOurSocketDirAreNotFollowed(t *testing.T) {
	dir := writeDir(t)
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s", "gosup.sock")
	mkdir(t, filepath.Dir(sock), 0o700)
	for _, link := range []struct {
		name string
		make func(old, new string) error
		want string
	}{{"symlink", os.Symlink, "is a symlink"}, {"hard link", os.Link, "has 2 links"}} {
		if err := link.make(victim, sock+".lock"); err != nil {
			t.Fatal(err)
		}
		in, err := claim(sock, 0o700, discardLog())
		if err == nil {
			in.release()
			t.Errorf("a .lock %s was accepted", link.name)
		} else if !strings.Contains(err.Error(), sock+".lock") || !strings.Contains(err.Error(), link.want) {
			t.Errorf("a .lock %s: want an error naming it and saying %q, have %v", link.name, link.want, err)
		}
		if err := os.Remove(sock + ".lock"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(victim, sock+".state"); err != nil {
		t.Fatal(err)
	}
	in, err := claim(sock, 0o700, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	in.killLeftovers(time.Second)
	in.start()
	in.recordSpawn("a:a_0", os.Getpid(), 0)
	waitLog(t, "the new state file", func() bool {
		fi, err := os.Lstat(sock + ".state")
		return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
	})
	in.release()
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the file behind the links was changed: %q", b)
	}
}

// A symlink on the way to the socket, in a sticky world-writable
// directory (/tmp) and owned by another user, who may repoint it at a
// directory of theirs (and run an impostor daemon there), is refused,
// also when it dangles (MkdirAll would follow it); root's own link there
// is followed.
func TestSocketPathThroughAnotherUsersSymlink(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := writeDir(t)
	tmp := mkdir(t, filepath.Join(dir, "x"), 0o777|os.ModeSticky)
	rootDir := mkdir(t, filepath.Join(dir, "rootdir"), 0o755)
	for _, tc := range []struct {
		name, target string
		uid          int
	}{
		{"link", rootDir, 65534},
		{"dangling", filepath.Join(dir, "nowhere"), 65534},
		{"roots", rootDir, 0},
	} {
		link := filepath.Join(tmp, tc.name)
		if err := os.Symlink(tc.target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, tc.uid, tc.uid); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(link, "s"+tc.name, "gosup.sock")
		in, err := claim(sock, 0o700, discardLog())
		if err == nil {
			in.release()
		}
		if tc.uid == 0 {
			if err != nil {
				t.Errorf("%s: root's link in a sticky directory: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "uid 65534") {
			t.Errorf("%s: want a refusal naming the link %s and its owner uid 65534, have %v", tc.name, link, err)
		}
		if _, err := os.Lstat(filepath.Join(tc.target, "s"+tc.name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the socket directory was created through the link: %v", tc.name, err)
		}
	}
}
