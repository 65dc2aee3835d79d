package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// groupVariants are the three ways a program's address group can relate to
// its name: the default (the program's own name), a `group` key that
// differs from the name (what gosup import writes for [group:x]), and two
// programs sharing one group. in(prog) is the `group` line for a program
// ("" for none) and addr(prog) the group its processes are addressed by.
// The first program listed in each test is the one acted on; the second is
// its neighbour, which shares the group in the third variant.
var groupVariants = []struct {
	name   string
	groups map[string]string // program → group key
}{
	{"no group key", nil},
	{"group differs from the program", map[string]string{"a": "g"}},
	{"two programs share a group", map[string]string{"a": "g", "b": "g"}},
}

// groupKey returns the `group = "..."` line for prog in a variant.
func groupKey(groups map[string]string, prog string) string {
	if g, ok := groups[prog]; ok {
		return `group = "` + g + `"`
	}
	return ""
}

// addrGroup is the group prog's processes are addressed by in a variant.
func addrGroup(groups map[string]string, prog string) string {
	if g, ok := groups[prog]; ok {
		return g
	}
	return prog
}

func statusNames(t *testing.T, cl *api.Client) map[string]api.ProcStatus {
	t.Helper()
	st, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.ProcStatus{}
	for _, p := range st {
		out[p.Name] = p
	}
	return out
}

// planIsNoop fails the test unless a dry-run reload has nothing to do.
func planIsNoop(t *testing.T, cl *api.Client, when string) {
	t.Helper()
	plan, err := cl.Reload(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Changes {
		if c.Action != "unchanged" {
			t.Errorf("%s, a reload still plans: %+v", when, c)
		}
	}
}

// Removing a program by reload, and moving one to another group, leaves
// exactly the configured processes in status, and the next reload has
// nothing left to do, whatever the programs' groups. A removed process's
// ctl stop mark goes with it; a process stopped with ctl stop stays
// stopped under its new group.
func TestReloadRemovesAndRegroupsInAnyGroup(t *testing.T) {
	for _, v := range groupVariants {
		t.Run(v.name, func(t *testing.T) {
			// a is removed; b stays and then moves to group "moved".
			conf := func(withA bool, bGroup string) string {
				s := program("b", "sleep", 2, bGroup)
				if withA {
					s = program("a", "sleep", 1, groupKey(v.groups, "a")) + s
				}
				return s
			}
			file := writeConfig(t, conf(true, groupKey(v.groups, "b")))
			sup, cl, _ := startSupervisor(t, file)
			ctx := context.Background()
			waitAll(t, cl, "RUNNING")
			aName := addrGroup(v.groups, "a") + ":a_0"
			aPid := statusNames(t, cl)[aName].Pid
			bStopped := addrGroup(v.groups, "b") + ":b_1"
			for _, name := range []string{aName, bStopped} {
				if res, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{name}}); err != nil || !res[0].OK {
					t.Fatalf("stop %s: %+v %v", name, res, err)
				}
			}

			rewriteConfig(t, file, conf(false, groupKey(v.groups, "b")))
			plan, err := cl.Reload(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			if c := findChange(t, plan, "a"); c.Action != "removed" {
				t.Errorf("a: %+v", c)
			}
			for _, r := range plan.Results {
				if !r.OK {
					t.Errorf("result: %+v", r)
				}
			}
			now := statusNames(t, cl)
			if p, ok := now[aName]; ok || alive(aPid) {
				t.Errorf("removed program a is still in status as %+v (pid %d alive: %v)", p, aPid, alive(aPid))
			}
			if len(now) != 2 {
				t.Errorf("status after removing a: %v", now)
			}
			if sup.admin.isStopped(aName) {
				t.Errorf("the ctl stop mark of removed %s is kept", aName)
			}
			planIsNoop(t, cl, "after removing a")

			rewriteConfig(t, file, conf(false, `group = "moved"`))
			if _, err := cl.Reload(ctx, false); err != nil {
				t.Fatal(err)
			}
			waitAll(t, cl, "RUNNING", "moved:b_0")
			now = statusNames(t, cl)
			if len(now) != 2 || now["moved:b_0"].State != "RUNNING" || now["moved:b_1"].State != "STOPPED" ||
				!strings.Contains(now["moved:b_1"].Description, "stopped with gosup ctl stop") {
				t.Errorf("status after moving b to group moved (b_1 stopped with ctl stop): %v", now)
			}
			if sup.admin.isStopped(bStopped) && bStopped != "moved:b_1" {
				t.Errorf("the ctl stop mark of %s, now moved:b_1, is kept", bStopped)
			}
			planIsNoop(t, cl, "after moving b")
		})
	}
}

