package procgroup

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPolicy(t *testing.T) {
	p := Policy{StartWait: time.Second, StartRetries: 3, AutoRestart: RestartUnexpected, ExitCodes: []int{0, 2}, Floor: time.Second,
		BackoffMax: time.Minute, BackoffReset: time.Minute}
	crashLoop := func(n int, d time.Duration) Decision {
		return Decision{Next: Exited, Respawn: true, Delay: d, Crashes: n, Reason: fmt.Sprintf(ReasonCrashLoop, n, d)}
	}
	off := p
	off.BackoffMax = 0
	always := p
	always.AutoRestart = RestartAlways
	never := p
	never.AutoRestart = RestartNever
	short := p
	short.BackoffMax = 5 * time.Second
	near := p
	near.BackoffMax = 4200 * time.Millisecond
	for _, tc := range []struct {
		name string
		got  Decision
		want Decision
	}{
		{"first failed start waits 1s", p.OnStartFailure(0, 200*time.Millisecond, false),
			Decision{Next: Backoff, Respawn: true, Delay: time.Second, Backoff: 1, Reason: ReasonRetry}},
		{"third failed start waits 3s", p.OnStartFailure(2, 0, false),
			Decision{Next: Backoff, Respawn: true, Delay: 3 * time.Second, Backoff: 3, Reason: ReasonRetry}},
		{"fourth failure is fatal", p.OnStartFailure(3, 0, false),
			Decision{Next: Fatal, Backoff: 4, Reason: ReasonGiveUp}},
		{"spawn error retries", p.OnStartFailure(0, 0, true),
			Decision{Next: Backoff, Respawn: true, Delay: time.Second, Backoff: 1, Reason: ReasonSpawnRetry}},
		{"expected exit code", p.OnExit(2, false, time.Hour, 0, 0),
			Decision{Next: Exited, Reason: ReasonExpected}},
		{"expected exit ends a streak", p.OnExit(0, false, time.Second, 5, 0),
			Decision{Next: Exited, Reason: ReasonExpected}},
		{"unexpected code restarts at once", p.OnExit(1, false, time.Hour, 0, -1),
			Decision{Next: Exited, Respawn: true, Crashes: 1, Reason: ReasonUnexpected}},
		// The first respawn of a streak is immediate, whatever the jitter.
		{"first respawn takes no jitter", p.OnExit(1, false, time.Hour, 0, 1),
			Decision{Next: Exited, Respawn: true, Crashes: 1, Reason: ReasonUnexpected}},
		{"killed by signal is unexpected", p.OnExit(0, true, time.Hour, 0, -1),
			Decision{Next: Exited, Respawn: true, Crashes: 1, Reason: ReasonUnexpected}},
		{"young crash waits for the floor", p.OnExit(1, false, 300*time.Millisecond, 0, 0),
			Decision{Next: Exited, Respawn: true, Delay: 700 * time.Millisecond, Crashes: 1, Reason: ReasonUnexpected}},

		// The restart backoff: 1 s, 2 s, 4 s ... for exits in a row.
		{"second exit in a row waits 1s", p.OnExit(3, false, 5*time.Second, 1, 0), crashLoop(2, time.Second)},
		{"third waits 2s", p.OnExit(3, false, 5*time.Second, 2, 0), crashLoop(3, 2*time.Second)},
		{"fourth waits 4s", p.OnExit(3, false, 5*time.Second, 3, 0), crashLoop(4, 4*time.Second)},
		{"eighth waits 64s, capped at backoff_max", p.OnExit(3, false, 5*time.Second, 7, -1), crashLoop(8, time.Minute)},
		{"the cap holds for ever", p.OnExit(3, false, 5*time.Second, 1000, -1), crashLoop(1001, time.Minute)},
		{"a smaller cap", short.OnExit(3, false, 5*time.Second, 4, -1), crashLoop(5, 5*time.Second)},
		{"jitter +10 %", p.OnExit(3, false, 5*time.Second, 3, 1), crashLoop(4, 4400*time.Millisecond)},
		{"jitter -10 %", p.OnExit(3, false, 5*time.Second, 3, -1), crashLoop(4, 3600*time.Millisecond)},
		{"jitter -5 %", p.OnExit(3, false, 5*time.Second, 3, -0.5), crashLoop(4, 3800*time.Millisecond)},
		{"jitter out of range is clamped", p.OnExit(3, false, 5*time.Second, 3, 7), crashLoop(4, 4400*time.Millisecond)},
		// At the cap the jitter only shortens: 54 s to 60 s, never 66 s.
		{"jitter -1 on the cap", p.OnExit(3, false, 5*time.Second, 20, -1), crashLoop(21, time.Minute)},
		{"jitter 0 on the cap", p.OnExit(3, false, 5*time.Second, 20, 0), crashLoop(21, 57*time.Second)},
		{"jitter +1 on the cap", p.OnExit(3, false, 5*time.Second, 20, 1), crashLoop(21, 54*time.Second)},
		{"jitter never lifts a wait over the cap", near.OnExit(3, false, 5*time.Second, 3, 1), crashLoop(4, 4200*time.Millisecond)},
		{"signal in a row", p.OnExit(0, true, 5*time.Second, 1, 0), crashLoop(2, time.Second)},
		{"young crash in a row: the backoff beats the floor", p.OnExit(3, false, 100*time.Millisecond, 1, 0), crashLoop(2, time.Second)},
		{"young crash, jitter below the floor: the floor holds", p.OnExit(3, false, 0, 1, -1), crashLoop(2, time.Second)},
		{"a run of backoff_reset ends the streak", p.OnExit(3, false, time.Minute, 9, -1),
			Decision{Next: Exited, Respawn: true, Crashes: 1, Reason: ReasonUnexpected}},
		{"autorestart = true backs off on unexpected exits", always.OnExit(3, false, 5*time.Second, 2, 0), crashLoop(3, 2*time.Second)},
		{"autorestart = true: an expected exit is no crash", always.OnExit(0, false, 5*time.Second, 2, 0),
			Decision{Next: Exited, Respawn: true, Reason: ReasonAlways}},
		{"autorestart = false", never.OnExit(1, false, time.Hour, 2, 0),
			Decision{Next: Exited, Reason: ReasonNever}},
		{"backoff_max = 0: supervisord's immediate respawn", off.OnExit(3, false, 5*time.Second, 9, 0),
			Decision{Next: Exited, Respawn: true, Crashes: 10, Reason: ReasonUnexpected}},
		{"backoff_max = 0 keeps the floor", off.OnExit(3, false, 200*time.Millisecond, 9, 0),
			Decision{Next: Exited, Respawn: true, Delay: 800 * time.Millisecond, Crashes: 10, Reason: ReasonUnexpected}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("want %+v, have %+v", tc.want, tc.got)
			}
		})
	}
	if r := fmt.Sprintf(ReasonCrashLoop, 3, 2*time.Second); r != "exited 3 times in a row, restarting in 2s" {
		t.Errorf("reason: %q", r)
	}
}

