package api

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// statusDaemon answers Status only.
type statusDaemon struct {
	Daemon
	procs    []ProcStatus
	warnings []string
}

func (d statusDaemon) Status([]string) ([]ProcStatus, []string, error) {
	return d.procs, d.warnings, nil
}

// serveOn serves h on a unix socket and returns a client of it.
func serveOn(t *testing.T, h http.Handler) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	cl := NewClient(sock)
	t.Cleanup(cl.Close)
	return cl
}

// gosup ctl status prints the same table and the same JSON whether the
// daemon formats them (this one) or answers JSON only (one from before
// StatusTableType and indent=1: its answer encoding/json's Encoder, as it
// wrote it): the table as text/tabwriter laid it out, the JSON as
// encoding/json indents it, the warnings alike.
func TestStatusTableAndJSONFromEitherDaemon(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 2))
	procs := make([]ProcStatus, 7)
	for i := range procs {
		fill(t, rng, reflect.ValueOf(&procs[i]).Elem(), false)
	}
	warnings := []string{"nginx: not running", "reload at 2026-11-30 12:00:00 failed: bad key"}
	old := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, x := range warnings {
			w.Header().Add(WarningHeader, x)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(procs)
	})
	rows := [][len(statusHeader)]string{statusHeader}
	for i := range procs {
		rows = append(rows, statusRow(&procs[i]))
	}
	wantTable := appendTabwriter(nil, rows)
	var wantJSON bytes.Buffer
	enc := json.NewEncoder(&wantJSON)
	enc.SetIndent("", "  ")
	if err := enc.Encode(procs); err != nil {
		t.Fatal(err)
	}
	for name, cl := range map[string]*Client{
		"this daemon":  serveOn(t, NewHandler(statusDaemon{procs: procs, warnings: warnings}, 0)),
		"older daemon": serveOn(t, old),
	} {
		var table bytes.Buffer
		got, err := cl.StatusTable(context.Background(), &table)
		if err != nil {
			t.Fatalf("%s: table: %v", name, err)
		}
		if !bytes.Equal(table.Bytes(), wantTable) || !slices.Equal(got, warnings) {
			t.Errorf("%s: table\n%s\nwarnings %q; want\n%s\nwarnings %q", name, table.Bytes(), got, wantTable, warnings)
		}
		var js bytes.Buffer
		got, err = cl.StatusJSON(context.Background(), &js)
		if err != nil {
			t.Fatalf("%s: JSON: %v", name, err)
		}
		if !bytes.Equal(js.Bytes(), wantJSON.Bytes()) || !slices.Equal(got, warnings) {
			t.Errorf("%s: JSON\n%s\nwarnings %q; want\n%s\nwarnings %q", name, js.Bytes(), got, wantJSON.Bytes(), warnings)
		}
	}
}
