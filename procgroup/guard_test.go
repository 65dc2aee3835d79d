package procgroup

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/guard/guardtest"
)

// guardedPool runs spec's processes with a Guard logging to logs, after
// setup has prepared each (hooks), and ends them when the test ends.
func guardedPool(t *testing.T, spec *Spec, setup func(*Process)) (*Pool, *guard.Guard, *guardtest.LogBuffer) {
	t.Helper()
	dir := t.TempDir()
	procs, err := spec.Expand("t", ExpandContext{Here: dir, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	logs := &guardtest.LogBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, newTestWriter(t)), nil))
	gd := guard.New(log)
	ctx, cancel := context.WithCancel(context.Background())
	g := NewPool(ctx, "t", testReaper, log)
	g.Setup = func(p *Process) {
		p.Guard = gd
		setup(p)
	}
	for i := range procs {
		g.Add(&procs[i])
	}
	t.Cleanup(func() {
		cancel()
		g.Wait()
	})
	return g, gd, logs
}

// panicSink is a log sink with a bug.
type panicSink struct{}

func (panicSink) Write([]byte) (int, error) { panic("sink bug") }
func (panicSink) Close() error              { return nil }

// waitFor polls cond every 10 ms until it holds or a generous deadline
// passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A log copier whose sink panics is caught: the child keeps its pid and
// stays RUNNING, its pipe is drained (it writes 4 MiB, four times the
// pipe, and then gets to its next line), the lost bytes are counted, and
// the panic is logged at ERROR with its stack and component.
func TestLogCopierPanicLeavesTheProcessAlone(t *testing.T) {
	const total = 4 << 20
	dir := t.TempDir()
	spec := helperSpec("spamdone", strconv.Itoa(total))
	spec.StdoutLogfile = filepath.Join(dir, "out.log")
	spec.StdoutLogfileMaxBytes = 1 << 20 // rotated: a pipe and a copier
	spec.StderrLogfile = filepath.Join(dir, "err.log")
	g, gd, logs := guardedPool(t, spec, func(p *Process) {
		p.out.mu.Lock()
		p.out.sinks.stdout = panicSink{}
		p.out.mu.Unlock()
	})
	p := g.Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitState(t, p, Running, 10*time.Second).Pid
	waitFor(t, "the child's line after its 4 MiB of stdout", func() bool {
		b, _ := os.ReadFile(spec.StderrLogfile)
		return string(b) == "done\n"
	})
	waitFor(t, "every byte counted as dropped", func() bool { return p.Status().LogDropped == total })
	if st := p.Status(); st.State != Running || st.Pid != pid || st.Spawns != 1 {
		t.Errorf("the process was disturbed: %+v (pid was %d)", st, pid)
	}
	if n := gd.Panics("log copier"); n != 1 {
		t.Errorf("log copier panics: want 1, have %d", n)
	}
	out := logs.String()
	for _, want := range []string{`level=ERROR msg="panic recovered"`, `component="log copier"`, "process=t:t", "stream=stdout",
		"panic=\"sink bug\"", "procgroup.panicSink.Write", "procgroup.copyOut"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if _, err := os.Stat(spec.StdoutLogfile); err == nil {
		t.Errorf("%s written by a sink that was replaced", spec.StdoutLogfile)
	}
}

// A readiness probe that panics cannot judge: the process becomes RUNNING
// as without a ready check, keeps its pid, and the panic is counted.
func TestReadinessProbePanicLeavesTheProcessAlone(t *testing.T) {
	spec := helperSpec("serve", "0s", "200")
	spec.PortStart = freePortRange(t, 1)
	spec.Ready = "http:/healthz"
	g, gd, logs := guardedPool(t, spec, func(p *Process) {
		p.probeHook = func() { panic("probe bug") }
	})
	p := g.Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Running, 10*time.Second)
	if st.Spawns != 1 || st.Pid == 0 || !alive(st.Pid) {
		t.Errorf("the process was disturbed: %+v", st)
	}
	if n := gd.Panics("readiness probe"); n != 1 {
		t.Errorf("readiness probe panics: want 1, have %d", n)
	}
	if r := gd.Records(); len(r) != 1 || !strings.Contains(r[0].State, "treated as ready") || r[0].Last != "t:t: probe bug" {
		t.Errorf("records: %+v", r)
	}
	out := logs.String()
	for _, want := range []string{`level=ERROR msg="panic recovered"`, `component="readiness probe"`, "process=t:t", "panic=\"probe bug\"", "procgroup.(*Process).startProbe"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}
