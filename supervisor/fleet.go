package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/haproxy"
	"github.com/gosup/gosup/supervisor/nginx"
	"github.com/gosup/gosup/supervisor/registry"
	"github.com/gosup/gosup/supervisor/registry/etcd"
	"github.com/gosup/gosup/templates"
)

// fleetRun is the watch of the registry in force: every host's members of
// the upstreams this daemon renders from the registry (a registry-sourced
// [nginx.upstream.NAME], an [haproxy.backend.NAME]).
type fleetRun struct {
	cfg    *config.Registry
	client *etcd.Client
	w      *registry.Watcher
	cancel context.CancelFunc
	done   chan struct{}
}

// startFleet starts watching under cfg's [registry] when cfg renders an
// upstream from it (nil otherwise). Each change of the members renders
// the balancers again.
func (s *Supervisor) startFleet(cfg *config.Config) (*fleetRun, error) {
	rc := cfg.Registry
	if rc == nil || len(cfg.RegistryUpstreams()) == 0 {
		return nil, nil
	}
	client, err := newEtcdClient(rc, etcd.DefaultTimeout)
	if err != nil {
		return nil, err
	}
	f := &fleetRun{cfg: rc, client: client, done: make(chan struct{})}
	f.w = registry.NewWatcher(registry.WatcherOptions{
		Client: client, Prefix: rc.Prefix, Log: s.log.With("part", "registry watch"),
		Changed: s.submitNginx,
	})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		s.guard.Run(ctx, "registry watch", f.w.Run)
	}()
	return f, nil
}

