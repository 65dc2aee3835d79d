package metrics

import (
	"bufio"
	"bytes"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// familyOrder is the families of a text exposition in the order written.
func familyOrder(b []byte) []string {
	var names []string
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	return names
}

// appendDaemon writes the same families, series and values, in the same
// order, as client_golang wrote from the daemon's collector; those
// families are the ones docs/observability.md lists.
func TestAppendDaemonMatchesClientGolang(t *testing.T) {
	snaps := map[string]Snapshot{"every figure": snapshotOdd(), "zero": {}, "escaped": {
		Panics: map[string]int64{"b\"q": 1, "a\\b": 2, "new\nline": 3}, Version: "v\"1", Revision: `r\`, GoVersion: "go\n",
		ReloadSeconds: Histogram{Count: 9, Sum: 0.25, Buckets: map[float64]uint64{0.005: 1, 0.01: 2, 2.5: 5, 60: 8, 1e6: 9}},
	}}
	for name, snap := range snaps {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(&daemonCollector{snap: &snap, d: newDescs()})
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		// client_golang's text, parsed as ours is (the +Inf bucket is
		// in the text only).
		var ref bytes.Buffer
		enc := expfmt.NewEncoder(&ref, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range fams {
			if err := enc.Encode(f); err != nil {
				t.Fatal(err)
			}
		}
		want := parse(t, ref.Bytes())
		text := appendDaemon(nil, &snap)
		got := parse(t, text)
		if len(got) != len(want) {
			t.Errorf("%s: %d families, want %d", name, len(got), len(want))
		}
		for fname, w := range want {
			// Series in the order written: client_golang's.
			if g := got[fname]; g == nil || !proto.Equal(g, w) {
				t.Errorf("%s: %s differs:\nhave %v\nwant %v", name, fname, g, w)
			}
		}
		if order, wantOrder := familyOrder(text), familyOrder(ref.Bytes()); !slices.Equal(order, wantOrder) {
			t.Errorf("%s: families in the order\n%v\nwant\n%v", name, order, wantOrder)
		}
	}

	// The documented families: the table's gosup_* but the per-process.
	doc, err := os.ReadFile("../../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(gosup_[a-z_]+)").FindAllStringSubmatch(string(doc), -1) {
		if !strings.HasPrefix(m[1], "gosup_process_") {
			documented = append(documented, m[1])
		}
	}
	slices.Sort(documented)
	snap := snapshotOdd()
	if have := familyOrder(appendDaemon(nil, &snap)); !slices.Equal(have, documented) {
		t.Errorf("daemon-wide families\n%v\ndocs/observability.md lists\n%v", have, documented)
	}
}

// A scrape's go_* and process_* families are those client_golang's
// GoCollector and ProcessCollector give in this binary: names, types,
// help, labels, and the values that do not move between two reads.
func TestRuntimeFamiliesMatchClientGolang(t *testing.T) {
	h := NewHandler(func() Snapshot { return Snapshot{} }, Options{})
	_, body := get(t, h, false)
	got := parse(t, body)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	want, err := reg.Gather() // after the scrape: its counters are at least ours
	if err != nil {
		t.Fatal(err)
	}
	var haveNames, wantNames []string
	for _, f := range familyOrder(body) {
		if strings.HasPrefix(f, "go_") || strings.HasPrefix(f, "process_") {
			haveNames = append(haveNames, f)
		}
	}
	value := func(f *dto.MetricFamily) float64 {
		m := f.Metric[0]
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount())
		}
		return 0
	}
	for _, w := range want {
		name := w.GetName()
		wantNames = append(wantNames, name)
		g := got[name]
		if g == nil {
			continue
		}
		if g.GetHelp() != w.GetHelp() || g.GetType() != w.GetType() || len(g.Metric) != len(w.Metric) {
			t.Errorf("%s: help %q, type %v, %d series; client_golang: %q, %v, %d", name, g.GetHelp(), g.GetType(), len(g.Metric), w.GetHelp(), w.GetType(), len(w.Metric))
			continue
		}
		for i := range w.Metric {
			if gl, wl := g.Metric[i].GetLabel(), w.Metric[i].GetLabel(); !slices.EqualFunc(gl, wl, func(a, b *dto.LabelPair) bool { return proto.Equal(a, b) }) {
				t.Errorf("%s: labels %v, client_golang %v", name, gl, wl)
			}
		}
		if gq, wq := g.Metric[0].GetSummary().GetQuantile(), w.Metric[0].GetSummary().GetQuantile(); len(gq) != len(wq) {
			t.Errorf("%s: quantiles %v, client_golang %v", name, gq, wq)
		} else {
			for i := range wq {
				if gq[i].GetQuantile() != wq[i].GetQuantile() {
					t.Errorf("%s: quantiles %v, client_golang %v", name, gq, wq)
				}
			}
		}
		gv, wv := value(g), value(w)
		switch name {
		case "go_info", "go_gc_gogc_percent", "go_gc_gomemlimit_bytes", "go_sched_gomaxprocs_threads",
			"process_max_fds", "process_virtual_memory_max_bytes", "process_start_time_seconds":
			if gv != wv {
				t.Errorf("%s = %v, client_golang's %v", name, gv, wv)
			}
		case "go_memstats_alloc_bytes_total", "go_memstats_mallocs_total", "go_memstats_frees_total", "go_gc_duration_seconds",
			"process_cpu_seconds_total", "process_network_receive_bytes_total", "process_network_transmit_bytes_total":
			// Counters read before client_golang's.
			if gv > wv || (name == "go_memstats_alloc_bytes_total" && gv == 0) {
				t.Errorf("%s = %v read first, client_golang's %v", name, gv, wv)
			}
		}
	}
	if !slices.Equal(haveNames, wantNames) {
		t.Errorf("go_* and process_* families\n%v\nclient_golang's\n%v", haveNames, wantNames)
	}
}

// The runtime's and the process's figures are this process's.
func TestRuntimeValuesAreSane(t *testing.T) {
	// The kernel counts CPU in clock ticks (10 ms): a test process that
	// has run less than one reads 0. It works until /proc/self/stat says
	// it has run two.
	for {
		var r runtimeReader
		st, err := r.stat()
		if err != nil {
			t.Fatal(err)
		}
		if st.utime+st.stime >= 2 {
			break
		}
		spin()
	}
	h := NewHandler(func() Snapshot { return Snapshot{} }, Options{})
	_, body := get(t, h, false)
	fams := parse(t, body)
	v := func(name string) float64 {
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s", name)
		}
		if m := f.Metric[0]; m.Gauge != nil {
			return m.Gauge.GetValue()
		} else {
			return m.GetCounter().GetValue()
		}
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	if fds := v("process_open_fds"); fds < float64(len(entries))-3 || fds > float64(len(entries))+3 {
		t.Errorf("process_open_fds %v, /proc/self/fd has %d", fds, len(entries))
	}
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	pages, err := strconv.ParseFloat(strings.Fields(string(statm))[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	if rss, want := v("process_resident_memory_bytes"), pages*float64(os.Getpagesize()); rss < want*0.9 || rss > want*1.1 {
		t.Errorf("process_resident_memory_bytes %v, statm's %v", rss, want)
	}
	if g := v("go_goroutines"); g < 1 {
		t.Errorf("go_goroutines %v", g)
	}
	if n := v("go_threads"); n < 1 {
		t.Errorf("go_threads %v", n)
	}
	if sys, inuse := v("go_memstats_sys_bytes"), v("go_memstats_heap_inuse_bytes"); inuse <= 0 || sys < inuse {
		t.Errorf("go_memstats_sys_bytes %v, heap in use %v", sys, inuse)
	}
	if cpu := v("process_cpu_seconds_total"); cpu <= 0 {
		t.Errorf("process_cpu_seconds_total %v: this test has run", cpu)
	}
	// btime is whole seconds, the start after it whole ticks, both cut
	// down: the start is at most now, which may be in the same second
	// (now's own seconds, cut down too, would not do).
	if start := v("process_start_time_seconds"); start <= 1.7e9 || start > float64(time.Now().UnixNano())/1e9 {
		t.Errorf("process_start_time_seconds %v", start)
	}
	if vm := v("process_virtual_memory_bytes"); vm < v("process_resident_memory_bytes") {
		t.Errorf("process_virtual_memory_bytes %v under the resident", vm)
	}
	// What procfs reads for the network: /proc/self/net/netstat's IpExt.
	f, err := os.Open("/proc/self/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var header []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "IpExt:" {
			continue
		}
		if header == nil {
			header = fields
			continue
		}
		in, _ := strconv.ParseFloat(fields[slices.Index(header, "InOctets")], 64)
		if have := v("process_network_receive_bytes_total"); have > in || have < 0 {
			t.Errorf("process_network_receive_bytes_total %v, then netstat's InOctets %v", have, in)
		}
	}
	if header == nil {
		t.Fatal("no IpExt in /proc/self/net/netstat")
	}
}

// spin uses a little CPU.
func spin() {
	x := uint64(1)
	for i := range 1_000_000 {
		x = x*6364136223846793005 + uint64(i)
	}
	spinSink = x
}

var spinSink uint64
