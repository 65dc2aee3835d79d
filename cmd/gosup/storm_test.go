package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/rogpeppe/go-internal/testscript"
)

// cmdHupstorm sends N SIGHUPs to the daemon on SOCKET, one every
// millisecond, while the config file is replaced (write and rename, as an
// editor saves) by each FILE in turn and three clients run ctl restarts of
// PATTERN. Throughout, a status request every 20 ms must answer within 2 s.
// The last FILE given stays in place.
//
//	hupstorm SOCKET N CONFIG PATTERN FILE...
func cmdHupstorm(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 5 {
		ts.Fatalf("usage: hupstorm SOCKET N CONFIG PATTERN FILE...")
	}
	cl := api.NewClient(ts.MkAbs(args[0]))
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	config, pattern, files := ts.MkAbs(args[2]), args[3], args[4:]
	ctx := context.Background()
	info, err := cl.Info(ctx)
	ts.Check(err)

	var contents [][]byte
	for _, f := range files {
		b, err := os.ReadFile(ts.MkAbs(f))
		ts.Check(err)
		contents = append(contents, b)
	}
	save := func(b []byte) error {
		tmp := filepath.Join(filepath.Dir(config), ".gosup.toml.tmp")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, config)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	var problems []string
	problem := func(s string) {
		mu.Lock()
		problems = append(problems, s)
		mu.Unlock()
	}
	restarts := 0
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := cl.Action(rctx, "restart", api.ActionRequest{Patterns: []string{pattern}})
				cancel()
				if err != nil {
					problem("restart: " + err.Error())
					return
				}
				mu.Lock()
				restarts++
				mu.Unlock()
			}
		})
	}
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := cl.Status(sctx)
			cancel()
			d := time.Since(start)
			mu.Lock()
			slowest = max(slowest, d)
			mu.Unlock()
			if err != nil {
				problem("status: " + err.Error())
			}
		}
	}()
	for i := range n {
		if i%(n/len(contents)+1) == 0 {
			if err := save(contents[i*len(contents)/n]); err != nil {
				problem(err.Error())
			}
		}
		if err := syscall.Kill(info.Pid, syscall.SIGHUP); err != nil {
			problem("kill: " + err.Error())
		}
		time.Sleep(time.Millisecond)
	}
	ts.Check(save(contents[len(contents)-1]))
	close(stop)
	wg.Wait()
	<-statusDone
	ts.Logf("hupstorm: %d SIGHUPs, %d ctl restarts, slowest status %s", n, restarts, slowest.Round(time.Millisecond))
	if len(problems) > 0 {
		ts.Fatalf("hupstorm: %v", problems)
	}
	if restarts == 0 {
		ts.Fatalf("hupstorm: no ctl restart completed during the storm")
	}
}

// cmdSighup sends one SIGHUP to the daemon on SOCKET (testscript's kill
// knows only a few signals).
//
//	sighup SOCKET
func cmdSighup(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sighup SOCKET")
	}
	info, err := api.NewClient(ts.MkAbs(args[0])).Info(context.Background())
	ts.Check(err)
	ts.Check(syscall.Kill(info.Pid, syscall.SIGHUP))
}
