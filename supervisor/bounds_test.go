package supervisor

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Every request the control socket reads is bounded: a body to 64 KiB
// (400), the request line and headers to 16 KiB (431); the daemon goes on
// serving.
func TestControlAPIBoundsRequests(t *testing.T) {
	file := writeConfig(t, "")
	cl, _ := startDaemon(t, file)
	ctx := context.Background()
	hc := socketHTTPClient(cl.Socket)
	defer hc.CloseIdleConnections()
	big := `{"patterns":["` + strings.Repeat("a", 1<<20) + `"]}`
	for _, tc := range []struct {
		name, method, path, body, header string
		code                             int
		msg                              string
	}{
		{"start body", "POST", "/v1/start", big, "", 400, "http: request body too large"},
		{"reload body", "POST", "/v1/reload", `{"dry_run":true,"x":"` + strings.Repeat("a", 1<<20) + `"}`, "", 400, "http: request body too large"},
		{"reopen-logs body", "POST", "/v1/reopen-logs", big, "", 400, "http: request body too large"},
		{"status query", "GET", "/v1/status?p=" + strings.Repeat("a", 64<<10), "", "", 431, ""},
		{"header", "GET", "/v1/info", "", strings.Repeat("a", 64<<10), 431, ""},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, "http://gosup"+tc.path, strings.NewReader(tc.body))
		if tc.header != "" {
			req.Header.Set("X-Big", tc.header)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(msg), tc.msg) {
			t.Errorf("%s: want %d %q, have %s %q", tc.name, tc.code, tc.msg, resp.Status, msg)
		}
	}
	if _, err := cl.Info(ctx); err != nil {
		t.Errorf("after the refusals: %v", err)
	}
}