// newEtcdClient makes a client for [registry] rc, each request attempt
// bounded by timeout.
func newEtcdClient(rc *config.Registry, timeout time.Duration) (*etcd.Client, error) {
	tc, err := rc.TLS()
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	client, err := etcd.New(etcd.Config{Endpoints: slices.Clone(rc.Endpoints), TLS: tc, Username: rc.Username, Password: rc.Password, Timeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return client, nil
}

func (f *fleetRun) stop() {
	f.cancel()
	<-f.done
	f.client.Close()
}

// swapFleet makes the watch match next (a reload): the same [registry]
// keeps its watch and members; another starts a new watch, and until it
// has read the members the balancers keep their files as they are.
func (s *Supervisor) swapFleet(prev, next *config.Config) {
	old := s.fleet.Load()
	need := next.Registry != nil && len(next.RegistryUpstreams()) > 0
	if old != nil && need && registrySame(prev.Registry, next.Registry) {
		return
	}
	var f *fleetRun
	if need {
		var err error
		if f, err = s.startFleet(next); err != nil {
			s.log.Error("registry: not watching", "err", err)
		}
	}
	s.fleet.Store(f)
	if old != nil {
		old.stop()
	}
	// A first read done before the Store above found no watch to render.
	s.submitNginx()
}

// registrySame reports whether two [registry] tables reach the same
// members the same way.
func registrySame(a, b *config.Registry) bool {
	return a != nil && b != nil && slices.Equal(a.Endpoints, b.Endpoints) && a.Prefix == b.Prefix &&
		bytes.Equal(a.CA, b.CA) && bytes.Equal(a.Cert, b.Cert) && bytes.Equal(a.Key, b.Key) &&
		a.Username == b.Username && a.Password == b.Password
}

// remoteServers gives the servers of cfg's registry-sourced upstreams as
// the watch holds them, and false while there is nothing to render (the
// members were never read). An upstream whose members are all gone keeps
// the servers it last rendered: an empty upstream is never rendered (nginx
// refuses one; HAProxy would answer every request 503), and the status
// says so.
func (s *Supervisor) remoteServers(cfg *config.Config) (config.Remote, bool) {
	names := cfg.RegistryUpstreams()
	if len(names) == 0 {
		return nil, true
	}
	f := s.fleet.Load()
	if f == nil {
		return nil, false
	}
	ms, synced := f.w.Members()
	s.fleetMu.Lock()
	defer s.fleetMu.Unlock()
	if s.fleetLast == nil {
		s.fleetLast = map[string][]templates.Server{}
	}
	remote := config.Remote{}
	if !synced {
		// What the previous image rendered (an upgrade), if it rendered
		// every one of them.
		for _, name := range names {
			servers, ok := s.fleetLast[name]
			if !ok {
				return nil, false
			}
			remote[name] = servers
		}
		return remote, true
	}
	for _, name := range names {
		servers := memberServers(ms[name])
		if len(servers) == 0 {
			servers = s.fleetLast[name]
		} else {
			s.fleetLast[name] = servers
		}
		remote[name] = servers
	}
	return remote, true
}

// seedFleetLast takes the servers of the registry-sourced upstreams the
// previous image last rendered (st.Last, handed over by an upgrade): what
// this one renders until its watch has read the members.
func (s *Supervisor) seedFleetLast(st *nginx.State) {
	if st == nil || st.Last == nil {
		return
	}
	s.fleetMu.Lock()
	defer s.fleetMu.Unlock()
	if s.fleetLast == nil {
		s.fleetLast = map[string][]templates.Server{}
	}
	for _, u := range st.Last.Upstreams {
		if u.Source == config.SourceRegistry {
			s.fleetLast[u.Name] = slices.Clone(u.Servers)
		}
	}
}

// fleetWarnings are the status WARNING lines of the registry watch: etcd
// unreachable (the members last known rendered), the members never read
// (nothing rendered), an upstream without members (its last servers
// kept).
func (s *Supervisor) fleetWarnings(cfg *config.Config) []string {
	f := s.fleet.Load()
	names := cfg.RegistryUpstreams()
	if f == nil || len(names) == 0 {
		return nil
	}
	var out []string
	st := f.w.Status()
	switch {
	case !st.Synced && st.State == "unreachable":
		out = append(out, fmt.Sprintf("registry watch: etcd unreachable since %s, members never read: %s not rendered, the files left as they are: %s",
			st.Since.Format(time.DateTime), strings.Join(names, ", "), oneLine(st.LastError)))
	case st.State == "unreachable":
		out = append(out, fmt.Sprintf("registry watch: etcd unreachable since %s: rendering the %d members last known: %s",
			st.Since.Format(time.DateTime), st.Members, oneLine(st.LastError)))
	}
	if !st.Synced {
		return out
	}
	ms, _ := f.w.Members()
	s.fleetMu.Lock()
	defer s.fleetMu.Unlock()
	for _, name := range names {
		if len(ms[name]) == 0 {
			if kept := len(s.fleetLast[name]); kept > 0 {
				out = append(out, fmt.Sprintf("registry watch: upstream %s has no members in the registry: its %d servers last known stay rendered", name, kept))
			} else {
				out = append(out, fmt.Sprintf("registry watch: upstream %s has no members in the registry yet: rendered without servers (nginx: one placeholder marked down, answering 502; HAProxy: an empty backend, answering 503)", name))
			}
		}
	}
	return out
}

// fleetStatus is what ctl info and /metrics show of the registry watch
// (nil without one).
func (s *Supervisor) fleetStatus() *api.WatchStatus {
	f := s.fleet.Load()
	if f == nil {
		return nil
	}
	st := f.w.Status()
	return &api.WatchStatus{Endpoints: slices.Clone(f.cfg.Endpoints), Prefix: f.cfg.Prefix, State: st.State, Error: st.LastError,
		Since: st.Since, Synced: st.Synced, Members: st.Members, Down: st.Down, Revision: st.Revision, Ignored: st.Ignored, Dropped: st.Dropped, Reads: st.Reads}
}

// haproxySettings is what the HAProxy manager needs of a validated
// [haproxy] table: with a socket, state changes alone go through
// HAProxy's runtime API (set server BACKEND/HOST:PORT state drain|ready),
// and a reload counts once the worker answering it is a new one.
func haproxySettings(h *config.HAProxy) nginx.Settings {
	st := nginx.Settings{Name: "haproxy", Output: h.Output, Template: h.Template,
		TestCommand: h.TestCommand, ReloadCommand: h.ReloadCommand, CommandTimeout: h.CommandTimeout}
	if h.Socket != "" {
		rt := haproxy.Runtime{Socket: h.Socket, Timeout: h.CommandTimeout}
		st.Identity = rt.WorkerPid
		st.Runtime = func(ctx context.Context, changes []nginx.StateChange) error {
			for _, c := range changes {
				state := haproxy.StateReady
				if c.Server.State == registry.StateDown {
					state = haproxy.StateDrain
				}
				if err := rt.SetServerState(ctx, c.Upstream, c.Server.ID(), state); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return st
}

// memberServers is how the templates see members.
func memberServers(ms []registry.Member) []templates.Server {
	var servers []templates.Server
	for _, m := range ms {
		servers = append(servers, templates.Server{Host: m.Host, Port: m.Port, Name: m.Process, Program: m.Program,
			Process: m.Process, Weight: m.Weight, State: m.State})
	}
	return servers
}

// ReadRemote reads the registry once for the registry-sourced upstreams
// names of cfg (gosup render): their servers, and the names of those
// without members. No name reads nothing.
func ReadRemote(ctx context.Context, cfg *config.Config, names []string) (config.Remote, []string, error) {
	if len(names) == 0 {
		return nil, nil, nil
	}
	client, err := newEtcdClient(cfg.Registry, etcd.DefaultTimeout)
	if err != nil {
		return nil, nil, err
	}
	defer client.Close()
	ms, err := registry.ReadOnce(ctx, client, cfg.Registry.Prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: read the members: %w", err)
	}
	remote := config.Remote{}
	var empty []string
	for _, name := range names {
		if remote[name] = memberServers(ms[name]); len(remote[name]) == 0 {
			empty = append(empty, name)
		}
	}
	return remote, empty, nil
}
