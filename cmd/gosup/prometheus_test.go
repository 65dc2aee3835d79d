package main

// Script commands for the Prometheus end-to-end test (prometheus_e2e.txtar)
// and for the examples in examples/: a real Prometheus server (Debian's
// prometheus package) started on loopback, queries through its HTTP API,
// a child crashed by pid, and a check that the Grafana dashboard and the
// alert rules only use metrics that a real daemon's /metrics exports.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/rogpeppe/go-internal/testscript"
)

func prometheusCmds() map[string]func(*testscript.TestScript, bool, []string) {
	return map[string]func(*testscript.TestScript, bool, []string){
		"prometheus":  cmdPrometheus,
		"promquery":   cmdPromquery,
		"promrules":   cmdPromrules,
		"crash":       cmdCrash,
		"usesmetrics": cmdUsesmetrics,
	}
}

// promClient asks Prometheus' API; a request that hangs fails, it does
// not stall the script.
var promClient = &http.Client{Timeout: 10 * time.Second}

// cmdPrometheus starts a real Prometheus server (/usr/bin/prometheus, or
// the one in $PATH) listening on ADDR (a loopback address) with CONFIG, its
// data in $WORK/prometheus-data and its log in $WORK/prometheus.log, waits
// (up to 60s) until it says it is ready, and sets $PROMETHEUS to its URL
// for promquery and promrules. The server is stopped (by its pid) when the
// script ends, and killed if the test binary dies first.
//
//	prometheus ADDR CONFIG
func cmdPrometheus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: prometheus ADDR CONFIG")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		ts.Fatalf("prometheus not found (apt-get install prometheus): %v", err)
	}
	logf, err := os.Create(ts.MkAbs("prometheus.log"))
	ts.Check(err)
	defer logf.Close()
	cmd := exec.Command(bin,
		"--config.file="+ts.MkAbs(args[1]),
		"--storage.tsdb.path="+ts.MkAbs("prometheus-data"),
		"--web.listen-address="+args[0],
		"--log.level=info",
	)
	cmd.Dir = ts.MkAbs(".")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed (go test's -timeout, a ^C) runs no
	// deferred stop; the kernel then kills the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ts.Check(cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ts.Defer(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := "http://" + args[0]
	var last string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err // for the deferred stop
			log, _ := os.ReadFile(ts.MkAbs("prometheus.log"))
			ts.Fatalf("prometheus exited (%v) before it was ready; its log:\n%s", err, log)
		default:
		}
		resp, err := promClient.Get(base + "/-/ready")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			last = fmt.Sprintf("%s: %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(ts.MkAbs("prometheus.log"))
			ts.Fatalf("prometheus not ready after 60s (last: %s); its log:\n%s", last, log)
		}
	}
	ts.Setenv("PROMETHEUS", base)
}

// promResponse is the envelope of Prometheus' HTTP API.
type promResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

// promGet asks the API of the server cmdPrometheus started for PATH with
// the query parameters, and returns its data.
func promGet(ts *testscript.TestScript, path string, q url.Values) (json.RawMessage, error) {
	base := ts.Getenv("PROMETHEUS")
	if base == "" {
		ts.Fatalf("no Prometheus: run the prometheus command first")
	}
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := promClient.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r promResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s: %s", path, resp.Status, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// promSample is one series of an instant query's result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) String() string {
	keys := make([]string, 0, len(s.Metric))
	for k := range s.Metric {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, s.Metric[k])
	}
	fmt.Fprintf(&b, "} %v", s.Value[1])
	return b.String()
}

