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
// left out and counted (WatchStatus.Dropped).
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
	// Ignored is how many keys under the prefix are not members now (a
	// value that does not parse or would not be safe in a balancer's
	// file, a key not PREFIX/upstreams/NAME/HOST:PORT); Dropped counts
	// the keys left out past the bounds (maxWatched members, maxIgnored
	// keys ignored); Reads the whole reads (the first, and one after each
	// compaction or failed read).
	Ignored        int
	Dropped, Reads int64
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

	mu  sync.Mutex
	set *memberSet
	st  WatchStatus
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
	return &Watcher{o: o, set: newMemberSet(o.Prefix), st: WatchStatus{State: "connecting", Since: time.Now()}}
}

// Members gives the members held of each upstream, sorted by host then
// port, and whether they were ever read (false: none to render).
func (w *Watcher) Members() (map[string][]Member, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set.byUpstream(), w.st.Synced
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
		set, rev, err := readAll(ctx, w.o.Client, w.o.Prefix)
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
		w.replace(set, rev)
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
// gosup render), sorted by host then port.
func ReadOnce(ctx context.Context, c *etcd.Client, prefix string) (map[string][]Member, error) {
	set, _, err := readAll(ctx, c, prefix)
	if err != nil {
		return nil, err
	}
	return set.byUpstream(), nil
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

// memberSet is the members under a prefix, by key, and the keys there
// that are not members (each set bounded: maxWatched members, maxIgnored
// keys ignored; past the bound a key is left out, and dropped counts it).
type memberSet struct {
	prefix  string
	members map[string]Member
	ignored map[string]string // key -> why
	dropped int64
}

// maxIgnored bounds the keys a watch remembers ignoring.
const maxIgnored = 10_000

func newMemberSet(prefix string) *memberSet {
	return &memberSet{prefix: prefix, members: map[string]Member{}, ignored: map[string]string{}}
}

// put takes one key's value: a member, or a key ignored (a key that held
// a member and now holds something else is no member). newlyIgnored says
// the key is ignored now and was not before.
func (ms *memberSet) put(kv etcd.KV) (newlyIgnored bool) {
	key := string(kv.Key)
	m, err := ParseMember(ms.prefix, key, kv.Value)
	if err != nil {
		delete(ms.members, key)
		_, had := ms.ignored[key]
		if !had && len(ms.ignored) >= maxIgnored {
			ms.dropped++
			return false
		}
		ms.ignored[key] = err.Error()
		return !had
	}
	delete(ms.ignored, key)
	if _, had := ms.members[key]; !had && len(ms.members) >= maxWatched {
		ms.dropped++
		return false
	}
	ms.members[key] = m
	return false
}

func (ms *memberSet) delete(key string) (wasMember bool) {
	_, wasMember = ms.members[key]
	delete(ms.members, key)
	delete(ms.ignored, key)
	return wasMember
}

// byUpstream gives the members of each upstream, sorted by host then
// port.
func (ms *memberSet) byUpstream() map[string][]Member {
	out := map[string][]Member{}
	for _, m := range ms.members {
		out[m.Upstream] = append(out[m.Upstream], m)
	}
	for _, l := range out {
		sortMembers(l)
	}
	return out
}

// readAll reads every key under prefix's upstreams, a page at a time, at
// one revision, which it gives.
func readAll(ctx context.Context, c *etcd.Client, prefix string) (*memberSet, int64, error) {
	set := newMemberSet(prefix)
	rev, err := c.RangePages(ctx, UpstreamPrefix(prefix, ""), func(kvs []etcd.KV) error {
		for _, kv := range kvs {
			set.put(kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return set, rev, nil
}

// replace makes the members those of a whole read at revision rev.
func (w *Watcher) replace(set *memberSet, rev int64) {
	w.mu.Lock()
	old, wasSynced := w.set, w.st.Synced
	w.set = set
	w.st.Revision = rev
	w.st.Synced = true
	w.st.Reads++
	// The first read is news even without members: whoever waited for
	// it can render now.
	changed := !wasSynced || !sameMembers(old.members, set.members)
	var fresh []string
	for key := range set.ignored {
		if _, known := old.ignored[key]; !known {
			fresh = append(fresh, key)
		}
	}
	w.logIgnored(fresh)
	w.recount()
	w.mu.Unlock()
	w.answered()
	if changed {
		w.o.Changed()
	}
}

// logIgnored logs the keys newly ignored (w.mu held): each once, not at
// every whole read, and at most 10 at a time.
func (w *Watcher) logIgnored(keys []string) {
	for i, key := range keys {
		if i == 10 {
			w.o.Log.Warn("registry watch: ignoring more keys that are not members (see gosup ctl info)", "more", len(keys)-i)
			return
		}
		w.o.Log.Warn("registry watch: ignoring a key that is not a member", "key", key, "err", w.set.ignored[key])
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
	var fresh []string
	changed := false
	for _, ev := range r.Events {
		key := string(ev.KV.Key)
		if ev.Type == etcd.Delete {
			changed = w.set.delete(key) || changed
			continue
		}
		old, had := w.set.members[key]
		if w.set.put(ev.KV) {
			fresh = append(fresh, key)
		}
		if now, has := w.set.members[key]; had != has || now != old {
			changed = true
		}
	}
	if r.Revision > w.st.Revision {
		w.st.Revision = r.Revision
	}
	w.logIgnored(fresh)
	w.recount()
	w.mu.Unlock()
	if changed {
		w.o.Changed()
	}
	return nil
}

func (w *Watcher) recount() {
	w.st.Members, w.st.Down = len(w.set.members), 0
	for _, m := range w.set.members {
		if m.State == StateDown {
			w.st.Down++
		}
	}
	w.st.Ignored, w.st.Dropped = len(w.set.ignored), w.set.dropped
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
		w.o.Log.Warn("registry watch: etcd unreachable: the balancer keeps the members last known", "members", len(w.set.members), "err", err)
		w.st.State, w.st.Since = "unreachable", time.Now()
	}
	w.st.LastError = err.Error()
}
