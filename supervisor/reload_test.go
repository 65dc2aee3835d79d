package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// pids maps each process to its pid.
func pids(t *testing.T, cl *api.Client) map[string]int {
	t.Helper()
	st, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range st {
		out[p.Name] = p.Pid
	}
	return out
}

func findChange(t *testing.T, plan *api.ReloadPlan, program string) api.Change {
	t.Helper()
	for _, c := range plan.Changes {
		if c.Program == program {
			return c
		}
	}
	t.Fatalf("no change for %s in %+v", program, plan.Changes)
	return api.Change{}
}

const reloadBase = `
[program.keep]
command = "@HELPER@ sleep"
numprocs = 2
process_name = "keep_%(process_num)d"
startsecs = 0
` + helperEnv + `

[program.tune]
command = "@HELPER@ sleep"
numprocs = 2
process_name = "tune_%(process_num)d"
startsecs = 0
startretries = 3
` + helperEnv + `

[program.scale]
command = "@HELPER@ sleep"
numprocs = 3
process_name = "scale_%(process_num)d"
startsecs = 0
` + helperEnv + `

[program.change]
command = "@HELPER@ sleep"
numprocs = 3
process_name = "change_%(process_num)d"
startsecs = 0
` + helperEnv + `

[program.gone]
command = "@HELPER@ sleep"
startsecs = 0
` + helperEnv + `
`

