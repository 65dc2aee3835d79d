package supervisor

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/supervisor/handover"
	"github.com/gosup/gosup/supervisor/nginx"
)

// Reload outcomes, as gosup_config_reloads_total counts them.
const (
	reloadOK      = "ok"      // applied, every process as planned
	reloadInvalid = "invalid" // the file did not load: nothing changed
	reloadFailed  = "failed"  // applied with failures, or cut short
)

// reloadBounds are the upper bounds (seconds) of the reload duration
// histogram: a reload that changes nothing takes milliseconds, a rolling
// restart of a large program minutes.
var reloadBounds = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// counters are what the daemon counts for its metrics that no part keeps
// across the reloads that replace it: memmon's and nginx's tallies (each
// watchdog and manager counts into them), the reloads by outcome and their
// durations. An upgrade hands them over (handover.Counters).
type counters struct {
	memmon memmon.Tally
	nginx  nginx.Tally
	// haproxy counts the [haproxy] managers' renders, tests and reloads.
	haproxy nginx.Tally

	mu      sync.Mutex
	reloads map[string]int64
	// reloadCounts[i] counts the reloads that took at most
	// reloadBounds[i] (and more than the bound before); the last, longer.
	reloadCounts []uint64
	reloadSum    float64
	// lastReloadOK is when the configuration last loaded and applied
	// fine (zero: the daemon's start).
	lastReloadOK time.Time
	// upgradeFailures counts the upgrades that failed in the images
	// before this one (ctl info counts this image's).
	upgradeFailures int
}

func newCounters() *counters {
	return &counters{reloads: map[string]int64{}, reloadCounts: make([]uint64, len(reloadBounds)+1)}
}

// reload counts a reload that ran (took the reload lock) for took.
func (c *counters) reload(outcome string, took time.Duration, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reloads[outcome]++
	secs := took.Seconds()
	i, _ := slices.BinarySearch(reloadBounds, secs)
	c.reloadCounts[i]++
	c.reloadSum += secs
	if outcome == reloadOK {
		c.lastReloadOK = at
	}
}

// reloadStats are the reload counters at one moment.
type reloadStats struct {
	byOutcome map[string]int64
	// buckets are cumulative (Prometheus' le): by upper bound, the
	// reloads that took at most that long.
	buckets map[float64]uint64
	count   uint64
	sum     float64
	lastOK  time.Time
}

func (c *counters) reloadStats() reloadStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := reloadStats{byOutcome: make(map[string]int64, 3), buckets: make(map[float64]uint64, len(reloadBounds)), sum: c.reloadSum, lastOK: c.lastReloadOK}
	for _, o := range []string{reloadOK, reloadInvalid, reloadFailed} {
		st.byOutcome[o] = c.reloads[o]
	}
	for i, b := range reloadBounds {
		st.count += c.reloadCounts[i]
		st.buckets[b] = st.count
	}
	st.count += c.reloadCounts[len(reloadBounds)]
	return st
}

// handover describes c for the next image, whose predecessors' failed
// upgrades are this image's, failures, and those before.
func (c *counters) handover(failures int) *handover.Counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &handover.Counters{
		UpgradeFailures: c.upgradeFailures + failures,
		Memmon:          c.memmon.Counts(), Nginx: c.nginx.Counts(), HAProxy: c.haproxy.Counts(),
		Reloads:           maps.Clone(c.reloads),
		ReloadSeconds:     handover.Histogram{Bounds: slices.Clone(reloadBounds), Counts: slices.Clone(c.reloadCounts), Sum: c.reloadSum},
		LastReloadSuccess: c.lastReloadOK,
	}
}

// restore carries on from what the previous image handed over. A
// histogram with other bounds (another build's) is counted afresh.
func (c *counters) restore(h *handover.Counters) {
	c.memmon.Restore(h.Memmon)
	c.nginx.Restore(h.Nginx)
	c.haproxy.Restore(h.HAProxy)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range h.Reloads {
		c.reloads[k] = v
	}
	if hs := h.ReloadSeconds; slices.Equal(hs.Bounds, reloadBounds) && len(hs.Counts) == len(c.reloadCounts) {
		copy(c.reloadCounts, hs.Counts)
		c.reloadSum = hs.Sum
	}
	c.lastReloadOK = h.LastReloadSuccess
	c.upgradeFailures = h.UpgradeFailures
}

// upgradeFailuresBefore counts the upgrades that failed in the images
// before this one.
func (c *counters) upgradeFailuresBefore() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.upgradeFailures
}
