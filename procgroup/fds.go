package procgroup

// What the daemon keeps open for each process it runs. gosup check
// compares the sum (with the daemon's own, see the supervisor package)
// with RLIMIT_NOFILE; TestFDEstimate in the supervisor package checks it
// against the descriptors a real daemon holds: change both when the code
// that opens them changes.

// FDsPerProcess is the most file descriptors the daemon holds for one
// running process of s, once the process has written to each of its logs
// and the daemon has sampled it:
//   - its pidfd (the spawn opens one, os.FindProcess or os.StartProcess,
//     and the daemon keeps it until the process is reaped: see
//     Process.launch);
//   - for each stream that goes through the daemon (a log file or
//     syslog): the read end of its pipe (outputs.stream);
//   - for each stream to a log file: the file, opened at the first write
//     and kept (rotator); to syslog: its socket (outputs.sink);
//   - its /proc/PID/statm, kept open by procstat from the first sample;
//   - with scraped (the [http] listener serves /metrics): its
//     /proc/PID/fd as well, kept open by procstat from the first scrape.
//
// A stream to a device (/dev/stdout in a container) keeps nothing: the
// child gets the device itself. Redirected stderr shares stdout's pipe.
// /dev/null (every child's stdin, and where a log of NONE goes) and the
// log pipes' poller are the daemon's, once (Stdio).
func FDsPerProcess(s *ProcSpec, scraped bool) int {
	n := 1 + 1 // pidfd, statm
	if scraped {
		n++
	}
	for _, ls := range []LogSpec{s.Stdout, s.Stderr} {
		if ls.copied() || ls.Kind == LogSyslog {
			n += 2 // the pipe's read end, the file or socket
		}
	}
	return n
}