// cmdPromquery runs the instant query QUERY through Prometheus' HTTP API
// (/api/v1/query) until its result is not empty (a comparison in the query
// says what is awaited: `up{job="gosup"} == 1`), and fails after -t (60s)
// with the last result of the query without its final comparison, if it
// has one, to show what Prometheus had. An error the query itself has
// (bad PromQL) fails at once.
//
//	promquery [-t 60s] QUERY
func cmdPromquery(ts *testscript.TestScript, neg bool, args []string) {
	wait := 60 * time.Second
	if len(args) > 1 && args[0] == "-t" {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		wait, args = d, args[2:]
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: promquery [-t 60s] QUERY")
	}
	query := func(q string) ([]promSample, error) {
		data, err := promGet(ts, "/api/v1/query", url.Values{"query": {q}})
		if err != nil {
			return nil, err
		}
		var v struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, err
		}
		if v.ResultType != "vector" {
			return nil, fmt.Errorf("result type %s, want a vector", v.ResultType)
		}
		return v.Result, nil
	}
	var lastErr error
	for deadline := time.Now().Add(wait); ; time.Sleep(200 * time.Millisecond) {
		res, err := query(args[0])
		if err != nil && strings.Contains(err.Error(), "bad_data") {
			ts.Fatalf("promquery %s: %v", args[0], err)
		}
		if err == nil && len(res) > 0 {
			for _, s := range res {
				ts.Logf("promquery: %s", s)
			}
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			break
		}
	}
	// What Prometheus had: the query without its last comparison.
	shown := args[0]
	if m := regexp.MustCompile(`^(.*?)\s*(==|!=|>=|<=|>|<)\s*[0-9.e+-]+$`).FindStringSubmatch(args[0]); m != nil {
		shown = m[1]
	}
	res, err := query(shown)
	var b strings.Builder
	for _, s := range res {
		fmt.Fprintf(&b, "\n  %s", s)
	}
	ts.Fatalf("promquery: %s still empty after %s (last error: %v); %s is:%s (%v)\nPrometheus' targets:%s", args[0], wait, lastErr, shown, b.String(), err, promTargets(ts))
}

