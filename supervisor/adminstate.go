package supervisor

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/gosup/gosup/supervisor/internal/atomicfile"
)

// adminState remembers which processes an operator stopped with
// `gosup ctl stop`, in SOCKET.stopped, so that they stay stopped when the
// daemon restarts (supervisord forgets: Supervisor#591) until `ctl start`.
// Unlike the state file it survives a clean shutdown.
type adminState struct {
	path    string
	mu      sync.Mutex
	stopped map[string]bool
}

func loadAdminState(socket string, log *slog.Logger) *adminState {
	a := &adminState{path: socket + ".stopped", stopped: map[string]bool{}}
	// Read as the state file is: never through a symlink, and only if
	// it is gosup's own.
	b, err := readOwn(a.path, maxStateBytes)
	if errors.Is(err, errNotOwn) {
		log.Warn("ignoring the processes stopped with ctl stop before: the file is not gosup's own", "path", a.path, "err", err)
	} else if err != nil {
		log.Warn("ignoring the processes stopped with ctl stop before: could not read the file", "path", a.path, "err", err)
	}
	if b != nil {
		var names []string
		if json.Unmarshal(b, &names) == nil {
			for _, n := range names {
				a.stopped[n] = true
			}
		}
	}
	return a
}

func (a *adminState) isStopped(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopped[name]
}

// set marks names stopped (or not) and saves the set if it changed.
func (a *adminState) set(stopped bool, names ...string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := false
	for _, n := range names {
		if a.stopped[n] != stopped {
			changed = true
			if stopped {
				a.stopped[n] = true
			} else {
				delete(a.stopped, n)
			}
		}
	}
	if !changed {
		return nil
	}
	return a.saveLocked()
}

// save writes the set again (after the socket directory was removed).
func (a *adminState) save() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.saveLocked()
}

func (a *adminState) saveLocked() error {
	names := make([]string, 0, len(a.stopped))
	for n := range a.stopped {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) == 0 {
		err := os.Remove(a.path)
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	b, _ := json.Marshal(names)
	return atomicfile.Write(a.path, b)
}
