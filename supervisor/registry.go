package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/registry"
	"github.com/gosup/gosup/supervisor/registry/etcd"
)

// registryRun is one [registry] in force: its client and publisher,
// running on their own goroutine until stop.
type registryRun struct {
	cfg    *config.Registry
	pub    *registry.Publisher
	client *etcd.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// registryStopWait bounds how long the daemon waits for etcd at shutdown
// (the last removals and the lease's revocation) and when a reload
// replaces the registry's settings: an unreachable etcd delays neither
// by more.
const registryStopWait = 5 * time.Second

// registryTimeout bounds one attempt of a request to etcd under a lease
// of ttl: at most TTL/3, the renewal period, so that an endpoint that
// does not answer leaves time to renew the lease on another before it
// expires (etcd.DefaultTimeout, 5s, would exceed a 3s lease).
func registryTimeout(ttl time.Duration) time.Duration {
	return min(etcd.DefaultTimeout, ttl/3)
}

// startRegistry starts publishing under rc's settings; nil rc or rc
// without a host publishes nothing.
func (s *Supervisor) startRegistry(rc *config.Registry) (*registryRun, error) {
	if rc == nil || rc.Host == "" {
		return nil, nil
	}
	client, err := newEtcdClient(rc, registryTimeout(rc.TTL))
	if err != nil {
		return nil, err
	}
	host := rc.Host
	r := &registryRun{cfg: rc, client: client, done: make(chan struct{})}
	r.pub = registry.New(registry.Options{
		Client: client, Prefix: rc.Prefix, TTL: rc.TTL, Log: s.log.With("part", "registry"),
		Members: func() []registry.Member { return s.registryMembers(host) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		s.guard.Run(ctx, "registry", r.pub.Run)
	}()
	r.pub.Kick()
	return r, nil
}

// registryRevokeWait bounds the revocation at shutdown of a lease whose
// etcd did not answer last: tried all the same (it may answer again),
// briefly.
const registryRevokeWait = time.Second

// stop ends the publisher's goroutine, then, with revokeWithin > 0,
// revokes the daemon's lease (every member it published goes with it),
// waiting at most revokeWithin for etcd. The members stay (until the
// lease expires) without.
func (r *registryRun) stop(revokeWithin time.Duration, log interface{ Warn(string, ...any) }) {
	r.cancel()
	<-r.done
	if revokeWithin > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), revokeWithin)
		defer cancel()
		if err := r.pub.Revoke(ctx); err != nil {
			log.Warn("registry: could not revoke the daemon's lease: its members stay until it expires", "ttl", r.cfg.TTL, "err", err)
		}
	}
	r.client.Close()
}

// shutdown ends publishing as the daemon stops: the last removals (waited
// for only while etcd answers), then the lease, revoked whatever the
// state (an etcd that did not answer a moment ago may now), within
// registryStopWait while it answers, registryRevokeWait when not.
func (r *registryRun) shutdown(log interface{ Warn(string, ...any) }) {
	within := registryRevokeWait
	if r.pub.Status().State == "ok" {
		ctx, cancel := context.WithTimeout(context.Background(), registryStopWait)
		_ = r.pub.Wait(ctx, r.pub.Kick())
		cancel()
		within = registryStopWait
	}
	r.stop(within, log)
}

// currentRegistry is the publisher in force (nil without [registry]).
func (s *Supervisor) currentRegistry() *registryRun { return s.registry.Load() }

// kickRegistry tells the publisher the members may have changed. It
// takes no lock and never blocks: it is called on every process's state
// change.
func (s *Supervisor) kickRegistry() {
	if r := s.registry.Load(); r != nil {
		r.pub.Kick()
	}
}

// registryMembers is what the registry publishes: every process in an
// upstream, from the same view the nginx rendering reads (the live pools
// and the down marks, see upstreamView), that is ready and up (RUNNING)
// or on its way out (STOPPING, published down until it has stopped). A
// process marked down (draining before a planned stop) is published
// down; any other state (a crash, a restart, stopped) is not published.
func (s *Supervisor) registryMembers(host string) []registry.Member {
	var out []registry.Member
	s.upstreamView(func(_ *config.Config, pools []*procgroup.Pool, down map[string]bool) {
		for _, pool := range pools {
			for _, p := range pool.Procs() {
				spec := p.Spec()
				if spec.Program.Upstream == "" || spec.Port == 0 {
					continue
				}
				st := p.Status()
				if st.State != procgroup.Running && st.State != procgroup.Stopping {
					continue
				}
				state := registry.StateUp
				if down[spec.FullName()] || st.State == procgroup.Stopping {
					state = registry.StateDown
				}
				out = append(out, registry.Member{
					Upstream: spec.Program.Upstream, Host: host, Port: spec.Port, Weight: spec.Program.Weight,
					State: state, Program: string(spec.ProgramName), Process: spec.FullName(),
					Pid: st.Pid, StartTime: st.StartedAt,
				})
			}
		}
	})
	return out
}