// promTargets says how Prometheus' scrapes went: each target's URL,
// health and last error, one a line.
func promTargets(ts *testscript.TestScript) string {
	data, err := promGet(ts, "/api/v1/targets", nil)
	if err != nil {
		return " " + err.Error()
	}
	var v struct {
		ActiveTargets []struct {
			ScrapeURL string `json:"scrapeUrl"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		} `json:"activeTargets"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return " " + err.Error()
	}
	var b strings.Builder
	for _, t := range v.ActiveTargets {
		fmt.Fprintf(&b, "\n  %s %s %s", t.ScrapeURL, t.Health, t.LastError)
	}
	return b.String()
}

// cmdPromrules waits (up to 60s) until Prometheus has loaded the rules of
// FILE (as many as FILE has `- alert:` and `- record:` lines) and evaluated
// each of them at least once, and fails at once if one of them fails to
// evaluate on the real series (a rule's health "err": a many-to-many
// match, a bad label...).
//
//	promrules FILE
func cmdPromrules(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: promrules FILE")
	}
	want := len(regexp.MustCompile(`(?m)^\s*- (alert|record): `).FindAllString(ts.ReadFile(args[0]), -1))
	if want == 0 {
		ts.Fatalf("promrules: no rules in %s", args[0])
	}
	var have string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		data, err := promGet(ts, "/api/v1/rules", nil)
		if err == nil {
			var v struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []struct {
						Name           string    `json:"name"`
						Health         string    `json:"health"`
						LastError      string    `json:"lastError"`
						LastEvaluation time.Time `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			}
			ts.Check(json.Unmarshal(data, &v))
			n, evaluated := 0, 0
			for _, g := range v.Groups {
				for _, r := range g.Rules {
					n++
					if r.Health == "err" {
						ts.Fatalf("promrules: rule %s (group %s) fails on the real series: %s", r.Name, g.Name, r.LastError)
					}
					if r.Health == "ok" && !r.LastEvaluation.IsZero() {
						evaluated++
					}
				}
			}
			if n == want && evaluated == n {
				ts.Logf("promrules: %d rules evaluated without error", n)
				return
			}
			have = fmt.Sprintf("%d rules, %d evaluated", n, evaluated)
		} else {
			have = err.Error()
		}
		if time.Now().After(deadline) {
			ts.Fatalf("promrules: want %d rules evaluated, have %s after 60s", want, have)
		}
	}
}

// cmdCrash kills the process NAME of the daemon on SOCKET with SIGKILL, by
// its pid (a crash gosup did not cause); NAME must be RUNNING.
//
//	crash SOCKET NAME
func cmdCrash(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: crash SOCKET NAME")
	}
	cl := api.NewClient(ts.MkAbs(args[0]))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := cl.Status(ctx, args[1])
	ts.Check(err)
	if len(st) != 1 || st[0].State != "RUNNING" || st[0].Pid <= 0 {
		ts.Fatalf("crash: want %s RUNNING with a pid, have %+v", args[1], st)
	}
	ts.Check(syscall.Kill(st[0].Pid, syscall.SIGKILL))
	ts.Logf("crash: killed %s (pid %d)", st[0].Name, st[0].Pid)
}

// cmdUsesmetrics checks that every metric name the queries of FILEs use is
// one that METRICS (a real daemon's /metrics, in Prometheus' text format)
// has: a family (# TYPE) or a sample's name (a histogram's _bucket). A
// FILE is a Grafana dashboard (.json: also checked to be one, see
// checkDashboard) or Prometheus rules (.yml: every expr). up is allowed in
// rules: Prometheus makes it for every target. -absent NAME allows a
// family that has no series in METRICS (one that appears only once
// something happened), and fails if it has some: the exception is not
// needed. With -all, the FILEs together also use every gosup_ family that
// METRICS has.
//
//	usesmetrics [-absent NAME]... [-all] METRICS FILE...
func cmdUsesmetrics(ts *testscript.TestScript, neg bool, args []string) {
	var absent []string
	all := false
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch {
		case args[0] == "-absent" && len(args) > 1:
			absent = append(absent, args[1])
			args = args[2:]
		case args[0] == "-all":
			all = true
			args = args[1:]
		default:
			ts.Fatalf("usesmetrics: unknown flag %s", args[0])
		}
	}
	if neg || len(args) < 2 {
		ts.Fatalf("usage: usesmetrics [-absent NAME]... [-all] METRICS FILE...")
	}
	exported := exportedMetrics(ts.ReadFile(args[0]))
	if len(exported) == 0 {
		ts.Fatalf("usesmetrics: %s has no metrics", args[0])
	}
	for _, a := range absent {
		if exported[a] {
			ts.Fatalf("usesmetrics: %s has %s: drop -absent %s", args[0], a, a)
		}
		exported[a] = true
	}
	used := map[string]bool{}
	for _, f := range args[1:] {
		data, err := os.ReadFile(ts.MkAbs(f))
		ts.Check(err)
		var exprs []string
		switch filepath.Ext(f) {
		case ".json":
			exprs, err = checkDashboard(data)
		case ".yml", ".yaml":
			exprs, err = ruleExprs(string(data))
		default:
			err = fmt.Errorf("neither .json (a dashboard) nor .yml (rules)")
		}
		if err != nil {
			ts.Fatalf("usesmetrics: %s: %v", f, err)
		}
		var missing []string
		n := 0
		for _, e := range exprs {
			for _, name := range promMetricNames(e) {
				n++
				used[name] = true
				if !exported[name] && !(name == "up" && filepath.Ext(f) != ".json") && !slices.Contains(missing, name) {
					missing = append(missing, name)
				}
			}
		}
		if len(missing) > 0 {
			ts.Fatalf("usesmetrics: %s uses metrics that %s does not have: %s", f, args[0], strings.Join(missing, ", "))
		}
		ts.Logf("usesmetrics: %s: %d queries, all their metrics exported", f, len(exprs))
	}
	if all {
		var unused []string
		for name := range exported {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if strings.HasPrefix(name, "gosup_") && !used[name] && !used[base] && !used[base+"_bucket"] && !used[base+"_sum"] && !used[base+"_count"] {
				unused = append(unused, name)
			}
		}
		if len(unused) > 0 {
			slices.Sort(unused)
			ts.Fatalf("usesmetrics -all: %s has metrics that %v do not use: %s", args[0], args[1:], strings.Join(unused, ", "))
		}
	}
}

// exportedMetrics are the metric names of a /metrics response: families
// (# TYPE NAME) and the names of the samples.
func exportedMetrics(text string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if f, ok := strings.CutPrefix(l, "# TYPE "); ok {
			if name, _, ok := strings.Cut(f, " "); ok {
				names[name] = true
			}
			continue
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			names[l[:i]] = true
		}
	}
	return names
}

var (
	promStringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchersRE = regexp.MustCompile(`\{[^{}]*\}`)
	promRangeRE    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGroupingRE = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdentRE    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords   = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true,
	}
)

// promMetricNames are the metric names a PromQL expression selects: its
// identifiers that are not functions or aggregations (followed by "("),
// keywords, label names (in {...}, by (...)) or inside strings, ranges
// ([5m], [$__rate_interval]) or numbers (1e3). It is a lexer, not a parser:
// enough for the expressions of the examples, which a real Prometheus
// checks (promtool check rules, and the end-to-end test's rules).
func promMetricNames(expr string) []string {
	e := promStringRE.ReplaceAllString(expr, `""`)
	e = promMatchersRE.ReplaceAllString(e, " ")
	e = promRangeRE.ReplaceAllString(e, " ")
	e = promGroupingRE.ReplaceAllString(e, " ")
	var names []string
	for _, m := range promIdentRE.FindAllStringIndex(e, -1) {
		name := e[m[0]:m[1]]
		if m[0] > 0 {
			if c := e[m[0]-1]; c == '$' || c == '.' || c >= '0' && c <= '9' {
				continue // a variable, a number's exponent or a unit
			}
		}
		if promKeywords[name] || strings.HasPrefix(strings.TrimLeft(e[m[1]:], " \t\n"), "(") {
			continue
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// ruleExprs are the expr values of a Prometheus rules file: `expr: X` on
// one line or a block scalar (`expr: |` and the more indented lines after
// it).
func ruleExprs(text string) ([]string, error) {
	lines := strings.Split(text, "\n")
	var exprs []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		t := strings.TrimLeft(l, " ")
		v, ok := strings.CutPrefix(t, "expr:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if v != "|" && v != ">" && v != "|-" && v != ">-" {
			exprs = append(exprs, strings.Trim(v, `'`))
			continue
		}
		indent := len(l) - len(t)
		var block []string
		for i+1 < len(lines) {
			n := lines[i+1]
			if strings.TrimSpace(n) != "" && len(n)-len(strings.TrimLeft(n, " ")) <= indent {
				break
			}
			block = append(block, n)
			i++
		}
		exprs = append(exprs, strings.Join(block, "\n"))
	}
	if len(exprs) == 0 {
		return nil, fmt.Errorf("no expr")
	}
	return exprs, nil
}

