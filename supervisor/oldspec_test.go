package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// oldSpecOf reads which of the processes status marks as on the old spec.
func oldSpecOf(t *testing.T, cl *api.Client) map[string]bool {
	t.Helper()
	st, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, p := range st {
		if p.OldSpec {
			out[p.Name] = true
		}
	}
	return out
}

// A rollout that halts (its first replacement never becomes ready)
// leaves no process marked as on the old spec: the ones it left alone
// are no longer pending.
func TestHaltedRolloutClearsOldSpecMarks(t *testing.T) {
	body := func(command string) string {
		return fmt.Sprintf(`
[program.web]
command = %q
numprocs = 3
process_name = "web_%%(process_num)d"
startsecs = 0
startretries = 0
stopwaitsecs = 5
%s
`, command, helperEnv)
	}
	file := writeConfig(t, body("@HELPER@ sleep"))
	_, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	rewriteConfig(t, file, body(filepath.Join(t.TempDir(), "no-such-binary")))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	halted := 0
	for _, r := range plan.Results {
		if strings.Contains(r.Message, "rolling restart halted") {
			halted++
		}
	}
	if halted != 2 {
		t.Fatalf("want web_1 and web_2 left alone by a halted rollout, have %+v", plan.Results)
	}
	if marked := oldSpecOf(t, cl); len(marked) > 0 {
		t.Errorf("marked as on the old spec after the rollout halted: %v", marked)
	}
}

// A rolling restart whose client goes away while it waits behind another
// rollout of the same program clears its own marks, and only those: the
// rollout in progress still marks the processes it has yet to restart,
// until it has restarted them.
func TestQueuedRolloutGoneClearsOnlyItsMarks(t *testing.T) {
	dir := t.TempDir()
	file := writeConfig(t, fmt.Sprintf(`
[program.web]
command = "@HELPER@ ignore-term %s/pid.%%(process_num)d"
numprocs = 2
process_name = "web_%%(process_num)d"
startsecs = 0
stopwaitsecs = 600
%s
`, dir, helperEnv))
	s, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	pidOf := func(n int) int {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("pid.%d", n)))
			if err == nil {
				pid, err := strconv.Atoi(string(b))
				if err == nil {
					return pid
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("web_%d never wrote its pid", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	pid0, pid1 := pidOf(0), pidOf(1)
	// Each process ignores SIGTERM: the first rollout stays on each one's
	// stop until the test kills it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	firstEvents := make(chan api.Event, 64)
	firstDone := make(chan []api.Result, 1)
	go func() {
		res, err := cl.ActionStream(ctx, "restart", api.ActionRequest{Patterns: []string{"web"}, Rolling: true}, func(ev api.Event) { firstEvents <- ev })
		if err != nil {
			t.Error(err)
		}
		firstDone <- res
	}()
	waitStep := func(events <-chan api.Event, process, step string) api.Event {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if ev.Process == process && ev.Step == step {
					return ev
				}
			case <-ctx.Done():
				t.Fatalf("no %s step of %q", step, process)
			}
		}
	}
	// web_0's mark goes once it has stopped; web_1's once it has.
	waitStep(firstEvents, "web:web_0", api.StepStopping)
	if marked := oldSpecOf(t, cl); !marked["web:web_0"] || !marked["web:web_1"] {
		t.Fatalf("during the first rollout: marked %v, want both", marked)
	}
	// The second waits behind it, says so, and its client goes away.
	qctx, qcancel := context.WithCancel(ctx)
	secondEvents := make(chan api.Event, 64)
	secondDone := make(chan error, 1)
	go func() {
		_, err := cl.ActionStream(qctx, "restart", api.ActionRequest{Patterns: []string{"web"}, Rolling: true}, func(ev api.Event) { secondEvents <- ev })
		secondDone <- err
	}()
	ev := waitStep(secondEvents, "", api.StepWaiting)
	if !strings.Contains(ev.Message, "ctl restart --rolling web waits for ctl restart --rolling web on web") {
		t.Errorf("waiting step says %q", ev.Message)
	}
	qcancel()
	<-secondDone
	// Once the daemon has seen it go (its lease is released, after its
	// marks are cleared), the first rollout's marks are still there.
	for deadline := time.Now().Add(30 * time.Second); len(s.lanes.leases()) > 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the queued rollout never ended after its client went away")
		}
	}
	if marked := oldSpecOf(t, cl); !marked["web:web_0"] || !marked["web:web_1"] {
		t.Errorf("the rollout in progress lost its marks when the queued one's client went away: marked %v, want both", marked)
	}
	if err := syscall.Kill(pid0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStep(firstEvents, "web:web_1", api.StepStopping)
	if marked := oldSpecOf(t, cl); marked["web:web_0"] || !marked["web:web_1"] {
		t.Errorf("web_0 restarted: marked %v, want web:web_1 only", marked)
	}
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := <-firstDone
	for _, r := range res {
		if !r.OK {
			t.Errorf("first rollout: %+v", r)
		}
	}
	if marked := oldSpecOf(t, cl); len(marked) > 0 {
		t.Errorf("marked after every rollout ended: %v", marked)
	}
}
