package api

import (
	"fmt"
	"testing"
	"time"
)

func TestFormatUptime(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0:00:00"},
		{59*time.Second + 999*time.Millisecond, "0:00:59"},
		{time.Hour + 2*time.Minute + 3*time.Second, "1:02:03"},
		{23*time.Hour + 59*time.Minute + 59*time.Second, "23:59:59"},
		{24 * time.Hour, "1 days, 0:00:00"},
		{3*24*time.Hour + 4*time.Hour + 5*time.Minute + 6*time.Second, "3 days, 4:05:06"},
	} {
		if got := FormatUptime(tc.d); got != tc.want {
			t.Errorf("FormatUptime(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// The table's figures are formatted with strconv as fmt formatted them
// (%d:%02d:%02d, %.1f%%, %.2fG, %.1fM), negative and huge values alike.
func TestFiguresAsFmt(t *testing.T) {
	for _, secs := range []int64{-3725, -5, 0, 9, 61, 3599, 86399, 86400, 90061, 1 << 30} {
		d := time.Duration(secs) * time.Second
		want := fmt.Sprintf("%d:%02d:%02d", secs%86400/3600, secs%86400%3600/60, secs%86400%60)
		if days := secs / 86400; days > 0 {
			want = fmt.Sprintf("%d days, %s", days, want)
		}
		if got := FormatUptime(d); got != want {
			t.Errorf("FormatUptime(%s) = %q, want %q", d, got, want)
		}
	}
	for _, b := range []int64{0, 1, 52428, 52429, 1 << 20, 1<<30 - 1, 1 << 30, 5<<30 + 1<<20, 1 << 62} {
		want := fmt.Sprintf("%.1fM", float64(b)/(1<<20))
		if b >= 1<<30 {
			want = fmt.Sprintf("%.2fG", float64(b)/(1<<30))
		}
		if got := FormatMem(b); got != want {
			t.Errorf("FormatMem(%d) = %q, want %q", b, got, want)
		}
	}
	for _, cpu := range []float64{0, 0.04, 0.05, 0.15, 0.25, 99.95, 153.25, 1e6, -1} {
		want := fmt.Sprintf("%.1f%%", cpu)
		if got := FormatColumns(ProcStatus{Pid: 1, Sampled: true, CPUWindowS: 1, CPUPercent: cpu}).CPU; got != want {
			t.Errorf("CPU %v: %q, want %q", cpu, got, want)
		}
	}
}
