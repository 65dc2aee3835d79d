package logtail

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What is planted at a log's path (by the program's user, in its own log
// directory) is not read: ctl tail and memmon's alert excerpt would
// otherwise show root's file (on main Lines returned it), and a FIFO would
// hold the reader for ever.
func TestLinesDoNotReadAPlantedName(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("root's own\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "app.log")
	if err := os.Symlink(secret, log); err != nil {
		t.Fatal(err)
	}
	b, err := Lines(log, 10, 1<<10)
	if err == nil || strings.Contains(string(b), "root's own") {
		t.Errorf("tail read through a planted symlink: %q %v", b, err)
	}
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(log, 0o666); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Lines(log, 10, 1<<10); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("tail of a FIFO: want refused, have %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail of a FIFO hung")
	}
}