// Touching a touch_reload file restarts that program's processes and no
// others, whatever the programs' groups.
func TestTouchReloadInAnyGroup(t *testing.T) {
	for _, v := range groupVariants {
		t.Run(v.name, func(t *testing.T) {
			file := writeConfig(t, program("a", "sleep", 2, groupKey(v.groups, "a")+"\ntouch_reload = [\"a.touch\"]")+
				program("b", "sleep", 2, groupKey(v.groups, "b")))
			touch := filepath.Join(filepath.Dir(file), "a.touch")
			if err := os.WriteFile(touch, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			_, cl, _ := startSupervisor(t, file)
			waitAll(t, cl, "RUNNING")
			waitServing(t, cl)
			before := pids(t, cl)
			a := []string{addrGroup(v.groups, "a") + ":a_0", addrGroup(v.groups, "a") + ":a_1"}
			b := []string{addrGroup(v.groups, "b") + ":b_0", addrGroup(v.groups, "b") + ":b_1"}

			at := time.Now().Add(time.Second)
			if err := os.Chtimes(touch, at, at); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				now := statusNames(t, cl)
				done := true
				for _, n := range a {
					done = done && now[n].State == "RUNNING" && now[n].Pid != before[n] && now[n].Pid != 0
				}
				if done {
					for _, n := range b {
						if now[n].Pid != before[n] {
							t.Errorf("touching a's file restarted %s", n)
						}
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("touching %s did not restart a: before %v, now %v", touch, before, now)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// The names under [memmon] program and group are checked exactly as they
// are applied: program keys name a program, a process or group:process;
// group keys name an address group. A key that names nothing the way it
// is applied is an error naming the file, its line and the key.
func TestMemmonKeysCheckedAsApplied(t *testing.T) {
	for _, v := range groupVariants {
		t.Run(v.name, func(t *testing.T) {
			ga, gb := addrGroup(v.groups, "a"), addrGroup(v.groups, "b")
			ok := []string{
				`program = { a = "1GB" }`,
				`program = { a_1 = "1GB" }`,
				`program = { "` + ga + `:a_1" = "1GB" }`,
				`group = { ` + ga + ` = "1GB" }`,
				`group = { ` + gb + ` = "1GB" }`,
			}
			bad := map[string]string{
				`program = { nope = "1GB" }`:       "memmon.program.nope",
				`program = { "nope:a_1" = "1GB" }`: "memmon.program.nope:a_1",
				`group = { nope = "1GB" }`:         "memmon.group.nope",
			}
			if ga != "a" {
				// The program's name is not its group: group = { a } would
				// never apply.
				bad[`group = { a = "1GB" }`] = "memmon.group.a"
				bad[`program = { "a:a_1" = "1GB" }`] = "memmon.program.a:a_1"
			}
			programs := program("a", "sleep", 2, groupKey(v.groups, "a")) + program("b", "sleep", 1, groupKey(v.groups, "b"))
			for _, limit := range ok {
				file := memmonConfig(t, programs, limit)
				if _, err := config.Load(file); err != nil {
					t.Errorf("%s: %v", limit, err)
				}
			}
			for limit, key := range bad {
				file := memmonConfig(t, programs, limit)
				_, err := config.Load(file)
				var ce *config.Error
				if !errors.As(err, &ce) {
					t.Errorf("%s: want a config error for %s, have %v", limit, key, err)
					continue
				}
				b, _ := os.ReadFile(file)
				line := 1 + strings.Count(string(b[:strings.Index(string(b), limit)]), "\n")
				if ce.File != file || ce.Line != line || ce.Key != key {
					t.Errorf("%s: want %s:%d: %s, have %v", limit, file, line, key, err)
				}
			}
		})
	}
}

// A program limit by the program's name and a group limit by the address
// group both restart the program's over-limit process, whatever the
// groups.
func TestMemmonLimitsApplyInAnyGroup(t *testing.T) {
	for _, v := range groupVariants {
		for _, limit := range []string{`program = { a = "64MB" }`, `group = { ` + addrGroup(v.groups, "a") + ` = "64MB" }`} {
			t.Run(v.name+"/"+limit, func(t *testing.T) {
				file := memmonConfig(t, program("a", "hog 128", 1, groupKey(v.groups, "a"))+program("b", "sleep", 1, groupKey(v.groups, "b")), limit)
				cl, _ := startDaemon(t, file)
				before := waitAll(t, cl, "RUNNING")
				name := addrGroup(v.groups, "a") + ":a_0"
				var pid int
				for _, p := range before {
					if p.Name == name {
						pid = p.Pid
					}
				}
				after := waitMemmonRestart(t, cl, name, pid)
				if !strings.Contains(after.MemmonReason, "over 64.0MB") {
					t.Errorf("reason: %q", after.MemmonReason)
				}
			})
		}
	}
}

// Two programs may list the same touch_reload file: touching it restarts
// both. The touch waits until the daemon serves: its processes run
// before its file watcher watches, and a touch in between is not seen.
func TestTouchReloadSharedFile(t *testing.T) {
	file := writeConfig(t, program("a", "sleep", 1, `touch_reload = ["app.touch"]`)+
		program("b", "sleep", 1, `touch_reload = ["app.touch"]`)+program("c", "sleep", 1, ""))
	touch := filepath.Join(filepath.Dir(file), "app.touch")
	if err := os.WriteFile(touch, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, cl, _ := startSupervisor(t, file)
	waitServing(t, cl)
	waitAll(t, cl, "RUNNING")
	before := pids(t, cl)
	at := time.Now().Add(time.Second)
	if err := os.Chtimes(touch, at, at); err != nil {
		t.Fatal(err)
	}
	waitNewPid(t, cl, "a:a_0", before["a:a_0"])
	waitNewPid(t, cl, "b:b_0", before["b:b_0"])
	if now := pids(t, cl); now["c:c_0"] != before["c:c_0"] {
		t.Errorf("touching a and b's file restarted c")
	}
}

// A touch_reload file touched as soon as the daemon says it runs is seen,
// however late the file watcher's goroutine gets to run (a loaded
// machine): the daemon serves only once the watch is in place. It did not
// wait for it, and TestTouchReloadInAnyGroup missed its touch under load.
func TestTouchReloadArmedWhenServing(t *testing.T) {
	file := writeConfig(t, program("a", "sleep", 1, `touch_reload = ["a.touch"]`))
	touch := filepath.Join(filepath.Dir(file), "a.touch")
	if err := os.WriteFile(touch, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, cl, _ := runDaemonWith(t, mustLoad(t, file), Options{}, func(s *Supervisor) {
		s.hooks.watch = func() { time.Sleep(500 * time.Millisecond) } // the watcher is late
	})
	waitServing(t, cl)
	before := waitAll(t, cl, "RUNNING")[0].Pid
	at := time.Now().Add(time.Second)
	if err := os.Chtimes(touch, at, at); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := cl.Status(t.Context(), "a")
		if err != nil {
			t.Fatal(err)
		}
		if st[0].State == "RUNNING" && st[0].Pid != before && st[0].Pid != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("touching %s once the daemon served did not restart a (pid %d, now %d %s)", touch, before, st[0].Pid, st[0].State)
		}
	}
}

// waitServing waits until the daemon says it runs (ctl info's state is
// running: every part of it started). Its processes run before that, and
// its file watcher watches only from then: a test that touches a
// touch_reload file or saves a watched config waits for it first, or
// its change may come before the watch and never be seen.
func waitServing(t *testing.T, cl *api.Client) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if mustInfo(t, cl).State == "running" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon never said it runs")
		}
	}
}
