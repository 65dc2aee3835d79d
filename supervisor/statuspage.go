package supervisor

import (
	"net/http"
	"os"

	"github.com/gosup/gosup/supervisor/statuspage"
)

// statusPageHandler serves the HTTP listener's status page (/) and
// status.json: what gosup ctl status and the head of gosup ctl info show,
// read through the control API's own reads (apiHost), so that the page and
// the CLI never disagree.
func (s *Supervisor) statusPageHandler() http.Handler {
	h := apiHost{s}
	host, _ := os.Hostname() // "" if unknown: the page shows none
	return statuspage.New(func() statuspage.Input {
		procs, warnings, _ := h.Status(nil, nil) // no pattern, no error
		info := h.Info()
		return statuspage.Input{
			Daemon: statuspage.Daemon{
				Host: host, Pid: info.Pid, Version: info.Version, Revision: info.Revision, GoVersion: info.GoVersion,
				State: info.State, StartedAt: info.StartedAt, UptimeS: info.UptimeS, Upgrades: info.Upgrades,
			},
			Warnings:  warnings,
			Processes: procs,
		}
	})
}
