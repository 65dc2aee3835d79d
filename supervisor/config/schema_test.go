package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
)

// Each schema struct has exactly the fields of its runtime struct, by name
// and kind, so that convert copies every setting both ways; a field added
// to one and not the other fails here.
func TestSchemaMatchesRuntime(t *testing.T) {
	for _, pair := range []struct{ schema, runtime any }{
		{rawSettings{}, Settings{}},
		{rawProgram{}, procgroup.Spec{}},
		{rawUpstream{}, Upstream{}},
		{rawMemmon{}, memmon.Settings{}},
		{rawEmail{}, memmon.Email{}},
	} {
		st, rt := reflect.TypeOf(pair.schema), reflect.TypeOf(pair.runtime)
		if st.NumField() != rt.NumField() {
			t.Errorf("%s has %d fields, %s has %d", st, st.NumField(), rt, rt.NumField())
		}
		for i := range st.NumField() {
			sf := st.Field(i)
			rf, ok := rt.FieldByName(sf.Name)
			if !ok {
				t.Errorf("%s.%s has no field in %s", st, sf.Name, rt)
				continue
			}
			if sf.Type.Kind() != rf.Type.Kind() {
				t.Errorf("%s.%s is a %s, %s.%s a %s", st, sf.Name, sf.Type.Kind(), rt, rf.Name, rf.Type.Kind())
			}
			if sf.Tag.Get("toml") == "" {
				t.Errorf("%s.%s has no toml key", st, sf.Name)
			}
		}
	}
	spec := procgroup.DefaultSpec()
	spec.Environment = map[string]string{"A": "1"}
	roundTrip[rawProgram](t, spec)
	roundTrip[rawMemmon](t, memmon.Settings{Interval: time.Second, Program: map[string]procgroup.Size{"web_00": 1 << 20}})
}

// roundTrip converts v to its schema struct R and back, unchanged.
func roundTrip[R, T any](t *testing.T, v T) {
	t.Helper()
	var raw R
	convert(&raw, &v)
	var back T
	convert(&back, &raw)
	if !reflect.DeepEqual(back, v) {
		t.Errorf("%T changed on its way through %T:\nwant %+v\nhave %+v", v, raw, v, back)
	}
}

func TestChangedKeys(t *testing.T) {
	a := procgroup.DefaultSpec()
	b := a
	b.StopSignal, _ = procgroup.ParseSignal("QUIT")
	b.Drain = 5 * time.Second
	b.Environment = map[string]string{"X": "1"}
	if have := fmt.Sprint(ChangedKeys(&a, &b)); have != "[environment stopsignal drain]" {
		t.Errorf("want [environment stopsignal drain], have %s", have)
	}
	if have := ChangedKeys(&a, &a); len(have) != 0 {
		t.Errorf("a spec differs from itself in %v", have)
	}
}

// Checks of a program's keys that need no expansion name the key.
func TestProgramErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*procgroup.Spec)
		key  string
		want string
	}{
		{"no command", func(s *procgroup.Spec) { s.Command = " " }, "command", "is required"},
		{"numprocs 0", func(s *procgroup.Spec) { s.NumProcs = 0 }, "numprocs", "at least 1"},
		{"ports past 65535", func(s *procgroup.Spec) { s.PortStart = 65535; s.NumProcs = 2; s.ProcessName = "x%(process_num)d" }, "port_start", "past port 65535"},
		{"exit code range", func(s *procgroup.Spec) { s.ExitCodes = []int{256} }, "exitcodes", "not in 0-255"},
		{"negative startsecs", func(s *procgroup.Spec) { s.StartSecs = -1 }, "startsecs", "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := procgroup.DefaultSpec()
			s.Command = "app"
			tc.edit(&s)
			src := &source{file: "gosup.toml", lines: lineIndex{}}
			errs := src.checkProgram("web", &s)
			if len(errs) != 1 {
				t.Fatalf("want one error, have %v", errs)
			}
			e, ok := errs[0].(*Error)
			if !ok || e.Key != "program.web."+tc.key || !strings.Contains(e.Msg, tc.want) {
				t.Errorf("want key program.web.%s and %q, have %v", tc.key, tc.want, errs[0])
			}
		})
	}
}

func TestMemmonAndEmailErrors(t *testing.T) {
	src := &source{file: "gosup.toml", lines: lineIndex{}}
	s := memmon.DefaultSettings()
	if errs := checkMemmonSettings(src, &s); len(errs) == 0 {
		t.Error("no limit at all must be an error")
	}
	s.Any = 1 << 20
	s.Samples = 0
	if errs := checkMemmonSettings(src, &s); len(errs) == 0 {
		t.Error("samples = 0 must be an error")
	}
	s.Samples = 3
	if errs := checkMemmonSettings(src, &s); len(errs) != 0 {
		t.Errorf("defaults with a limit: %v", errs)
	}
	s.MaxRestarts, s.RestartWindow = -1, 0
	if errs := fmt.Sprint(checkMemmonSettings(src, &s)); !strings.Contains(errs, "memmon.max_restarts: must not be negative") ||
		!strings.Contains(errs, "memmon.restart_window: must be positive") {
		t.Errorf("max_restarts = -1, restart_window = 0: %v", errs)
	}
	e := memmon.DefaultEmail()
	e.To = []string{"ops@example.com"}
	if errs := checkEmail(src, &e, false); len(errs) == 0 {
		t.Error("neither smtp nor sendmail must be an error")
	}
	e.SMTP = "localhost"
	if errs := checkEmail(src, &e, false); len(errs) == 0 {
		t.Error("smtp without a port must be an error")
	}
}
