package api

import (
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
