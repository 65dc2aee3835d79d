package procgroup

import (
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/proctree"
)

// TestPidStartIsProcs: the start time a spawn records (from the clock
// around its fork, or /proc when that cannot tell) is the one /proc shows
// for the child, for each of 20 spawns.
func TestPidStartIsProcs(t *testing.T) {
	spec := helperSpec("sleep")
	spec.NumProcs = 20
	spec.ProcessName = "%(program_name)s_%(process_num)d"
	for _, p := range newTestPool(t, spec).Procs() {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		st := waitState(t, p, Running, 30*time.Second)
		want, err := proctree.StartTime(st.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.PidStart != want {
			t.Fatalf("%s: pid %d recorded with start time %d; /proc shows %d", st.FullName(), st.Pid, st.PidStart, want)
		}
	}
}
