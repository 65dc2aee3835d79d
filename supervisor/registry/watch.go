package registry

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gosup/gosup/supervisor/registry/etcd"
)

// maxWatched bounds the members a Watcher holds: past it, new keys are
// ignored and counted (Ignored), as a key that is not a member is.
const maxWatched = 100_000

// WatchStatus is what status, info and metrics show of a Watcher.
type WatchStatus struct {
	// State is "connecting" (not read yet), "ok" or "unreachable" (the
	// read failed or the watch broke: the members are the last known).
	State     string
	LastError string
	Since     time.Time
	// Synced says the members were read whole at least once: before,
	// there are none to render.
	Synced bool
	// Members counts what the Watcher holds, Down those marked down.
	Members, Down int
	// Revision is etcd's revision the members are as of.
	Revision int64
	// Ignored counts the keys under the prefix that are not members (a
	// value that does not parse, a key not PREFIX/upstreams/NAME/HOST:PORT)
	// or came past maxWatched; Reads the whole reads (the first, and one
	// after each compaction or failed read).
	Ignored, Reads int64
}

// WatcherOptions set up a Watcher.
type WatcherOptions struct {
	Client *etcd.Client
	Prefix string
	// Changed hears that the members changed, on the Watcher's goroutine:
	// it must not block.
	Changed func()
	Log     *slog.Logger
	// RetryMin and RetryMax bound the pause between failed reads (and
	// broken watches): 0 means 100 ms and 2 s.
	RetryMin, RetryMax time.Duration
}

// Watcher keeps every host's members of every upstream under a prefix:
// read whole once, then watched. A read that fails or a watch that breaks
// keeps the members last known; the watch resumes where it stopped, so no
// change is lost.
type Watcher struct {
	o WatcherOptions

	mu      sync.Mutex
	members map[string]Member // by key
	st      WatchStatus
}

// NewWatcher makes a Watcher; nothing is read until Run.
func NewWatcher(o WatcherOptions) *Watcher {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Changed == nil {
		o.Changed = func() {}
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 2 * time.Second
	}
	return &Watcher{o: o, members: map[string]Member{}, st: WatchStatus{State: "connecting", Since: time.Now()}}
}

// Members gives the members held of each upstream, sorted by host then
// port, and whether they were ever read (false: none to render).
func (w *Watcher) Members() (map[string][]Member, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]Member{}
	for _, m := range w.members {
		out[m.Upstream] = append(out[m.Upstream], m)
	}
	for _, ms := range out {
		sortMembers(ms)
	}
	return out, w.st.Synced
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port)) })
}

// Status says how watching goes.
func (w *Watcher) Status() WatchStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

// Run reads and watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	prefix := UpstreamPrefix(w.o.Prefix, "")
	pause := w.o.RetryMin
	for ctx.Err() == nil {
		kvs, rev, err := w.o.Client.RangePrefix(ctx, prefix)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.broken(err)
			if !sleep(ctx, pause) {
				return
			}
			pause = min(pause*2, w.o.RetryMax)
			continue
		}
		pause = w.o.RetryMin
		w.replace(kvs, rev)
		err = w.o.Client.Watch(ctx, prefix, rev+1, w.apply, etcd.WatchOptions{
			Broken: w.broken, Created: w.answered, RetryMin: w.o.RetryMin, RetryMax: w.o.RetryMax,
		})
		if ctx.Err() != nil {
			return
		}
		// Compacted past what the watch needs (or a handler error): read
		// whole again.
		w.o.Log.Info("registry watch: reading the members whole again", "err", err)
	}
}

// ReadOnce reads the members of every upstream under prefix once (for
// gosup render), sorted by host then port, with the count of keys that
// are not members.
func ReadOnce(ctx context.Context, c *etcd.Client, prefix string) (map[string][]Member, int64, error) {
	w := NewWatcher(WatcherOptions{Client: c, Prefix: prefix})
	kvs, rev, err := c.RangePrefix(ctx, UpstreamPrefix(prefix, ""))
	if err != nil {
		return nil, 0, err
	}
	w.replace(kvs, rev)
	ms, _ := w.Members()
	return ms, w.Status().Ignored, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// replace makes the members those of a whole read at revision rev.
func (w *Watcher) replace(kvs []etcd.KV, rev int64) {
	w.mu.Lock()
	old, wasSynced := w.members, w.st.Synced
	w.members = make(map[string]Member, len(kvs))
	for _, kv := range kvs {
		w.put(kv)
	}
	w.st.Revision = rev
	w.st.Synced = true
	w.st.Reads++
	// The first read is news even without members: whoever waited for
	// it can render now.
	changed := !wasSynced || !sameMembers(old, w.members)
	w.recount()
	w.mu.Unlock()
	w.answered()
	if changed {
		w.o.Changed()
	}
}

// sameMembers reports whether two member sets are the same.
func sameMembers(a, b map[string]Member) bool {
	if len(a) != len(b) {
		return false
	}
	for k, m := range a {
		if n, ok := b[k]; !ok || n != m {
			return false
		}
	}
	return true
}

// apply takes one watch response.
func (w *Watcher) apply(r etcd.WatchResponse) error {
	w.mu.Lock()
	changed := false
	for _, ev := range r.Events {
		key := string(ev.KV.Key)
		if ev.Type == etcd.Delete {
			if _, ok := w.members[key]; ok {
				delete(w.members, key)
				changed = true
			}
			continue
		}
		old, had := w.members[key]
		w.put(ev.KV)
		if now, has := w.members[key]; had != has || now != old {
			changed = true
		}
	}
	if r.Revision > w.st.Revision {
		w.st.Revision = r.Revision
	}
	w.recount()
	w.mu.Unlock()
	if changed {
		w.o.Changed()
	}
	return nil
}

// put takes one key's value: a member, or counted as ignored (and a key
// that held a member and now holds something else is no member).
func (w *Watcher) put(kv etcd.KV) {
	key := string(kv.Key)
	m, err := ParseMember(w.o.Prefix, key, kv.Value)
	if err != nil {
		delete(w.members, key)
		w.st.Ignored++
		w.o.Log.Warn("registry watch: ignoring a key that is not a member", "err", err)
		return
	}
	if _, had := w.members[key]; !had && len(w.members) >= maxWatched {
		w.st.Ignored++
		return
	}
	w.members[key] = m
}

func (w *Watcher) recount() {
	w.st.Members, w.st.Down = len(w.members), 0
	for _, m := range w.members {
		if m.State == StateDown {
			w.st.Down++
		}
	}
}

// answered records that etcd answered (a read, or a watch set up).
func (w *Watcher) answered() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.State != "ok" {
		if w.st.State == "unreachable" {
			w.o.Log.Info("registry watch: etcd answers again", "was_unreachable_for", time.Since(w.st.Since).Round(time.Millisecond).String())
		}
		w.st.State, w.st.LastError, w.st.Since = "ok", "", time.Now()
	}
}

// broken records a failed read or a broken watch: the members stay.
func (w *Watcher) broken(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st.State != "unreachable" {
		w.o.Log.Warn("registry watch: etcd unreachable: the balancer keeps the members last known", "members", len(w.members), "err", err)
		w.st.State, w.st.Since = "unreachable", time.Now()
	}
	w.st.LastError = err.Error()
}
