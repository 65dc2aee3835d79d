package supervisor

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/handover"
	"github.com/gosup/gosup/supervisor/nginx"
)

// The counters count reloads by outcome into cumulative buckets, and go
// through a handover (JSON) unchanged.
func TestCountersHandover(t *testing.T) {
	c := newCounters()
	at := time.Unix(1764500000, 0).UTC()
	c.reload(reloadOK, 20*time.Millisecond, at)
	c.reload(reloadOK, 3*time.Second, at.Add(time.Minute))
	c.reload(reloadInvalid, time.Millisecond, at.Add(2*time.Minute))
	c.reload(reloadFailed, time.Hour, at.Add(3*time.Minute))
	c.memmon.Samples.Store(7)
	c.nginx.Restore(nginx.Counts{ReloadsOK: 3, LastSuccess: at})
	st := c.reloadStats()
	if st.count != 4 || st.buckets[0.01] != 1 || st.buckets[0.05] != 2 || st.buckets[5] != 3 || st.buckets[600] != 3 {
		t.Errorf("buckets %v, count %d: want 1 at 10ms, 2 at 50ms, 3 at 5s, and the hour above every bound", st.buckets, st.count)
	}
	if st.byOutcome[reloadOK] != 2 || st.byOutcome[reloadInvalid] != 1 || st.byOutcome[reloadFailed] != 1 || !st.lastOK.Equal(at.Add(time.Minute)) {
		t.Errorf("by outcome %v, last ok %s", st.byOutcome, st.lastOK)
	}
	b, err := json.Marshal(c.handover(2))
	if err != nil {
		t.Fatal(err)
	}
	var h handover.Counters
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	next := newCounters()
	next.restore(&h)
	got := next.reloadStats()
	if got.count != st.count || got.sum != st.sum || got.buckets[5] != 3 || got.byOutcome[reloadFailed] != 1 || !got.lastOK.Equal(st.lastOK) {
		t.Errorf("after the handover: %+v, want %+v", got, st)
	}
	if next.memmon.Counts().Samples != 7 || next.upgradeFailuresBefore() != 2 || next.nginx.Counts() != (nginx.Counts{ReloadsOK: 3, LastSuccess: at}) {
		t.Errorf("memmon %+v, nginx %+v, upgrade failures %d", next.memmon.Counts(), next.nginx.Counts(), next.upgradeFailuresBefore())
	}
	// Another build's bounds: the histogram starts afresh, the rest goes on.
	h.ReloadSeconds.Bounds = []float64{1, 2}
	other := newCounters()
	other.restore(&h)
	if s := other.reloadStats(); s.count != 0 || s.byOutcome[reloadOK] != 2 {
		t.Errorf("with other bounds: %+v", s)
	}
}
