package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// progressPrinter prints the steps of start, stop, restart and reload as
// the daemon reports them: a human line each ("[   2.3s] web:web_00 ready
// in 1.1s (pid 4242)"), on a terminal or not, or with asJSON the events
// themselves, one JSON object a line, the outcome last.
type progressPrinter struct {
	w      io.Writer
	asJSON bool
	// planShown: a reload's plan was printed from its "plan" step; the
	// outcome then prints only what went wrong.
	planShown bool
	// finalShown: the outcome's line went out (--json).
	finalShown bool
	err        error // the first write error (--json)
	// began is when the command sent its request: the elapsed time of
	// an outcome the daemon sent without a stream (an older daemon).
	began time.Time
	// failedShown holds the failures printed as "failed" steps
	// (process, then message), nginxFailShown that nginx's was: a
	// reload's outcome does not print them again.
	failedShown    map[[2]string]bool
	nginxFailShown bool
}

// newProgressPrinter prints to w, as JSON lines with asJSON; call it as
// the request is sent.
func newProgressPrinter(w io.Writer, asJSON bool) *progressPrinter {
	return &progressPrinter{w: w, asJSON: asJSON, began: time.Now(), failedShown: map[[2]string]bool{}}
}

// shownFailed reports whether r's failure was printed as a step already.
func (pp *progressPrinter) shownFailed(r api.Result) bool {
	return pp.failedShown[[2]string{r.Name, r.Message}]
}

func (pp *progressPrinter) event(ev api.Event) {
	if pp.asJSON {
		pp.line(ev)
		return
	}
	name := ev.Process
	var text string
	switch ev.Step {
	case api.StepPlan:
		if ev.Plan != nil {
			printChanges(pp.w, ev.Plan)
			pp.planShown = true
		}
		return
	case api.StepResult, api.StepError:
		return // the outcome is printed as without progress
	case api.StepDraining:
		text = name + " draining: " + ev.Message
	case api.StepDrained:
		text = name + " drained in " + took(ev.TookS)
	case api.StepStopping:
		text = name + " stopping"
		if ev.Pid > 0 {
			text += fmt.Sprintf(" (pid %d)", ev.Pid)
		}
		if ev.Message != "" {
			text += ": " + ev.Message
		}
	case api.StepStopped:
		text = name + " stopped in " + took(ev.TookS)
		if ev.Message != "" && ev.Message != "stopped" {
			text += ": " + ev.Message
		}
	case api.StepStarted:
		text = fmt.Sprintf("%s started (pid %d)", name, ev.Pid)
		if ev.Message != "" {
			text += ", " + ev.Message
		}
	case api.StepReady:
		text = fmt.Sprintf("%s ready in %s (pid %d)", name, took(ev.TookS), ev.Pid)
	case api.StepFailed:
		if name == "" && strings.HasPrefix(ev.Message, "nginx: ") {
			// Its text is the outcome's "nginx: FAILED (...)" line,
			// printed next: said once.
			pp.nginxFailShown = true
			text = "nginx: FAILED"
			if ev.TookS > 0 {
				text += " after " + took(ev.TookS)
			}
			text += " (below)"
			break
		}
		pp.failedShown[[2]string{name, ev.Message}] = true
		text = strings.TrimPrefix(name+" FAILED: "+ev.Message, " ")
	case api.StepWaiting:
		text = strings.TrimPrefix(name+" waiting: "+ev.Message, " ")
	case api.StepNginx:
		text = "nginx: " + ev.Message
		if ev.TookS > 0 {
			text += " (" + took(ev.TookS) + ")"
		}
	case api.StepDropped:
		text = "gosup: " + ev.Message
	default:
		text = strings.TrimPrefix(name+" "+ev.Step+": "+ev.Message, " ")
	}
	fmt.Fprintf(pp.w, "[%6.1fs] %s\n", ev.ElapsedS, text)
}

// line prints ev as one JSON line.
func (pp *progressPrinter) line(ev api.Event) {
	if ev.Step == api.StepResult || ev.Step == api.StepError {
		pp.finalShown = true
	}
	b, err := json.Marshal(ev)
	if err == nil {
		_, err = pp.w.Write(append(b, '\n'))
	}
	if err != nil && pp.err == nil {
		pp.err = err
	}
}

// final prints, with --json, the outcome's line if the daemon sent no
// stream (an older daemon answers with the outcome alone).
func (pp *progressPrinter) final(ev api.Event) error {
	if pp.asJSON && !pp.finalShown {
		ev.Time = time.Now()
		ev.ElapsedS = ev.Time.Sub(pp.began).Seconds()
		pp.line(ev)
	}
	return pp.err
}

// took prints a step's duration: milliseconds under a second, else
// seconds to a tenth.
func took(secs float64) string {
	if secs < 1 {
		return fmt.Sprintf("%dms", int(secs*1000))
	}
	return fmt.Sprintf("%.1fs", secs)
}
