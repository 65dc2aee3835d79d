package config

import "github.com/gosup/gosup/procgroup"

// DaemonFDs is what the daemon holds open for itself, whatever it runs,
// with room for what comes and goes: its standard streams, the control
// socket and its lock and state files, the Go runtime's poller, the log
// pipes' poller and the children's /dev/null (procgroup.Stdio), the file
// watcher's inotify, the cgroup files the runtime reads, and then the
// control connections being served (each gosup ctl, a tail), the commands
// it runs (nginx -t, sendmail: their pipes) and the files a reload reads.
// About 16 are held at any time; the rest is headroom.
const DaemonFDs = 64

// FDs is the most file descriptors the daemon holds with every process of
// cfg running (autostart or not), each of which has written to its logs:
// DaemonFDs, [http] max_connections when the listener is on, and
// procgroup.FDsPerProcess for each process. gosup check compares it with
// RLIMIT_NOFILE.
func (cfg *Config) FDs() int {
	n := DaemonFDs
	scraped := cfg.HTTP != nil
	if scraped {
		n += 1 + cfg.HTTP.MaxConnections // the listener and its connections
	}
	for _, p := range cfg.Programs {
		for i := range p.Procs {
			n += procgroup.FDsPerProcess(&p.Procs[i], scraped)
		}
	}
	return n
}