// A streak fed back through Crashes, with a real random jitter, gives the
// 1 s, 2 s, 4 s ... schedule within ±10 %, and 500 processes crashing
// together do not respawn together.
func TestPolicyBackoffSpread(t *testing.T) {
	p := PolicyOf(helperSpec("exit", "1"))
	rng := rand.New(rand.NewPCG(1, 2))
	crashes := 0
	for i, want := range []time.Duration{0, 1, 2, 4, 8, 16, 32, 60, 60} {
		d := p.OnExit(1, false, 5*time.Second, crashes, rng.Float64()*2-1)
		crashes = d.Crashes
		want *= time.Second
		least, most := want*9/10, min(want*11/10, p.BackoffMax)
		if d.Delay < least || d.Delay > most {
			t.Errorf("exit %d: want %s to %s, have %s", i+1, least, most, d.Delay)
		}
	}
	// 500 processes crashing together, at the 2nd exit of a streak, at the
	// 6th, and at the cap: spread, and never above the cap.
	for _, tc := range []struct {
		crashes int
		spacing time.Duration
		least   int
	}{{1, time.Millisecond, 100}, {5, 10 * time.Millisecond, 100}, {20, 10 * time.Millisecond, 100}} {
		seen := map[time.Duration]bool{}
		for range 500 {
			d := p.OnExit(1, false, 5*time.Second, tc.crashes, rng.Float64()*2-1).Delay
			if d > p.BackoffMax {
				t.Errorf("exit %d waits %s, above backoff_max %s", tc.crashes+1, d, p.BackoffMax)
			}
			seen[d.Round(tc.spacing)] = true
		}
		if len(seen) < tc.least {
			t.Errorf("500 processes at exit %d got only %d distinct waits (%s apart)", tc.crashes+1, len(seen), tc.spacing)
		}
	}
}

func TestExpandFanOut(t *testing.T) {
	s := DefaultSpec()
	s.Command = "uwsgi -s 127.0.0.1:90%(process_num)02d --processes 1 --need-app"
	s.NumProcs = 20
	s.ProcessName = "%(program_name)s_%(process_num)02d"
	s.PortStart = 9000
	s.Directory = "app"
	s.Environment = map[string]string{"SENTRY_CONF": "%(here)s/etc", "B": "%(ENV_HOME)s", "A": "%(host_node_name)s"}
	xc := ExpandContext{Here: "/srv", Host: "web-3", Env: map[string]string{"HOME": "/root"}, LogDir: "/var/log/gosup"}
	procs, err := s.Expand("web", xc)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 20 {
		t.Fatalf("want 20 processes, have %d", len(procs))
	}
	p := procs[13]
	if p.Name != "web_13" || p.Port != 9013 || p.Num != 13 || p.FullName() != "web:web_13" {
		t.Errorf("process 13: %+v", p)
	}
	if want := []string{"uwsgi", "-s", "127.0.0.1:9013", "--processes", "1", "--need-app"}; !reflect.DeepEqual(p.Argv, want) {
		t.Errorf("argv: want %q, have %q", want, p.Argv)
	}
	if want := []string{"A=web-3", "B=/root", "SENTRY_CONF=/srv/etc"}; !reflect.DeepEqual(p.Env, want) {
		t.Errorf("env: want %q, have %q", want, p.Env)
	}
	if p.Dir != "/srv/app" {
		t.Errorf("directory: %q", p.Dir)
	}
	if p.Stdout.Path != "/var/log/gosup/web_13.stdout.log" || p.Stdout.MaxBytes != 50<<20 || p.Stdout.Backups != 10 {
		t.Errorf("stdout log: %+v", p.Stdout)
	}

	s.NumProcsStart = 1
	s.Command = "app --port %(port)d --slot %(process_num)d/%(numprocs)d"
	procs, err = s.Expand("web", xc)
	if err != nil {
		t.Fatal(err)
	}
	if p := procs[0]; p.Name != "web_01" || p.Port != 9000 || strings.Join(p.Argv, " ") != "app --port 9000 --slot 1/20" {
		t.Errorf("numprocs_start = 1: %+v", p)
	}
}

func TestExpandErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		key  string
		want string
	}{
		{"name does not vary", func(s *Spec) { s.NumProcs = 2 }, "process_name", "must contain %(process_num)d"},
		{"port without port_start", func(s *Spec) { s.Command = "app %(port)d" }, "command", "no port_start"},
		{"unknown expansion", func(s *Spec) { s.Command = "app %(nope)s" }, "command", "unknown expansion %(nope)s"},
		{"bad name chars", func(s *Spec) { s.ProcessName = "a;b" }, "process_name", "may only contain"},
		{"unterminated quote", func(s *Spec) { s.Command = `app "x` }, "command", "unterminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSpec()
			s.Command = "app"
			tc.edit(&s)
			_, err := s.Expand("web", ExpandContext{})
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want a FieldError, have %v", err)
			}
			if fe.Key != tc.key || !strings.Contains(fe.Err.Error(), tc.want) {
				t.Errorf("want key %s and %q, have %v", tc.key, tc.want, err)
			}
		})
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`uwsgi -s 127.0.0.1:9000`:           {"uwsgi", "-s", "127.0.0.1:9000"},
		`sh -c 'echo "$HOME"; exit 1'`:      {"sh", "-c", `echo "$HOME"; exit 1`},
		`app "a b" c\ d "x\"y" "\q"`:        {"app", "a b", "c d", `x"y`, `\q`},
		"  app\t--flag=''  ":                {"app", "--flag="},
		`sentry run worker -c 4 -l WARNING`: {"sentry", "run", "worker", "-c", "4", "-l", "WARNING"},
	} {
		have, err := SplitCommand(in)
		if err != nil || !reflect.DeepEqual(have, want) {
			t.Errorf("%s: want %q, have %q (%v)", in, want, have, err)
		}
	}
	for _, bad := range []string{`app 'x`, `app \`, ``} {
		if _, err := SplitCommand(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestParseSizeAndSignal(t *testing.T) {
	for in, want := range map[string]Size{"50MB": 50 << 20, "400 kb": 400 << 10, "1GB": 1 << 30, "1024": 1024, "0": 0, "10B": 10} {
		if have, err := ParseSize(in); err != nil || have != want {
			t.Errorf("ParseSize(%q): want %d, have %d (%v)", in, want, have, err)
		}
	}
	for _, bad := range []string{"50XB", "-1MB", "MB", "1.5GB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q): want an error", bad)
		}
	}
	for in, want := range map[string]string{"QUIT": "QUIT", "sigterm": "TERM", "hup": "HUP", "9": "KILL", "USR1": "USR1"} {
		if have, err := ParseSignal(in); err != nil || have.String() != want {
			t.Errorf("ParseSignal(%q): want %s, have %s (%v)", in, want, have, err)
		}
	}
	if _, err := ParseSignal("TERMINATE"); err == nil {
		t.Error("ParseSignal(TERMINATE): want an error")
	}
}

// A process is addressed as group:name: by default the group is the
// program's name; with group = "sentry" (supervisord's [group:sentry]
// programs=web) it is sentry, and the program stays web.
func TestFullName(t *testing.T) {
	s := DefaultSpec()
	s.Command = "app"
	s.NumProcs = 3
	s.ProcessName = "web_%(process_num)02d"
	procs, err := s.Expand("web", ExpandContext{})
	if err != nil {
		t.Fatal(err)
	}
	if p := procs[1]; p.FullName() != "web:web_01" || p.ProgramName != "web" {
		t.Errorf("without a group: %s of program %s", p.FullName(), p.ProgramName)
	}
	s.Group = "sentry"
	if procs, err = s.Expand("web", ExpandContext{}); err != nil {
		t.Fatal(err)
	}
	if p := procs[1]; p.FullName() != "sentry:web_01" || p.ProgramName != "web" {
		t.Errorf("with a group: %s of program %s", p.FullName(), p.ProgramName)
	}
}