// grafanaPanel is what checkDashboard reads of a panel.
type grafanaPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *grafanaRef     `json:"datasource"`
	GridPos    map[string]int  `json:"gridPos"`
	Targets    []grafanaTarget `json:"targets"`
	Panels     []grafanaPanel  `json:"panels"` // a collapsed row's
}

type grafanaRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaTarget struct {
	Datasource *grafanaRef `json:"datasource"`
	Expr       string      `json:"expr"`
	RefID      string      `json:"refId"`
}

// grafanaPanelTypes are the panel types of Grafana's core that the
// dashboard may use.
var grafanaPanelTypes = []string{"row", "timeseries", "stat", "table", "gauge", "bargauge", "state-timeline", "text"}

// checkDashboard checks that data is a Grafana dashboard that imports on
// its own: the fields Grafana needs (uid, title, schemaVersion 36 or
// later, panels), a datasource variable of type prometheus that every
// panel and query uses (no uid of someone's data source), panels of core
// types with unique ids on the 24-column grid, each query with a refId
// unique in its panel and an expression, and template variables whose
// queries are PromQL too. It returns every PromQL expression (queries and
// variables' label_values selectors).
func checkDashboard(data []byte) ([]string, error) {
	var d struct {
		UID           string         `json:"uid"`
		Title         string         `json:"title"`
		SchemaVersion int            `json:"schemaVersion"`
		Panels        []grafanaPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string      `json:"name"`
				Type       string      `json:"type"`
				Query      any         `json:"query"`
				Datasource *grafanaRef `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	var errs []string
	errorf := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if d.UID == "" || d.Title == "" {
		errorf("no uid or title")
	}
	if d.SchemaVersion < 36 {
		errorf("schemaVersion %d, want 36 or later (Grafana 9+)", d.SchemaVersion)
	}
	var exprs []string
	dsVar := ""
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			if v.Query != "prometheus" {
				errorf("variable %s: a datasource variable of %v, want prometheus", v.Name, v.Query)
			}
			dsVar = "${" + v.Name + "}"
		case "query":
			if v.Datasource == nil || v.Datasource.UID != dsVar {
				errorf("variable %s: datasource %+v, want the datasource variable %s (defined before it)", v.Name, v.Datasource, dsVar)
			}
			q := ""
			switch x := v.Query.(type) {
			case string:
				q = x
			case map[string]any:
				q, _ = x["query"].(string)
			}
			// label_values(SELECTOR, LABEL): the selector is PromQL.
			if inner, ok := strings.CutPrefix(q, "label_values("); ok {
				if i := strings.LastIndex(inner, ","); i > 0 {
					q = inner[:i]
				} else {
					q = strings.TrimSuffix(inner, ")")
				}
			}
			if q == "" {
				errorf("variable %s: no query", v.Name)
			}
			exprs = append(exprs, q)
		}
	}
	if dsVar == "" {
		errorf("no datasource variable (type datasource, query prometheus)")
	}
	ids := map[int]string{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if p.ID <= 0 {
				errorf("%s: no id", where)
			} else if prev, ok := ids[p.ID]; ok {
				errorf("%s: id also %q's", where, prev)
			}
			ids[p.ID] = p.Title
			if !slices.Contains(grafanaPanelTypes, p.Type) {
				errorf("%s: type %q is not one of %v", where, p.Type, grafanaPanelTypes)
			}
			if p.Title == "" {
				errorf("%s: no title", where)
			}
			x, y, w, h := p.GridPos["x"], p.GridPos["y"], p.GridPos["w"], p.GridPos["h"]
			if w <= 0 || h <= 0 || x < 0 || y < 0 || x+w > 24 {
				errorf("%s: gridPos %v not on the 24-column grid", where, p.GridPos)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsVar || p.Datasource.Type != "prometheus" {
				errorf("%s: datasource %+v, want {prometheus %s}", where, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 && p.Type != "text" {
				errorf("%s: no queries", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] {
					errorf("%s: refId %q missing or repeated", where, tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && tg.Datasource.UID != dsVar {
					errorf("%s: query %s: datasource %+v, want %s", where, tg.RefID, tg.Datasource, dsVar)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					errorf("%s: query %s has no expr", where, tg.RefID)
				}
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	if len(ids) == 0 {
		errorf("no panels")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("not a dashboard Grafana imports as it is:\n  %s", strings.Join(errs, "\n  "))
	}
	return exprs, nil
}

// TestPromMetricNames: the lexer finds the metrics of expressions like the
// examples' and nothing else (labels, functions, variables, durations).
func TestPromMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`up{job="gosup"} == 0`, []string{"up"}},
		{`sum without (reason) (increase(gosup_process_exits_total{reason=~"unexpected|killed"}[10m])) >= 3`, []string{"gosup_process_exits_total"}},
		{`histogram_quantile(0.95, sum by (le) (rate(gosup_config_reload_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`, []string{"gosup_config_reload_duration_seconds_bucket"}},
		{"gosup_alerts_held > 0 and increase(gosup_alert_failures_total[15m]) > 0", []string{"gosup_alerts_held", "gosup_alert_failures_total"}},
		{`(a_total > 1e3 or b offset 5m) and on (instance, job) (time() - c_seconds) > 300`, []string{"a_total", "b", "c_seconds"}},
		{`count(gosup_process_up{instance=~"$instance"} == 0) or vector(0)`, []string{"gosup_process_up"}},
		{`label_replace(x, "dst", "$1", "src", "(.*)")`, []string{"x"}},
	} {
		if got := promMetricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("promMetricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// TestCheckDashboardFails: checkDashboard says what is wrong with a
// dashboard that Grafana would not import as it is.
func TestCheckDashboardFails(t *testing.T) {
	good := `{"uid": "g", "title": "g", "schemaVersion": 39,
	  "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
	  "panels": [{"id": 1, "type": "timeseries", "title": "t", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
	    "datasource": {"type": "prometheus", "uid": "${datasource}"},
	    "targets": [{"refId": "A", "expr": "rate(a_total[5m])"}]}]}`
	exprs, err := checkDashboard([]byte(good))
	if err != nil || !slices.Equal(exprs, []string{"rate(a_total[5m])"}) {
		t.Fatalf("a good dashboard: %q, %v", exprs, err)
	}
	for _, c := range []struct{ old, new, want string }{
		{`"schemaVersion": 39`, `"schemaVersion": 16`, "schemaVersion 16"},
		{`"uid": "${datasource}"`, `"uid": "P1809F7CD0C75ACF3"`, "want {prometheus ${datasource}}"},
		{`"query": "prometheus"`, `"query": "loki"`, "datasource variable of loki"},
		{`"type": "timeseries"`, `"type": "graph-old"`, `type "graph-old"`},
		{`"w": 12`, `"w": 30`, "24-column grid"},
		{`"expr": "rate(a_total[5m])"`, `"expr": ""`, "has no expr"},
		{`"refId": "A", `, ``, "refId"},
		{`"id": 1`, `"id": 0`, "no id"},
		{`{"uid"`, `["uid"`, "not JSON"},
	} {
		bad := strings.Replace(good, c.old, c.new, 1)
		if bad == good {
			t.Fatalf("%q not in the good dashboard", c.old)
		}
		if _, err := checkDashboard([]byte(bad)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s → %s: error %v, want one saying %q", c.old, c.new, err, c.want)
		}
	}
}

// needDebianTool finds a program of a Debian package the test needs. Under
// CI (CI=true) a missing one fails the test: .ci/run installs it.
// Elsewhere the test is skipped with the way to install it.
func needDebianTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found; CI must install it (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not installed; run `apt-get install %s` to run this test", name, pkg)
	return ""
}

// TestPrometheusRules: examples/prometheus-rules.yml passes `promtool check
// rules` and its unit tests (examples/prometheus-rules.test.yml: each alert
// fires on a troubled series and not on a healthy one) pass `promtool test
// rules`; every alert of the rules has a test in which it fires.
func TestPrometheusRules(t *testing.T) {
	promtool := needDebianTool(t, "promtool", "prometheus")
	rules := filepath.Join(repoRoot, "examples", "prometheus-rules.yml")
	tests := filepath.Join(repoRoot, "examples", "prometheus-rules.test.yml")
	out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput()
	if err != nil || !regexp.MustCompile(`SUCCESS: \d+ rules found`).Match(out) {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	out, err = exec.Command(promtool, "test", "rules", tests).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	rb, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := os.ReadFile(tests)
	if err != nil {
		t.Fatal(err)
	}
	// The alerts each test expects to fire: an alertname line, then
	// exp_labels before the next alertname.
	fires := map[string]bool{}
	current := ""
	for _, l := range strings.Split(string(tb), "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "alertname:"); ok {
			current = strings.TrimSpace(v)
		}
		if strings.HasPrefix(l, "- exp_labels:") && current != "" {
			fires[current] = true
		}
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)$`).FindAllStringSubmatch(string(rb), -1)
	if len(alerts) == 0 {
		t.Fatal("no alerts in the rules")
	}
	for _, a := range alerts {
		if !fires[a[1]] {
			t.Errorf("alert %s has no test in %s in which it fires", a[1], tests)
		}
	}
}

// TestGrafanaDashboardExample: examples/grafana-dashboard.json is a
// dashboard Grafana imports as it is (checkDashboard) and its queries
// select gosup's metrics and the daemon's own go_ and process_ ones
// (prometheus_e2e.txtar checks them against a real daemon's /metrics).
func TestGrafanaDashboardExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "examples", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	exprs, err := checkDashboard(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exprs {
		names := promMetricNames(e)
		if len(names) == 0 {
			t.Errorf("query %q selects no metric", e)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, "gosup_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
				t.Errorf("query %q selects %s, not one of the daemon's", e, n)
			}
		}
	}
}
