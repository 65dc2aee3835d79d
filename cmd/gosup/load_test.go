package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// loadRun is client load through nginx plus a monitor of the backends,
// kept between the commands of one script.
type loadRun struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ok     atomic.Int64
	failed atomic.Int64

	mu      sync.Mutex
	first   int // tracked ports first..last
	last    int
	gen     int // bumped by track: a sample begun before is discarded
	sampled int // samples completed with the current gen
	maxOut  int
	outSeen string // the worst moment, for the log
	errs    []string
	upFile  string
}

// minRequests is how many answered requests a check needs to show that
// the load ran; a check waits (up to a minute) for them, since a step
// can be shorter than that on a loaded machine.
const minRequests = 20

var loads sync.Map // *testscript.TestScript → *loadRun

// cmdLoad puts bounded client load on nginx and watches the backends:
//
//	load start URL FIRST-LAST UPSTREAM_FILE   start 2 clients and the monitor
//	load track FIRST-LAST                      the ports that must stay up, from
//	                                           the monitor's next sample on (it
//	                                           returns once one has been taken)
//	load check NAME MAXOUT                     zero failed requests since the last
//	                                           check (at least 20 answered: it
//	                                           waits for them), and never more
//	                                           than MAXOUT of the tracked backends
//	                                           out at once
//	load stop                                  end it
//
// A backend is out when its port refuses connections or the upstream file
// marks it down; the monitor samples every 2 ms.
func cmdLoad(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: load start|track|check|stop ...")
	}
	switch args[0] {
	case "start":
		if len(args) != 4 {
			ts.Fatalf("usage: load start URL FIRST-LAST UPSTREAM_FILE")
		}
		l := &loadRun{upFile: ts.MkAbs(args[3])}
		l.first, l.last = portRange(ts, args[2])
		ctx, cancel := context.WithCancel(context.Background())
		l.cancel = cancel
		for range 2 {
			l.wg.Go(func() { l.client(ctx, args[1]) })
		}
		l.wg.Go(func() { l.monitor(ctx) })
		loads.Store(ts, l)
		ts.Defer(func() {
			cancel()
			l.wg.Wait()
			loads.Delete(ts)
		})
	case "track":
		l := getLoad(ts)
		first, last := portRange(ts, args[1])
		l.mu.Lock()
		l.first, l.last = first, last
		l.gen++
		l.sampled = 0
		l.mu.Unlock()
		// A sample under way still looks at the old ports: it is thrown
		// away, and the script goes on once the new ports are watched.
		deadline := time.Now().Add(time.Minute)
		for {
			l.mu.Lock()
			n := l.sampled
			l.mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				ts.Fatalf("load track: the monitor took no sample in a minute")
			}
			time.Sleep(time.Millisecond)
		}
	case "check":
		if len(args) != 3 {
			ts.Fatalf("usage: load check NAME MAXOUT")
		}
		l := getLoad(ts)
		limit, err := strconv.Atoi(args[2])
		ts.Check(err)
		for deadline := time.Now().Add(time.Minute); l.ok.Load() < minRequests && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		ok, failed := l.ok.Swap(0), l.failed.Swap(0)
		l.mu.Lock()
		maxOut, worst, errs := l.maxOut, l.outSeen, l.errs
		l.maxOut, l.outSeen, l.errs = 0, "", nil
		l.mu.Unlock()
		ts.Logf("load %s: %d requests answered, %d failed; at most %d backends out at once %s", args[1], ok, failed, maxOut, worst)
		if failed > 0 {
			ts.Fatalf("load %s: %d failed requests: %s", args[1], failed, strings.Join(errs, "; "))
		}
		if ok < minRequests {
			ts.Fatalf("load %s: only %d requests answered in a minute: the load did not run", args[1], ok)
		}
		if maxOut > limit {
			ts.Fatalf("load %s: %d backends out at once (%s), more than %d", args[1], maxOut, worst, limit)
		}
	case "stop":
		l := getLoad(ts)
		l.cancel()
		l.wg.Wait()
	default:
		ts.Fatalf("load: unknown subcommand %q", args[0])
	}
}

func getLoad(ts *testscript.TestScript) *loadRun {
	v, ok := loads.Load(ts)
	if !ok {
		ts.Fatalf("load: not started")
	}
	return v.(*loadRun)
}

func portRange(ts *testscript.TestScript, s string) (int, int) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || last < first {
		ts.Fatalf("bad port range %q: want FIRST-LAST", s)
	}
	return first, last
}

var answerRE = regexp.MustCompile(`^port \d+ pid \d+`)

// client sends GETs (a new connection each) every 2 ms until ctx ends.
func (l *loadRun) client(ctx context.Context, url string) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.fail(err.Error())
		default:
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !answerRE.Match(b) {
				l.fail(fmt.Sprintf("%s: %q", resp.Status, b))
			} else {
				l.ok.Add(1)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *loadRun) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errs) < 5 {
		l.errs = append(l.errs, msg)
	}
	l.mu.Unlock()
}

var downRE = regexp.MustCompile(`(?m)^\s*server [^:]+:(\d+)[^;]* down;`)

// monitor samples which tracked backends are out. A sample must see one
// moment, though its dials take a while on a loaded machine (a rolling
// restart can bring one backend back and take the next out meanwhile): a
// port is refusing when it refuses a first dial and again at the end of
// the pass, and down in nginx when both reads of the file around that
// second dial say so. Only a refused connection counts: a dial that is
// merely slow says nothing.
func (l *loadRun) monitor(ctx context.Context) {
	for ctx.Err() == nil {
		l.mu.Lock()
		first, last, gen := l.first, l.last, l.gen
		l.mu.Unlock()
		var refusing []int
		for p := first; p <= last; p++ {
			if refused(p) {
				refusing = append(refusing, p)
			}
		}
		downBefore := l.down(first, last)
		out := map[int]string{}
		for _, p := range refusing {
			if refused(p) {
				out[p] = "refusing"
			}
		}
		for p := range l.down(first, last) {
			if downBefore[p] {
				out[p] = "down in nginx"
			}
		}
		l.mu.Lock()
		if gen == l.gen {
			l.sampled++
			if len(out) > l.maxOut {
				l.maxOut, l.outSeen = len(out), fmt.Sprint(out)
			}
		}
		l.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

// refused reports whether a connection to 127.0.0.1:port is refused.
func refused(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err == nil {
		c.Close()
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// down is the tracked ports the upstream file marks down.
func (l *loadRun) down(first, last int) map[int]bool {
	out := map[int]bool{}
	if b, err := os.ReadFile(l.upFile); err == nil {
		for _, m := range downRE.FindAllSubmatch(b, -1) {
			if p, _ := strconv.Atoi(string(m[1])); p >= first && p <= last {
				out[p] = true
			}
		}
	}
	return out
}
