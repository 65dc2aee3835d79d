package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// AppendStatusJSON writes what encoding/json's Encoder writes, for every
// field of ProcStatus and LogFailure, set or zero: the values are filled
// by reflection, so that a field added to either without its line in
// AppendStatusJSON fails here.
func TestAppendStatusJSONIsEncodingJSONs(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 1000))
	for round := range 2000 {
		procs := make([]ProcStatus, rng.IntN(4))
		for i := range procs {
			fill(t, rng, reflect.ValueOf(&procs[i]).Elem(), round%5 == 0)
		}
		for _, indent := range []bool{false, true} {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			if indent {
				enc.SetIndent("", "  ")
			}
			if err := enc.Encode(procs); err != nil {
				t.Fatal(err)
			}
			if got := AppendStatusJSON(nil, procs, indent); !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("round %d, indent %v:\n got %s\nwant %s", round, indent, got, want.Bytes())
			}
		}
	}
	// An empty status is an empty array, not null.
	for _, indent := range []bool{false, true} {
		if got := string(AppendStatusJSON(nil, nil, indent)); got != "[]\n" {
			t.Errorf("no processes, indent %v: %q, want %q", indent, got, "[]\n")
		}
	}
}

// strs are strings that encoding/json escapes in each of its ways.
var strs = []string{"", "web:web_00", `a "quoted" \ path`, "<b>&amp;</b>", "tab\there\nnewline\r\x00\x01\x1f\x7f",
	"caf\u00e9 \u2028 \u2029 \U0001F600", "bad \xff\xfe utf-8 \xe2\x82", "pid 42, uptime 1h2m"}

// fill sets every field of v: each to zero one time in four (every time
// if zero), else to a value of its kind.
func fill(t *testing.T, rng *rand.Rand, v reflect.Value, zero bool) {
	t.Helper()
	if zero || rng.IntN(4) == 0 {
		v.SetZero()
		if v.Kind() != reflect.Struct || v.Type() == reflect.TypeFor[time.Time]() {
			return
		}
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(strs[rng.IntN(len(strs))])
	case reflect.Int, reflect.Int64:
		v.SetInt([]int64{0, 1, -1, 42, 1 << 40, -1 << 62}[rng.IntN(6)])
	case reflect.Float64:
		v.SetFloat([]float64{0, 0.5, 1e-7, 123456.789, 1e21, 3.3333333333333335, -2.5e-9, 86400.000123}[rng.IntN(8)])
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, rng, v.Elem(), false)
	case reflect.Slice:
		n := 1 + rng.IntN(3)
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fill(t, rng, v.Index(i), false)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			zones := []*time.Location{time.UTC, time.FixedZone("", 3600+1800), time.FixedZone("X", -7*3600)}
			tm := time.Date(2026, 11, 30, 15, 4, 5, []int{0, 123456789, 500000000, 1000}[rng.IntN(4)], zones[rng.IntN(len(zones))])
			v.Set(reflect.ValueOf(tm))
			return
		}
		for i := range v.NumField() {
			fill(t, rng, v.Field(i), zero)
		}
	default:
		t.Fatalf("fill: no value for a %s (%s): teach fill and AppendStatusJSON", v.Kind(), v.Type())
	}
}

// BenchmarkStatusJSON1000 encodes the status of 1,000 processes as the
// daemon answers it: AppendStatusJSON against encoding/json.
func BenchmarkStatusJSON1000(b *testing.B) {
	procs := benchProcs()
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = AppendStatusJSON(buf[:0], procs, false)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encoding-json", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			_ = json.NewEncoder(&buf).Encode(procs)
		}
		b.SetBytes(int64(buf.Len()))
	})
}

// benchProcs is the status of 1,000 running processes.
func benchProcs() []ProcStatus {
	procs := make([]ProcStatus, 1000)
	for i := range procs {
		name := fmt.Sprintf("sl_%d", i)
		procs[i] = ProcStatus{Name: "sl:" + name, Group: "sl", Program: "sl", Process: name, State: "RUNNING",
			Pid: 100000 + i, Port: 8000 + i, UptimeS: 1234.56789, Description: fmt.Sprintf("pid %d, uptime 0:20:34", 100000+i),
			Stdout: "/var/log/gosup/" + name + ".log", Sampled: true, CPUPercent: 0.5, CPUWindowS: 2.000123, RSSBytes: 1 << 20}
	}
	return procs
}
