package procgroup

import "slices"

// SpawnChanges lists what differs between two specs of one process in what
// a spawn uses (command, environment, directory, user, umask, port, log
// destinations), by config key. A process must be restarted for these to
// take effect; every other difference applies to the running process.
func SpawnChanges(a, b *ProcSpec) []string {
	var out []string
	add := func(changed bool, key string) {
		if changed {
			out = append(out, key)
		}
	}
	add(!slices.Equal(a.Argv, b.Argv), "command")
	add(!slices.Equal(a.Env, b.Env), "environment")
	add(a.Dir != b.Dir, "directory")
	add(a.User != b.User, "user")
	add(a.Umask != b.Umask, "umask")
	add(a.Port != b.Port, "port")
	add(logMoved(a.Stdout, b.Stdout), "stdout_logfile")
	add(logMoved(a.Stderr, b.Stderr), "stderr_logfile")
	add(a.Program.RedirectStderr != b.Program.RedirectStderr, "redirect_stderr")
	add(a.Program.LogTimestamps != b.Program.LogTimestamps, "log_timestamps")
	return out
}

// logMoved reports a change of destination. A change of maxbytes alone
// (even to or from 0) is not one: every log file goes through the same
// pipe and copier, only the rotator's limit changes.
func logMoved(a, b LogSpec) bool {
	return a.Kind != b.Kind || a.Path != b.Path
}