// Each class of difference does exactly its part: unchanged and in-place
// programs keep their pids, a scaled program keeps the pids of the
// processes that stay, a changed command restarts only that program (and
// not the process stopped with ctl stop), a removed program is stopped and
// an added one started. A dry run changes nothing.
func TestReloadAppliesOnlyTheDifference(t *testing.T) {
	file := writeConfig(t, reloadBase)
	sup, cl, _ := startSupervisor(t, file)
	ctx := context.Background()
	waitAll(t, cl, "RUNNING")
	if _, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"change:change_2"}}); err != nil {
		t.Fatal(err)
	}
	before := pids(t, cl)

	next := strings.NewReplacer(
		"startretries = 3", "startretries = 7",
		"numprocs = 3\nprocess_name = \"scale", "numprocs = 5\nprocess_name = \"scale",
		"@HELPER@ sleep\"\nnumprocs = 3\nprocess_name = \"change", "@HELPER@ sleep 2\"\nnumprocs = 3\nprocess_name = \"change",
	).Replace(reloadBase)
	next = next[:strings.Index(next, "[program.gone]")] + `
[program.added]
command = "@HELPER@ sleep"
numprocs = 2
process_name = "added_%(process_num)d"
startsecs = 0
` + helperEnv + "\n"
	rewriteConfig(t, file, next)

	plan, err := cl.Reload(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.DryRun || len(plan.Results) != 0 {
		t.Errorf("dry run reported results: %+v", plan)
	}
	if c := findChange(t, plan, "keep"); c.Action != "unchanged" {
		t.Errorf("keep: %+v", c)
	}
	if c := findChange(t, plan, "tune"); c.Action != "changed" || !slices.Equal(c.InPlace, []string{"startretries"}) || len(c.Restart) > 0 {
		t.Errorf("tune: %+v", c)
	}
	if c := findChange(t, plan, "scale"); !slices.Equal(c.Start, []string{"scale_3", "scale_4"}) || len(c.Restart)+len(c.Stop) > 0 {
		t.Errorf("scale: %+v", c)
	}
	if c := findChange(t, plan, "change"); len(c.Restart) != 3 || !slices.Equal(c.Why, []string{"command"}) {
		t.Errorf("change: %+v", c)
	}
	if c := findChange(t, plan, "gone"); c.Action != "removed" || !slices.Equal(c.Stop, []string{"gone"}) {
		t.Errorf("gone: %+v", c)
	}
	if c := findChange(t, plan, "added"); c.Action != "added" || len(c.Start) != 2 {
		t.Errorf("added: %+v", c)
	}
	if now := pids(t, cl); !mapsEqual(now, before) {
		t.Fatalf("a dry run changed processes:\nbefore %v\nafter  %v", before, now)
	}

	plan, err = cl.Reload(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range plan.Results {
		if !r.OK {
			t.Errorf("result: %+v", r)
		}
	}
	after := pids(t, cl)
	for _, name := range []string{"keep:keep_0", "keep:keep_1", "tune:tune_0", "tune:tune_1", "scale:scale_0", "scale:scale_1", "scale:scale_2"} {
		if after[name] != before[name] || after[name] == 0 {
			t.Errorf("%s: pid %d → %d; it should not have been touched", name, before[name], after[name])
		}
	}
	if got := sup.process("tune:tune_0").Spec().Program.StartRetries; got != 7 {
		t.Errorf("startretries not applied in place: %d", got)
	}
	for _, name := range []string{"change:change_0", "change:change_1"} {
		if after[name] == before[name] || after[name] == 0 {
			t.Errorf("%s: pid %d → %d; want a new process for the new command", name, before[name], after[name])
		}
	}
	if after["change:change_2"] != 0 {
		t.Errorf("change_2 was stopped with ctl stop and must stay stopped, runs as %d", after["change:change_2"])
	}
	if argv := sup.process("change:change_2").Spec().Argv; argv[len(argv)-1] != "2" {
		t.Errorf("the stopped process did not get the new command: %q", argv)
	}
	if _, ok := after["gone:gone"]; ok || alive(before["gone:gone"]) {
		t.Errorf("removed program still there: status %v, pid %d alive %v", after["gone:gone"], before["gone:gone"], alive(before["gone:gone"]))
	}
	waitAll(t, cl, "RUNNING", "scale", "added")

	// Scale down: the highest-numbered go, the others stay.
	rewriteConfig(t, file, strings.Replace(next, "numprocs = 5", "numprocs = 2", 1))
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	down := pids(t, cl)
	for _, name := range []string{"scale:scale_0", "scale:scale_1"} {
		if down[name] != after[name] {
			t.Errorf("%s: pid %d → %d on scale-down", name, after[name], down[name])
		}
	}
	for _, name := range []string{"scale:scale_2", "scale:scale_3", "scale:scale_4"} {
		if _, ok := down[name]; ok || alive(after[name]) {
			t.Errorf("%s still there after scale-down", name)
		}
	}
	// Nothing left to do: a second reload is a no-op.
	plan, err = cl.Reload(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Changes {
		if c.Action != "unchanged" {
			t.Errorf("second reload: %+v", c)
		}
	}
	if again := pids(t, cl); !mapsEqual(again, down) {
		t.Errorf("a reload without changes touched processes")
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// An invalid edit changes nothing: every pid stays, the error names file,
// line and key, ctl reload gets it as a 422, and status shows it until a
// valid reload.
func TestReloadInvalidChangesNothing(t *testing.T) {
	file := writeConfig(t, reloadBase)
	_, cl, _ := startSupervisor(t, file)
	ctx := context.Background()
	waitAll(t, cl, "RUNNING")
	before := pids(t, cl)
	rewriteConfig(t, file, strings.Replace(reloadBase, "numprocs = 3\nprocess_name = \"scale", "numprocs = 0\nprocess_name = \"scale", 1)+"\n[program.typo]\ncomand = \"x\"\n")
	_, err := cl.Reload(ctx, false)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != 422 {
		t.Fatalf("want a 422 refusal, have %v", err)
	}
	for _, want := range []string{"nothing changed", file + ":", "program.scale.numprocs: must be at least 1", "program.typo.comand: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// The refusal is synchronous: nothing was started or stopped.
	if now := pids(t, cl); !mapsEqual(now, before) {
		t.Errorf("an invalid reload changed processes:\nbefore %v\nafter  %v", before, now)
	}
	_, warnings, err := cl.StatusWarning(ctx)
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "program.scale.numprocs") {
		t.Errorf("status warning: %q %v", warnings, err)
	}
	rewriteConfig(t, file, reloadBase)
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, warnings, err := cl.StatusWarning(ctx); err != nil {
		t.Fatal(err)
	} else if len(warnings) != 0 {
		t.Errorf("warning outlived a good reload: %q", warnings)
	}
}

// With watch = true an editor-style save (write a temp file, rename it over
// the config) and a new file in conf.d are picked up;
// touching a touch_reload file restarts that program only.
func TestWatchReloadsAndTouchRestarts(t *testing.T) {
	dir, err := os.MkdirTemp("", "gs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	touch := filepath.Join(dir, "app.touch")
	if err := os.WriteFile(touch, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	prog := func(name, extra string) string {
		return "\n[program." + name + "]\ncommand = \"" + os.Args[0] + " sleep\"\nnumprocs = 2\nprocess_name = \"" + name + "_%(process_num)d\"\nstartsecs = 0\n" + helperEnv + "\n" + extra + "\n"
	}
	main := func(programs string) string {
		return "include = [\"conf.d/*.toml\"]\n\n[supervisor]\nsocket = \"s/gosup.sock\"\nlogdir = \"log\"\nwatch = true\n" + programs
	}
	file := filepath.Join(dir, "gosup.toml")
	if err := os.WriteFile(file, []byte(main(prog("app", `touch_reload = ["app.touch"]`)+prog("other", ""))), 0o644); err != nil {
		t.Fatal(err)
	}
	_, cl, _ := startSupervisor(t, file)
	waitServing(t, cl) // the file watcher watches from here on
	waitAll(t, cl, "RUNNING")
	before := pids(t, cl)

	// Editor-style save: a temp file in the same directory renamed over the config.
	tmp := filepath.Join(dir, ".gosup.toml.swp")
	if err := os.WriteFile(tmp, []byte(main(prog("app", `touch_reload = ["app.touch"]`)+prog("other", "")+prog("saved", ""))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cl, 30*time.Second, "saved:saved_1")
	// A new file in conf.d.
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "vassal.toml"), []byte(prog("vassal", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cl, 30*time.Second, "vassal:vassal_1")
	// A second save after the rename: the watch on the directory still works.
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "vassal.toml"), []byte(prog("vassal", "")+prog("vassal2", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cl, 30*time.Second, "vassal2:vassal2_1")
	mid := pids(t, cl)
	for _, name := range []string{"app:app_0", "app:app_1", "other:other_0", "other:other_1"} {
		if mid[name] != before[name] {
			t.Errorf("%s restarted by reloads that did not change it", name)
		}
	}

	now := time.Now().Add(time.Second)
	if err := os.Chtimes(touch, now, now); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := pids(t, cl)
		if p["app:app_0"] != mid["app:app_0"] && p["app:app_1"] != mid["app:app_1"] && p["app:app_0"] != 0 && p["app:app_1"] != 0 {
			for _, name := range []string{"other:other_0", "other:other_1", "saved:saved_0", "vassal:vassal_0"} {
				if p[name] != mid[name] {
					t.Errorf("touch_reload of app restarted %s", name)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("touching %s did not restart app: %v", touch, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls until a process named name exists and is RUNNING.
func waitFor(t *testing.T, cl *api.Client, within time.Duration, name string) {
	t.Helper()
	start := time.Now()
	for {
		st, err := cl.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st {
			if p.Name == name && p.State == "RUNNING" {
				t.Logf("%s RUNNING after %s", name, time.Since(start).Round(time.Millisecond))
				return
			}
		}
		if time.Since(start) > within {
			t.Fatalf("%s not RUNNING within %s", name, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// [nginx] can be added, changed and removed by reload: the file is rendered
// (here without nginx: test and reload commands are empty), follows the
// processes, and is left alone once the table is gone.
func TestReloadNginxTable(t *testing.T) {
	dir, err := os.MkdirTemp("", "gs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	out := filepath.Join(dir, "upstream.conf")
	base := freePortRange(t, 3)
	web := func(n int, upstream string) string {
		return fmt.Sprintf(`
[program.web]
command = "@HELPER@ http"
numprocs = %d
process_name = "web_%%(process_num)d"
port_start = %d
startsecs = 0
%s
%s
`, n, base, upstream, helperEnv)
	}
	nginx := fmt.Sprintf(`
[nginx]
output = %q
test_command = ""
reload_command = ""

[nginx.upstream.web]
protocol = "http"
`, out)
	file := writeConfig(t, web(2, ""))
	_, cl, _ := startSupervisor(t, file)
	ctx := context.Background()
	waitAll(t, cl, "RUNNING")
	before := pids(t, cl)

	rewriteConfig(t, file, web(2, `upstream = "web"`)+nginx)
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.HasPrefix(n, "[nginx] added") }) {
		t.Errorf("notes: %q", plan.Notes)
	}
	waitServers(t, out, 2)
	if now := pids(t, cl); !mapsEqual(now, before) {
		t.Errorf("joining an upstream restarted processes")
	}
	rewriteConfig(t, file, web(3, `upstream = "web"`)+nginx)
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	waitServers(t, out, 3)
	rewriteConfig(t, file, web(3, ""))
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Nginx(ctx); err == nil {
		t.Error("ctl nginx still answers after [nginx] was removed")
	}
	waitServers(t, out, 3) // left as it was
}

func waitServers(t *testing.T, file string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		if strings.Count(string(b), "    server 127.0.0.1:") == n && !strings.Contains(string(b), " down;") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %d servers up, have:\n%s", file, n, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ctl restart --rolling starts a stopped process, as supervisorctl restart
// does; a reload that changes its command does not.
func TestRollingRestartStartsStopped(t *testing.T) {
	file := writeConfig(t, reloadBase)
	_, cl, _ := startSupervisor(t, file)
	ctx := context.Background()
	waitAll(t, cl, "RUNNING")
	if _, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"keep:keep_1"}}); err != nil {
		t.Fatal(err)
	}
	before := pids(t, cl)
	res, err := cl.Action(ctx, "restart", api.ActionRequest{Patterns: []string{"keep"}, Rolling: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.OK {
			t.Errorf("%+v", r)
		}
	}
	after := pids(t, cl)
	if after["keep:keep_0"] == before["keep:keep_0"] || after["keep:keep_1"] == 0 {
		t.Errorf("rolling restart: before %v after %v", before, after)
	}
}

// ctl reload returns once nginx has the update the reload caused: what
// nginx loaded last (the slow reload command copies the file) lists what
// the reload left, and the result says so; a failing nginx is reported in
// the result.
func TestReloadWaitsForNginx(t *testing.T) {
	dir, err := os.MkdirTemp("", "gs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	out, loaded := filepath.Join(dir, "upstream.conf"), filepath.Join(dir, "loaded.conf")
	base := freePortRange(t, 3)
	body := func(n int, reload string) string {
		return fmt.Sprintf(`
[program.web]
command = "@HELPER@ http"
numprocs = %d
process_name = "web_%%(process_num)d"
port_start = %d
startsecs = 0
upstream = "web"
drain = "0s"
%s

[nginx]
output = %q
test_command = ""
reload_command = %q

[nginx.upstream.web]
protocol = "http"
`, n, base, helperEnv, out, reload)
	}
	slow := fmt.Sprintf("sleep 0.3; cp %s %s", out, loaded)
	file := writeConfig(t, body(3, slow))
	_, cl, _ := startSupervisor(t, file)
	ctx := context.Background()
	waitAll(t, cl, "RUNNING")
	waitServers(t, loaded, 3)

	rewriteConfig(t, file, body(2, slow))
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(loaded); strings.Count(string(b), "    server 127.0.0.1:") != 2 || strings.Contains(string(b), " down;") {
		t.Errorf("ctl reload returned before nginx loaded its result; nginx has:\n%s", b)
	}
	if plan.Nginx != "ok" {
		t.Errorf("reload result: nginx %q, want ok", plan.Nginx)
	}

	rewriteConfig(t, file, body(3, "exit 3"))
	plan, err = cl.Reload(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.Nginx, "reload failed") {
		t.Errorf("reload result: nginx %q, want the reload's failure", plan.Nginx)
	}
	waitAll(t, cl, "RUNNING") // web_2 is back: processes do not wait for nginx
}
