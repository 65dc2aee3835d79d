// Package reapertest runs test binaries that spawn real children: the
// binary doubles as the helper child (the os/exec helper-process pattern)
// and owns the process's one Reaper.
package reapertest

import (
	"context"
	"fmt"
	"os"
	"testing"

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
