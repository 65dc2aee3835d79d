// Package reapertest runs test binaries that spawn real children: the
// binary doubles as the helper child (the os/exec helper-process pattern)
// and owns the process's one Reaper.
package reapertest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/reaper"
)

// HelperEnv, set to 1 in a child's environment, makes Main run the helper.
const HelperEnv = "GO_WANT_HELPER_PROCESS"

// Main is a TestMain body. In a helper child it runs helper with the
// command line arguments and exits with its code. Otherwise it starts the
// process's Reaper, passes it to setup, runs the tests and exits.
func Main(m *testing.M, helper func(args []string) int, setup func(*reaper.Reaper)) {
	if os.Getenv(HelperEnv) == "1" {
		os.Exit(helper(os.Args[1:]))
	}
	rp, err := reaper.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go rp.Run(ctx)
	setup(rp)
	code := m.Run()
	cancel()
	os.Exit(code)
}

// Forever blocks the helper for ever. A select with no cases would do in a
// binary built with cgo, but in one built without (CGO_ENABLED=0, as gosup
// ships) a helper with nothing else to wake it is a deadlock to the
// runtime, which ends it with a fatal error: a pending timer is not.
func Forever() {
	for {
		time.Sleep(time.Hour)
	}
}
