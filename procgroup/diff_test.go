package procgroup

import (
	"slices"
	"testing"
)

// What a spawn uses restarts the process when it changes, by config key:
// log_timestamps among them (the copier stamps from the next spawn on); a
// log's maxbytes alone does not.
func TestSpawnChanges(t *testing.T) {
	base := func() *ProcSpec {
		s := &ProcSpec{Argv: []string{"/bin/true"}, Program: &Spec{}}
		s.Stdout = LogSpec{Kind: LogFile, Path: "/var/log/a.log"}
		return s
	}
	for _, tc := range []struct {
		name   string
		change func(*ProcSpec)
		want   []string
	}{
		{"nothing", func(*ProcSpec) {}, nil},
		{"log_timestamps", func(s *ProcSpec) { s.Program.LogTimestamps = true }, []string{"log_timestamps"}},
		{"redirect_stderr", func(s *ProcSpec) { s.Program.RedirectStderr = true }, []string{"redirect_stderr"}},
		{"stdout_logfile", func(s *ProcSpec) { s.Stdout.Path = "/var/log/b.log" }, []string{"stdout_logfile"}},
		{"two", func(s *ProcSpec) { s.Argv = []string{"/bin/false"}; s.Program.LogTimestamps = true }, []string{"command", "log_timestamps"}},
	} {
		a, b := base(), base()
		tc.change(b)
		if got := SpawnChanges(a, b); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
