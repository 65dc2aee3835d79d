package reaper

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// One reaper per process: the tests share it.
var testReaper *Reaper

func TestMain(m *testing.M) {
	if mode := os.Getenv("REAPER_HELPER"); mode != "" {
		code, _ := strconv.Atoi(mode)
		os.Exit(code)
	}
	r, err := New()
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	testReaper = r
	code := m.Run()
	cancel()
	os.Exit(code)
}

// Children that exit at once, spawned from many goroutines on every
// spawning thread, each report their own exit code exactly once.
func TestInstantExitsAreNeverMissed(t *testing.T) {
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			code := i % 50
			attr := &os.ProcAttr{Env: append(os.Environ(), "REAPER_HELPER="+strconv.Itoa(code))}
			p, exitC, err := testReaper.Start(func() (*os.Process, error) {
				p, err := os.StartProcess(os.Args[0], []string{os.Args[0]}, attr)
				// Return late: the child has exited (and SIGCHLD fired)
				// before the reaper could know its pid.
				time.Sleep(100 * time.Millisecond)
				return p, err
			})
			if err != nil {
				errs <- err.Error()
				return
			}
			select {
			case ex := <-exitC:
				if ex.Pid != p.Pid || ex.Code() != code {
					errs <- "pid " + strconv.Itoa(ex.Pid) + ": want code " + strconv.Itoa(code) + ", have " + ex.String()
				}
			case <-time.After(10 * time.Second):
				errs <- "exit of pid " + strconv.Itoa(p.Pid) + " never reported"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestExitString(t *testing.T) {
	killed := Exit{Status: 9}      // WaitStatus: terminated by signal 9
	exited := Exit{Status: 3 << 8} // exit status 3
	if killed.String() != "terminated by SIGKILL" || killed.Code() != 137 {
		t.Errorf("killed: %s, %d", killed, killed.Code())
	}
	if exited.String() != "exit status 3" || exited.Code() != 3 {
		t.Errorf("exited: %s, %d", exited, exited.Code())
	}
}
