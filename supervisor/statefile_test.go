package supervisor

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/guard/guardtest"
	"github.com/gosup/gosup/procgroup/pathtrust/pathtrusttest"
	"github.com/gosup/gosup/supervisor/config"
	"golang.org/x/sys/unix"
)

// A /tmp cleaner removing only the aged state file: the daemon's socket
// check notices and the state file is written again, said once.
func TestRemovedStateFileIsRewritten(t *testing.T) {
	file := writeConfig(t, program("a", "sleep", 1, ""))
	_, cl, logs := guardedDaemon(t, file, nil)
	waitAll(t, cl, "RUNNING")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	state := cfg.Supervisor.Socket + ".state"
	recorded := func() bool {
		b, err := os.ReadFile(state)
		return err == nil && strings.Contains(string(b), `"a:a_0"`)
	}
	waitLog(t, "the state file naming a:a_0", recorded)
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	waitLog(t, "the state file to come back", recorded)
	waitLog(t, "the warning", func() bool { return strings.Contains(logs.String(), "the state file was removed") })
	if n := strings.Count(logs.String(), "the state file was removed"); n != 1 {
		t.Errorf("want one warning about the removed state file, have %d:\n%s", n, logs)
	}
}

// After the socket directory was removed and made again by another user
// (0777, uid 65534), the state writer does not create its file in it:
// only relock, once it has checked the directory, lets it.
func TestStateWriterKeepsOutOfADirectoryItDidNotCheck(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	sock, in := claimNew(t)
	in.start()
	waitLog(t, "the state file", func() bool { _, err := os.Stat(sock + ".state"); return err == nil })
	dir := filepath.Dir(sock)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	mkdir(t, dir, 0o777)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	before := in.passes.Load()
	in.recordSpawn("a:a_0", os.Getpid(), 0)
	waitLog(t, "the writer's pass", func() bool { return in.passes.Load() > before })
	if _, err := os.Lstat(sock + ".state"); err == nil {
		t.Errorf("the state writer created %s in a directory of uid 65534, mode 0777", sock+".state")
	}
	// relock refuses that directory, and the writer stays out.
	if err := in.relock(); err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("relock in a directory of uid 65534: %v", err)
	}
	before = in.passes.Load()
	in.markDirty()
	waitLog(t, "the writer's pass", func() bool { return in.passes.Load() > before })
	if _, err := os.Lstat(sock + ".state"); err == nil {
		t.Errorf("the state writer created %s after relock refused the directory", sock+".state")
	}
	// Once the directory is ours again, relock lets it write.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := in.relock(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, "the state file back", func() bool {
		b, err := os.ReadFile(sock + ".state")
		return err == nil && strings.Contains(string(b), `"a:a_0"`)
	})
}

// A state file that cannot be read (here: over the size bound) is not
// called "not gosup's own"; one that is not (a FIFO) says what it is,
// with its mode in octal.
func TestStateFileFailuresAreNamed(t *testing.T) {
	sock := filepath.Join(writeDir(t), "s", "gosup.sock")
	logs := &guardtest.LogBuffer{}
	in, err := claim(sock, 0o700, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer in.release()
	state := sock + ".state"
	if err := os.WriteFile(state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(state, maxStateBytes+1); err != nil {
		t.Fatal(err)
	}
	in.killLeftovers(time.Second)
	if s := logs.String(); !strings.Contains(s, "could not read the state file") || strings.Contains(s, "not gosup's own") {
		t.Errorf("an oversized state file of ours: %s", s)
	}
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(state, 0o644); err != nil {
		t.Fatal(err)
	}
	in.killLeftovers(time.Second)
	if s := logs.String(); !strings.Contains(s, "not gosup's own") || !strings.Contains(s, "is a FIFO (mode 0644)") {
		t.Errorf("a FIFO as the state file: %s", s)
	}
}
