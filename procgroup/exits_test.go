package procgroup

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Every way a real child ends is counted under its reason, and only there.
func TestExitsCountedByReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		want ExitReason
		spec func(t *testing.T) *Spec
		// end ends the child of p, RUNNING (nil: it ends on its own).
		end func(t *testing.T, p *Process, pid int)
	}{
		{"exit code in exitcodes", ExitExpected, func(*testing.T) *Spec { return helperSpec("exitafter", "200ms", "0") }, nil},
		{"exit code not in exitcodes", ExitUnexpected, func(*testing.T) *Spec {
			s := helperSpec("exitafter", "200ms", "3")
			s.ExitCodes = []int{0, 2}
			return s
		}, nil},
		{"not ready, killed by gosup", ExitUnexpected, func(t *testing.T) *Spec {
			s := helperSpec("serve", "0s", "503")
			s.PortStart = freePortRange(t, 1)
			s.Ready = "http:/healthz"
			s.ReadyTimeout = 3 * time.Second
			return s
		}, nil},
		{"a signal gosup did not send", ExitKilled, func(*testing.T) *Spec { return helperSpec("sleep") }, func(t *testing.T, _ *Process, pid int) {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}},
		{"ctl stop", ExitStopped, func(*testing.T) *Spec { return helperSpec("sleep") }, func(t *testing.T, p *Process, _ int) {
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
		}},
		{"stopped past stopwaitsecs, SIGKILLed", ExitStopped, func(*testing.T) *Spec {
			s := helperSpec("ignore-term")
			s.StopWaitSecs = 1
			s.StdoutLogfile = filepath.Join(t.TempDir(), "out.log")
			return s
		}, func(t *testing.T, p *Process, _ int) {
			// The child says it ignores TERM once it does.
			waitFile(t, p.Spec().Stdout.Path, "ignoring TERM\n")
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
		}},
		{"StopPid (memmon's restart)", ExitStopPid, func(*testing.T) *Spec { return helperSpec("sleep") }, func(t *testing.T, p *Process, pid int) {
			if err := p.StopPid(pid); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := tc.spec(t)
			spec.AutoRestart = RestartNever
			spec.StartRetries = 0
			p := newTestPool(t, spec).Procs()[0]
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			if tc.end != nil {
				st := waitState(t, p, Running, 30*time.Second)
				tc.end(t, p, st.Pid)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := p.Wait(ctx, func(s Status) bool { return s.Pid == 0 && s.ExitStatus != nil })
			if err != nil {
				t.Fatalf("the child did not end: %+v", st)
			}
			var want ExitCounts
			want[tc.want] = 1
			if st.Exits != want {
				t.Errorf("exits %v (%s), want %v: one %s", st.Exits, st.ExitDesc, want, tc.want)
			}
			// The count goes on in the next image.
			if h := StatusHandover(st); h.Exits != want {
				t.Errorf("handed over %v, want %v", h.Exits, want)
			}
		})
	}
}
