package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestUpgradeHandsOverTheHTTPListener: an in-place upgrade hands the
// HTTP listener's socket to the new image: clients that connect all
// along (a new connection each request, as a load balancer's health
// check) never see a refused or reset connection, nor an unhealthy
// answer; the connection counts go on. An upgrade whose exec fails
// serves the socket again from the old image.
func TestUpgradeHandsOverTheHTTPListener(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "gosup")
	copyFile(t, buildGosup(t, t.TempDir(), "http-handover", "gosup_testhooks"), bin)
	flag := filepath.Join(dir, "fail-once")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := startUpgradeDaemonConf(t, bin, "sleep 3600", 2, fmt.Sprintf("[http]\nlisten = %q\n", addr), "GOSUP_TEST_REPLACE_BEFORE_EXEC="+flag)
	url := "http://" + addr + "/healthz"
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	get := func() (int, string, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if code, _, err := get(); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/healthz never answered 200")
		}
	}
	// Clients all along, each request a new connection.
	var ok atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := get()
				if err != nil || code != 200 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %q %v", time.Now().UTC().Format("15:04:05.000"), code, body, err))
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	waitOK := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ok.Load() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("only %d requests answered 200 within a minute, want %d", ok.Load(), n)
			}
		}
	}
	waitOK(20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pid := d.cmd.Process.Pid

	// The exec fails: the old image serves the socket again.
	if _, err := d.upgrade(t, ctx); err == nil || !strings.Contains(err.Error(), "replaced after its check") {
		t.Fatalf("upgrade with the binary replaced before the exec: %v", err)
	}
	waitOK(ok.Load() + 20)
	info, err := d.cl.Info(ctx)
	if err != nil || info.Pid != pid || info.HTTP == nil || info.HTTP.State != "listening" {
		t.Fatalf("after the failed upgrade: %+v %v", info.HTTP, err)
	}

	// The upgrade: the new image takes the socket over.
	before := info.HTTP.Accepted
	info, err = d.upgrade(t, ctx)
	if err != nil || info.Upgrades != 1 || info.Pid != pid {
		t.Fatalf("upgrade: %+v %v", info, err)
	}
	waitOK(ok.Load() + 20)
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed across the upgrades: %s", len(failures), int64(len(failures))+ok.Load(), strings.Join(failures, "; "))
	}
	info, err = d.cl.Info(ctx)
	if err != nil || info.HTTP == nil || info.HTTP.State != "listening" || info.HTTP.Listen != addr || info.HTTP.Accepted <= before {
		t.Fatalf("ctl info's http after the upgrade: %+v %v (accepted before it: %d)", info.HTTP, err, before)
	}
	if got := d.waitRunning(t, 2); !maps.Equal(got, d.pids) {
		t.Fatalf("children changed across the upgrades: %v, were %v", got, d.pids)
	}
	b, _ := os.ReadFile(d.log)
	if strings.Contains(string(b), "could not take up the HTTP listener") || strings.Contains(string(b), "HTTP listener cannot listen") {
		t.Fatalf("the new image did not take the socket over:\n%s", b)
	}
	t.Logf("%d requests answered 200 across a failed and a done upgrade, none failed", ok.Load())
}
