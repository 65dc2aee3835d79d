package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup"
)

// A process whose state machine refused illegal moves says so in status.
func TestStatusShowsIllegalMoves(t *testing.T) {
	now := time.Now()
	st := procgroup.Status{Group: "web", Name: "web", State: procgroup.Running, Pid: 42, StartedAt: now, IllegalMoves: 2}
	ps := toProcStatus(st, now)
	if ps.IllegalMoves != 2 || !strings.HasSuffix(ps.Description, "; 2 illegal state moves refused (a gosup bug, see the log)") {
		t.Errorf("illegal_moves %d, description %q", ps.IllegalMoves, ps.Description)
	}
	st.IllegalMoves = 0
	if ps := toProcStatus(st, now); ps.IllegalMoves != 0 || strings.Contains(ps.Description, "illegal") {
		t.Errorf("a process without illegal moves: %+v", ps)
	}
}
