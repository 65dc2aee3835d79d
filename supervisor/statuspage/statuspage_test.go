package statuspage

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// hostile is what a config and children's exits can put on the page:
// markup in every string the page shows.
func hostile() Input {
	exit := 1
	return Input{
		Daemon:   Daemon{Host: `h</title><script>alert("host")</script>`, Pid: 42, Version: `v1<b>`, State: "running", UptimeS: 90061},
		Warnings: []string{`nginx: <script>alert("warning")</script>`},
		Processes: []api.ProcStatus{
			{Name: `web:web_0`, Group: "web", Program: "web", Process: "web_0", State: "RUNNING", Pid: 100, Port: 9100, UptimeS: 61, Restarts: 2,
				Sampled: true, CPUPercent: 12.34, CPUWindowS: 2, RSSBytes: 10 << 20, TreeRSSBytes: 30 << 20,
				LastExit: "killed by SIGKILL", LastExitAt: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)},
			{Name: `bad:"><img src=x onerror=alert(1)>`, Group: "bad", Program: `bad</td>`, Process: "p", State: "FATAL", ExitStatus: &exit,
				Description: `exited too quickly: <script>alert("exit")</script> & 'quotes'`},
		},
	}
}

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every string from the config or a child is escaped: none of the markup
// in hostile reaches the page or status.json as markup.
func TestEscapesEverything(t *testing.T) {
	h := New(func() Input { return hostile() })
	page := readBody(t, get(t, h, "GET", "/"))
	for _, bad := range []string{`<script>alert`, `<img`, `<b>`, `</td>"`, `</title><script>`} {
		if strings.Contains(page, bad) {
			t.Errorf("the page has %q unescaped", bad)
		}
	}
	for _, want := range []string{`&lt;script&gt;alert(&#34;exit&#34;)&lt;/script&gt; &amp; &#39;quotes&#39;`, `bad:&#34;&gt;&lt;img src=x onerror=alert(1)&gt;`, `nginx: &lt;script&gt;`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	js := readBody(t, get(t, h, "GET", "/status.json"))
	if strings.ContainsAny(js, "<>") {
		t.Errorf("status.json has a raw < or >: %s", js)
	}
}

// The page is one file: its only script and style are inline and named
// by hash in its Content-Security-Policy, and it loads nothing from
// anywhere (no src, no link, no URL but status.json).
func TestPageIsSelfContained(t *testing.T) {
	resp := get(t, New(func() Input { return hostile() }), "GET", "/")
	page := readBody(t, resp)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, re := range []string{`(?s)<script>(.*?)</script>`, `(?s)<style>(.*?)</style>`} {
		m := regexp.MustCompile(re).FindAllStringSubmatch(page, -1)
		if len(m) != 1 {
			t.Fatalf("%s: %d matches, want 1", re, len(m))
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		if hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, hash) {
			t.Errorf("the CSP %q does not name %s's content (%s)", csp, re, hash)
		}
	}
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP: %q", csp)
	}
	plain := readBody(t, get(t, New(func() Input { return Input{Processes: hostile().Processes[:1]} }), "GET", "/"))
	for _, bad := range []string{" src=", "<link", "http://", "https://", "url(", "@import"} {
		if strings.Contains(plain, bad) {
			t.Errorf("the page has %q: it must load nothing", bad)
		}
	}
	if !strings.Contains(page, `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
		t.Error("the page has no viewport meta: phones would render it zoomed out")
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

// Only GET and HEAD of / and /status.json.
func TestRoutes(t *testing.T) {
	h := New(func() Input { return hostile() })
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/", 200}, {"HEAD", "/", 200}, {"GET", "/status.json", 200}, {"HEAD", "/status.json", 200},
		{"POST", "/", 405}, {"PUT", "/status.json", 405}, {"DELETE", "/", 405},
		{"GET", "/index.html", 404}, {"GET", "/status.json/x", 404}, {"GET", "/v1/status", 404},
	} {
		resp := get(t, h, tc.method, tc.path)
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: want %d, have %d", tc.method, tc.path, tc.code, resp.StatusCode)
		}
		if tc.code == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tc.method, tc.path, resp.Header.Get("Allow"))
		}
		if cc := resp.Header.Get("Cache-Control"); tc.code == 200 && cc != "no-store" {
			t.Errorf("%s %s: Cache-Control %q", tc.method, tc.path, cc)
		}
	}
}

// status.json has every process with all of gosup ctl status --json's
// fields, and the figures as the status table shows them.
func TestStatusJSON(t *testing.T) {
	in := hostile()
	resp := get(t, New(func() Input { return in }), "GET", "/status.json")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var st struct {
		Daemon    map[string]any   `json:"daemon"`
		Uptime    string           `json:"uptime"`
		Summary   string           `json:"summary"`
		Warnings  []string         `json:"warnings"`
		Processes []map[string]any `json:"processes"`
	}
	if err := json.Unmarshal([]byte(readBody(t, resp)), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Processes) != len(in.Processes) {
		t.Fatalf("%d processes, want %d", len(st.Processes), len(in.Processes))
	}
	for i, p := range in.Processes {
		b, _ := json.Marshal(p) // as gosup ctl status --json has it
		var cli map[string]any
		if err := json.Unmarshal(b, &cli); err != nil {
			t.Fatal(err)
		}
		for k, v := range cli {
			if fmt.Sprint(st.Processes[i][k]) != fmt.Sprint(v) {
				t.Errorf("process %d: %s = %v, ctl status --json has %v", i, k, st.Processes[i][k], v)
			}
		}
		show, _ := st.Processes[i]["show"].(map[string]any)
		c := api.FormatColumns(p)
		if i == 0 {
			c.Info = "last exit 2026-11-30 12:00:00, killed by SIGKILL" // running again: the page says after what
		}
		if show["pid"] != c.Pid || show["uptime"] != c.Uptime || show["mem"] != c.Mem || show["cpu"] != c.CPU || show["info"] != c.Info {
			t.Errorf("process %d: show %v, want %+v", i, show, c)
		}
	}
	if st.Uptime != "1 days, 1:01:01" || st.Summary != "2 processes: 1 FATAL, 1 RUNNING" || st.Daemon["pid"] != 42.0 || len(st.Warnings) != 1 {
		t.Errorf("uptime %q, summary %q, daemon %v, warnings %q", st.Uptime, st.Summary, st.Daemon, st.Warnings)
	}
	// No warning is [] (the page's script maps over it), not null.
	resp = get(t, New(func() Input { return Input{} }), "GET", "/status.json")
	if b := readBody(t, resp); !strings.Contains(b, `"warnings":[]`) || !strings.Contains(b, `"processes":[]`) {
		t.Errorf("empty: %s", b)
	}
}

// Requests within MinInterval share one read of the daemon, however many
// come at once; the next after it reads again.
func TestOneReadPerInterval(t *testing.T) {
	var reads atomic.Int64
	h := New(func() Input { reads.Add(1); return hostile() }).(*handler)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	h.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := httptest.NewServer(h)
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		path := "/"
		if i%2 == 1 {
			path = "/status.json"
		}
		wg.Go(func() {
			resp, err := srv.Client().Get(srv.URL + path)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Errorf("20 requests at once read the daemon %d times, want 1", n)
	}
	mu.Lock()
	now = now.Add(MinInterval)
	mu.Unlock()
	resp, err := srv.Client().Get(srv.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := reads.Load(); n != 2 {
		t.Errorf("after MinInterval: %d reads, want 2", n)
	}
}

// Both are gzipped for a client that takes it (a phone polling 500
// processes), plain for one that does not.
func TestGzip(t *testing.T) {
	h := New(func() Input { return hostile() })
	for _, path := range []string{"/", "/status.json"} {
		resp := get(t, h, "GET", path) // Go's client asks for gzip and inflates
		if !resp.Uncompressed || !strings.Contains(readBody(t, resp), "web:web_0") {
			t.Errorf("%s: not gzipped (Uncompressed %v)", path, resp.Uncompressed)
		}
		for _, ae := range []string{"identity", "gzip;q=0", "br"} {
			srv := httptest.NewServer(h)
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			req.Header.Set("Accept-Encoding", ae)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			srv.Close()
			if resp.Header.Get("Content-Encoding") != "" || !strings.Contains(string(b), "web:web_0") {
				t.Errorf("%s with Accept-Encoding %q: Content-Encoding %q", path, ae, resp.Header.Get("Content-Encoding"))
			}
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for ae, want := range map[string]bool{
		"": false, "gzip": true, "GZIP": true, "gzip, deflate, br": true, "br, gzip;q=0.5": true, "gzip;q=1.0": true,
		"gzip;q=0": false, "gzip; q=0": false, "gzip;Q=0.000": false, "gzip;q=0.": false, "gzip;q=junk": false,
		"identity": false, "*": false, "br": false, "x-gzip": false, "gzipx": false,
	} {
		if have := acceptsGzip(ae); have != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", ae, have, want)
		}
	}
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		n      int
		states map[string]int
		want   string
	}{
		{0, nil, "0 processes"},
		{1, map[string]int{"RUNNING": 1}, "1 process: 1 RUNNING"},
		{5, map[string]int{"RUNNING": 2, "BACKOFF": 1, "STOPPED": 1, "WEIRD": 1}, "5 processes: 1 BACKOFF, 1 STOPPED, 2 RUNNING, 1 other"},
	} {
		if have := summary(tc.n, tc.states); have != tc.want {
			t.Errorf("summary(%d, %v) = %q, want %q", tc.n, tc.states, have, tc.want)
		}
	}
}

// The page's cost with 500 processes, and the size of what it sends.
func BenchmarkPage500(b *testing.B) {
	in := Input{Daemon: Daemon{Host: "h", Version: "v1", State: "running"}}
	for i := range 500 {
		in.Processes = append(in.Processes, api.ProcStatus{
			Name: fmt.Sprintf("web:web_%03d", i), Group: "web", Program: "web", Process: fmt.Sprintf("web_%03d", i),
			State: "RUNNING", Pid: 10000 + i, Port: 9000 + i, UptimeS: 3600, Sampled: true, CPUWindowS: 2, CPUPercent: 1.5,
			RSSBytes: 50 << 20, Description: fmt.Sprintf("pid %d, uptime 1:00:00", 10000+i),
			Stdout: fmt.Sprintf("/var/log/gosup/web_%03d.log", i),
		})
	}
	for _, path := range []string{"/", "/status.json"} {
		b.Run(map[string]string{"/": "page", "/status.json": "json"}[path], func(b *testing.B) {
			h := New(func() Input { return in }).(*handler)
			tick := time.Unix(0, 0)
			h.now = func() time.Time { tick = tick.Add(MinInterval); return tick } // no shared snapshot
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			var n int
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				n = w.Body.Len()
			}
			plain := h.last.page.plain
			if path != "/" {
				plain = h.last.js.plain
			}
			b.ReportMetric(float64(len(plain)), "body-bytes")
			b.ReportMetric(float64(n), "gzip-bytes")
		})
	}
}

// A read of the daemon that takes longer than MinInterval (1,000
// processes on a loaded machine) does not make the next request read
// again at once: the interval counts from the end of the read, else the
// clients waiting for it would each start another, back to back.
func TestSlowReadIsShared(t *testing.T) {
	var reads atomic.Int64
	var mu sync.Mutex
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := New(func() Input {
		reads.Add(1)
		mu.Lock()
		now = now.Add(2 * MinInterval) // the read takes two intervals
		mu.Unlock()
		return hostile()
	}).(*handler)
	h.now = clock
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 3 { // clients that waited for the first read
		resp, err := srv.Client().Get(srv.URL + "/status.json")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("3 requests right after a slow read read the daemon %d times, want 1", n)
	}
	var st Status
	resp, err := srv.Client().Get(srv.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC); !st.Time.Equal(want) {
		t.Errorf("status.json's time %v, want when the read started, %v", st.Time, want)
	}
	if want := "2026-11-30 12:00:00 UTC"; st.AsOf != want { // the page says it so
		t.Errorf("status.json's as_of %q, want %q", st.AsOf, want)
	}
	if page := readBody(t, get(t, h, "GET", "/")); !strings.Contains(page, `<dd id="asof">2026-11-30 12:00:00 UTC</dd>`) {
		t.Errorf("the page's as of is not status.json's as_of:\n%s", page)
	}
}
