package supervisor

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/config"
)

// debounce is how long the watcher waits after the last change to a file
// before acting: editors save in several steps (truncate, write, rename).
const debounce = 150 * time.Millisecond

// watchSet is what the watcher looks at for one configuration.
type watchSet struct {
	config   bool                               // [supervisor] watch: the config files and include patterns
	files    map[string]bool                    // files whose change reloads
	patterns []string                           // include globs: a new matching file reloads
	touch    map[string][]procgroup.ProgramName // touch_reload path → the programs it restarts
	dirs     []string                           // what fsnotify watches: directories survive renames
}

func newWatchSet(cfg *config.Config) watchSet {
	ws := watchSet{config: cfg.Supervisor.Watch, files: map[string]bool{}, touch: map[string][]procgroup.ProgramName{}}
	dirs := map[string]bool{}
	if ws.config {
		for _, f := range cfg.Files {
			ws.files[f] = true
			dirs[filepath.Dir(f)] = true
		}
		ws.patterns = cfg.Include
		for _, p := range cfg.Include {
			dirs[filepath.Dir(p)] = true
		}
	}
	for _, p := range cfg.Programs {
		for _, f := range p.TouchReload {
			ws.touch[f] = append(ws.touch[f], procgroup.ProgramName(p.Name))
			dirs[filepath.Dir(f)] = true
		}
	}
	ws.dirs = slices.Sorted(maps.Keys(dirs))
	return ws
}

// reloads reports whether a change to name should reload the configuration.
func (ws watchSet) reloads(name string) bool {
	if !ws.config {
		return false
	}
	if ws.files[name] {
		return true
	}
	for _, p := range ws.patterns {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// watchLoop watches the configuration files (with watch = true) and the
// touch_reload files. One watcher lives as long as the loop, and a reload
// (which may change both) only adds and removes directories, so no change
// is missed while it does.
func (s *Supervisor) watchLoop(ctx context.Context) {
	// The daemon serves once the first watch is in place, or once this
	// loop ended (a panic, no inotify) without one: it never waits longer.
	defer s.watched()
	if s.hooks.watch != nil {
		s.hooks.watch()
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Error("cannot watch files; reload with gosup ctl reload or SIGHUP", "err", err)
		return
	}
	defer w.Close()
	ws := s.rewatch(w, nil)
	s.watched()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	reload := false
	touched := map[procgroup.ProgramName]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.watchReset:
			ws = s.rewatch(w, ws.dirs)
			// A file may have appeared in a newly watched directory
			// between the reload's reading and the watch.
			if cfg := s.config(); ws.config && !slices.Equal(cfg.MatchIncludes(), cfg.Files[1:]) {
				s.RequestReload()
			}
		case err := <-w.Errors:
			s.log.Warn("file watcher", "err", err)
		case ev := <-w.Events:
			name := filepath.Clean(ev.Name)
			hit := false
			if ws.reloads(name) {
				reload, hit = true, true
			}
			if progs, ok := ws.touch[name]; ok && !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
				for _, prog := range progs {
					touched[prog] = true
				}
				hit = true
			}
			if hit {
				s.log.Debug("file changed", "file", name, "op", ev.Op.String())
				timer.Reset(debounce)
			}
		case <-timer.C:
			if reload {
				reload = false
				s.log.Info("configuration file changed: reloading")
				s.RequestReload()
			}
			if len(touched) > 0 {
				s.touchMu.Lock()
				for prog := range touched {
					delete(touched, prog)
					s.touchPending[prog] = true
				}
				s.touchMu.Unlock()
				select {
				case s.touchKick <- struct{}{}:
				default:
				}
			}
		}
	}
}

// watched tells the daemon's start that the file watcher is in place (or
// will not be).
func (s *Supervisor) watched() {
	s.watchingOnce.Do(func() { close(s.watching) })
}

// rewatch makes w watch the directories the current configuration needs,
// given those it watches now.
func (s *Supervisor) rewatch(w *fsnotify.Watcher, watched []string) watchSet {
	ws := newWatchSet(s.config())
	for _, d := range watched {
		if !slices.Contains(ws.dirs, d) {
			_ = w.Remove(d)
		}
	}
	var ok []string // what is watched now; a failed one is tried again at the next reload
	for _, d := range ws.dirs {
		if slices.Contains(watched, d) {
			ok = append(ok, d)
			continue
		}
		if strings.ContainsAny(d, "*?[") {
			s.log.Warn("not watching a directory given by a pattern", "dir", d)
			continue
		}
		if err := w.Add(d); err != nil {
			s.log.Warn("cannot watch directory; changes in it are not picked up until the next reload", "dir", d, "err", err)
			continue
		}
		ok = append(ok, d)
	}
	ws.dirs = ok
	if len(ws.dirs) > 0 {
		s.log.Debug("watching", "dirs", strings.Join(ws.dirs, " "))
	}
	return ws
}

// touchLoop restarts the programs whose touch_reload files changed, each
// in its own lane: a program stuck in a long stop holds up only itself. A
// program touched again while its restart runs is restarted once more
// after it.
//
// If the loop itself panics it does not wait for its restarts in flight
// (one may be a 600 s stop): the guard restarts it at once, and those
// restarts end on their own, in their lanes, which shutdown waits for.
func (s *Supervisor) touchLoop(ctx context.Context) {
	var wg sync.WaitGroup
	exited := make(chan struct{}) // a restart ending after the loop tells nobody
	clean := false
	defer func() {
		close(exited)
		if clean {
			wg.Wait()
		}
	}()
	running := map[procgroup.ProgramName]bool{}
	finished := make(chan procgroup.ProgramName)
	for {
		select {
		case <-ctx.Done():
			clean = true
			return
		case <-s.touchKick:
		case prog := <-finished:
			delete(running, prog)
			s.touchMu.Lock()
			delete(s.touchRunning, prog)
			s.touchMu.Unlock()
		}
		if s.hooks.touchLoop != nil {
			s.hooks.touchLoop()
		}
		s.touchMu.Lock()
		for _, prog := range slices.Sorted(maps.Keys(s.touchPending)) {
			if running[prog] {
				continue
			}
			delete(s.touchPending, prog)
			running[prog] = true
			s.touchRunning[prog] = true
			wg.Go(func() {
				s.guard.Do("touch_reload", "that restart was abandoned; touching the file again retries it", func() { s.touchRestart(ctx, prog) })
				select {
				case finished <- prog:
				case <-exited:
				case <-ctx.Done():
				}
			})
		}
		s.touchMu.Unlock()
	}
}

// touchRestart restarts a program's processes, rolling, for touch_reload.
func (s *Supervisor) touchRestart(ctx context.Context, prog procgroup.ProgramName) {
	procs, l, err := s.claimFunc(withOp(ctx, "a touch_reload restart"), func() ([]*procgroup.Process, error) {
		pool := s.pool(prog)
		if pool == nil {
			return nil, errors.New("the program is no longer configured")
		}
		return pool.Procs(), nil
	})
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, errShuttingDown) {
			s.log.Warn("touch_reload: not restarting", "program", prog, "err", err)
		}
		return
	}
	defer l.release()
	s.log.Info("touch_reload: restarting, rolling", "program", prog)
	for _, r := range s.rollingRestart(ctx, l, procs, false) {
		if !r.OK {
			s.log.Error("touch_reload restart failed", "process", r.Name, "err", r.Message)
		}
	}
}