// confirmRegistryDown waits (at most registryStopWait, or until ctx
// ends) until etcd shows the members marked down so far: "" once it
// does, else why not, for the drain's message. An etcd that does not
// answer now (unreachable, or not yet reached: then it holds no member
// of ours) is not waited for, as at shutdown: the drain goes on at once.
func (s *Supervisor) confirmRegistryDown(ctx context.Context) string {
	r := s.currentRegistry()
	if r == nil {
		return ""
	}
	n := r.pub.Kick()
	if st := r.pub.Status(); st.State != "ok" {
		why := st.LastError
		if why == "" {
			why = "etcd has not answered yet"
		}
		s.log.Warn("draining without the registry's confirmation: it is unreachable", "err", why)
		return "the registry is unreachable: " + oneLine(why)
	}
	wctx, cancel := context.WithTimeout(ctx, registryStopWait)
	defer cancel()
	if err := r.pub.Wait(wctx, n); err != nil {
		st := r.pub.Status()
		why := st.LastError
		if why == "" {
			why = err.Error()
		}
		s.log.Warn("draining without the registry's confirmation", "err", why)
		return "the registry did not confirm: " + oneLine(why)
	}
	return ""
}

// swapRegistry puts next's [registry] in force (a reload changed it):
// the old publisher stops, the new one publishes every member, then the
// old lease is revoked, so that a member published under the same key
// never vanishes, and one whose key moved (another prefix or host) goes
// at once.
func (s *Supervisor) swapRegistry(next *config.Registry) {
	old := s.registry.Load()
	if old != nil {
		old.cancel()
		<-old.done
		s.retireRegistry(old)
	}
	r, err := s.startRegistry(next)
	if err != nil {
		s.log.Error("registry: not publishing", "err", err)
	}
	s.registry.Store(r)
	if old == nil {
		return
	}
	s.registrySwaps.Add(1)
	go func() {
		defer s.registrySwaps.Done()
		if r != nil {
			ctx, cancel := context.WithTimeout(context.Background(), registryStopWait)
			_ = r.pub.Wait(ctx, r.pub.Kick())
			cancel()
		}
		old.stop(registryStopWait, s.log)
	}()
}

// waitRegistrySwaps waits, at most within, for the reloads' goroutines
// revoking the leases they replaced.
func (s *Supervisor) waitRegistrySwaps(within time.Duration) {
	done := make(chan struct{})
	go func() {
		s.registrySwaps.Wait()
		close(done)
	}()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("registry: shutting down before a reload's old lease was revoked: its members stay until it expires")
	}
}

// retireRegistry keeps the counts of a publisher a reload replaces.
func (s *Supervisor) retireRegistry(r *registryRun) {
	st := r.pub.Status()
	s.registryRetired.failedWrites.Add(st.FailedWrites)
	s.registryRetired.leaseGrants.Add(st.LeaseGrants)
}

// registryStatus is what ctl info, status and /metrics show of the
// registry (nil without one that publishes).
func (s *Supervisor) registryStatus() *api.RegistryStatus {
	r := s.currentRegistry()
	if r == nil {
		return nil
	}
	st := r.pub.Status()
	return &api.RegistryStatus{
		Endpoints: st.Endpoints, Prefix: r.cfg.Prefix, Host: r.cfg.Host, TTLS: r.cfg.TTL.Seconds(),
		State: st.State, Error: st.LastError, Since: st.Since, Lease: fmt.Sprintf("%x", st.Lease),
		Published: st.Published, Down: st.Down,
		FailedWrites: st.FailedWrites + s.registryRetired.failedWrites.Load(),
		LeaseGrants:  st.LeaseGrants + s.registryRetired.leaseGrants.Load(),
	}
}

// registryWarning is the status WARNING line of an unreachable registry
// ("" when it answers).
func registryWarning(st *api.RegistryStatus) string {
	if st == nil || st.State != "unreachable" {
		return ""
	}
	return fmt.Sprintf("registry: etcd unreachable since %s (%d members published, %d failed writes): %s",
		st.Since.Format(time.DateTime), st.Published, st.FailedWrites, oneLine(st.Error))
}
