package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// statusDaemon answers Status only.
type statusDaemon struct {
	Daemon
	procs    []ProcStatus
	warnings []string
}

func (d statusDaemon) Status(dst []ProcStatus, _ []string) ([]ProcStatus, []string, error) {
	return append(dst, d.procs...), d.warnings, nil
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

// A status is one request on a connection of its own, closed once the
// answer is read: gosup ctl status asks once and exits, and keeps no
// idle connection (and no goroutine of a connection pool) for a next
// request that never comes. Each of the three ways to ask is followed
// until the daemon's side of its connection is closed.
func TestStatusClosesItsConnection(t *testing.T) {
	procs := []ProcStatus{{Name: "web:web_0", State: "RUNNING", Pid: 42}}
	closed := make(chan struct{}, 16)
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewHandler(statusDaemon{procs: procs}, 0), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	cl := NewClient(sock)
	for name, ask := range map[string]func() error{
		"table": func() error { _, err := cl.StatusTable(t.Context(), io.Discard); return err },
		"json":  func() error { _, err := cl.StatusJSON(t.Context(), io.Discard); return err },
		"procs": func() error { _, err := cl.Status(t.Context()); return err },
	} {
		if err := ask(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the connection is still open 30s after the answer was read", name)
		}
	}
}

// A status canceled while the daemon has yet to answer returns at once,
// with the context's error, as any request does.
func TestStatusCanceled(t *testing.T) {
	asked := make(chan struct{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	cl := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- struct{}{}
		<-release
	}))
	for _, table := range []bool{true, false} {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-asked
			cancel()
		}()
		var err error
		if table {
			_, err = cl.StatusTable(ctx, io.Discard)
		} else {
			_, err = cl.StatusJSON(ctx, io.Discard)
		}
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), cl.Socket) {
			t.Errorf("table %v: %v, want context.Canceled naming the socket", table, err)
		}
	}
}

// The status's bound holds for an answer of a daemon that says no length
// (chunked), as for one that does: past MaxStatusBytes the client stops
// reading and says so, having written no byte past the bound.
func TestStatusBounded(t *testing.T) {
	row := bytes.Repeat([]byte("x"), 1<<20)
	cl := serveOn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", StatusTableType)
		for range MaxStatusBytes>>20 + 2 {
			if _, err := w.Write(row); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	var n countWriter
	_, err := cl.StatusTable(t.Context(), &n)
	if err == nil || !strings.Contains(err.Error(), "over 64 MiB") || n > MaxStatusBytes {
		t.Errorf("%d bytes written, %v; want at most %d and an error saying over 64 MiB", n, err, MaxStatusBytes)
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
