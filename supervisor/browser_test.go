package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
)

// startChromium runs a real headless Chromium on the test reaper (the only
// waiter in this process), in a process group of its own, listening for
// DevTools on a port of 127.0.0.1 it picks, and returns a chromedp
// context on it: each chromedp.NewContext of it is a tab. Cleanup closes
// the tabs, then kills the browser's process group by its id and waits
// for the browser to exit.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	bin := needTool(t, "chromium", "chromium")
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile")
	logf, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := []string{bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"}
	// The browser's clock is in a time zone of its own, not the daemon's:
	// the page must say times in the daemon's zone, as gosup ctl status
	// does, whoever looks at it from wherever.
	env := append(os.Environ(), "TZ="+otherZone())
	// Pdeathsig: a test binary killed (go test's -timeout) runs no
	// cleanup; the browser dies with it. testReaper forks on its one
	// locked thread, which lives as long as the test binary.
	attr := &os.ProcAttr{Env: env, Files: []*os.File{nil, logf, logf},
		Sys: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}}
	proc, exitC, err := testReaper.Start(func() (*os.Process, error) { return os.StartProcess(bin, args, attr) })
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-proc.Pid, syscall.SIGKILL) // the group: the browser and its renderers
		select {
		case <-exitC:
		case <-time.After(30 * time.Second):
			t.Errorf("chromium (pid %d) did not exit within 30s of SIGKILL", proc.Pid)
		}
		// Its zygote and renderers, orphaned, are re-parented to this
		// test binary (a child subreaper) and reaped by testReaper: wait
		// until none of the group is left, not even a zombie.
		for deadline := time.Now().Add(30 * time.Second); syscall.Kill(-proc.Pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("chromium's process group %d still has processes 30s after SIGKILL", proc.Pid)
				break
			}
		}
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("chromium's output:\n%s", b)
			}
		}
	})
	// Chromium writes the port and the browser's path to DevToolsActivePort
	// once it listens.
	var ws string
	deadline := time.Now().Add(60 * time.Second)
	for ws == "" {
		if b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort")); err == nil {
			if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) == 2 {
				ws = "ws://127.0.0.1:" + lines[0] + lines[1]
			}
		}
		select {
		case ex := <-exitC:
			out, _ := os.ReadFile(logf.Name())
			t.Fatalf("chromium exited before it listened (%+v):\n%s", ex, out)
		case <-time.After(20 * time.Millisecond):
		}
		if ws == "" && time.Now().After(deadline) {
			t.Fatal("chromium wrote no DevToolsActivePort within 60s")
		}
	}
	allocCtx, cancelAlloc := remote.NewAllocator(context.Background(), ws, remote.NoModifyURL)
	t.Cleanup(cancelAlloc)
	return allocCtx
}

// newTab opens a tab of the browser startChromium returned; cleanup
// closes it.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // opens it
		t.Fatalf("opening a tab: %v", err)
	}
	return ctx
}

// otherZone is a time zone whose offset now differs from the local one's.
func otherZone() string {
	_, local := time.Now().Zone()
	for _, z := range []string{"Asia/Kolkata", "America/New_York"} {
		if loc, err := time.LoadLocation(z); err == nil {
			if _, off := time.Now().In(loc).Zone(); off != local {
				return z
			}
		}
	}
	return "Asia/Kolkata"
}
