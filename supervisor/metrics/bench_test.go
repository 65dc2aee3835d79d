package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// snapshot500 is a daemon of 500 running processes, every figure set.
func snapshot500() Snapshot {
	s := Snapshot{Reloads: map[string]int64{}, Panics: map[string]int64{}, Version: "v1", StartTime: time.Now()}
	for i := range 500 {
		s.Processes = append(s.Processes, Process{
			Group: "web", Program: "web", Name: fmt.Sprintf("web:web_%03d", i), Port: 9000 + i, State: "RUNNING",
			StartTime: time.Now(), Restarts: i, Exits: [5]int64{1, 2, 3, 4, 5},
			Sampled: true, CPU: time.Duration(i) * time.Millisecond, CPUOK: true, RSS: 1 << 20, TreeRSS: 2 << 20, FDs: 7, FDsOK: true,
		})
	}
	return s
}

// BenchmarkHandler500 is one scrape of the handler alone (no daemon, no
// socket): 500 processes' metrics, encoded as text; identity, or gzipped
// as Prometheus asks.
func BenchmarkHandler500(b *testing.B) {
	snap := snapshot500()
	h := NewHandler(func() Snapshot { return snap }, Options{})
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Accept-Encoding", enc)
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
				_, _ = io.Copy(io.Discard, w.Body)
			}
		})
	}
}
