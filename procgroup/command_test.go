package procgroup

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A command cut short says why, and keeps the cause: its own timeout, or
// the caller giving up (the daemon shutting down), which is not a timeout.
func TestRunCommandCutShortSaysWhy(t *testing.T) {
	_, err := RunCommand(context.Background(), testReaper, "sleep 30", nil, 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"sleep 30" did not finish within 200ms and was killed`) {
		t.Errorf("timed out: %v; want the timeout, wrapping context.DeadlineExceeded", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // sleep 30 cannot have finished first
	_, err = RunCommand(ctx, testReaper, "sleep 30", nil, time.Hour)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "within") || !strings.Contains(err.Error(), `"sleep 30" was killed before it finished`) {
		t.Errorf("cancelled: %v; want a cancellation, wrapping context.Canceled, not a timeout", err)
	}
	_, err = RunCommand(context.Background(), testReaper, "gosup-no-such-command --x", nil, time.Second)
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), `run "gosup-no-such-command --x"`) {
		t.Errorf("missing command: %v", err)
	}
}

// A command's captured output (nginx -t's, sendmail's) is its first 64 KiB,
// and a line at the end says how much more there was; a failure's error
// carries the same.
func TestRunCommandOutputIsBounded(t *testing.T) {
	for _, tc := range []struct{ command, exit string }{
		{"head -c 1048576 /dev/zero | tr '\\0' x", ""},
		{"head -c 1048576 /dev/zero | tr '\\0' x; exit 3", "exit status 3"},
	} {
		out, err := RunCommand(context.Background(), testReaper, tc.command, nil, time.Minute)
		want := strings.Repeat("x", maxCommandOutput) + "\n[gosup: 960.0KB cut]"
		if string(out) != want {
			t.Errorf("%s: %d bytes ending %q, want %d ending %q", tc.command, len(out), out[max(len(out)-30, 0):], len(want), want[len(want)-30:])
		}
		var ce *CommandError
		if tc.exit != "" && (!errors.As(err, &ce) || ce.Exit != tc.exit || ce.Output != want) {
			t.Errorf("%s: %v", tc.command, err)
		} else if tc.exit == "" && err != nil {
			t.Errorf("%s: %v", tc.command, err)
		}
	}
}
