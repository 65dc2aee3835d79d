package main

import (
	"bufio"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/rogpeppe/go-internal/testscript"
)

// cmdSteps checks the last command's stdout as the --json progress of
// start, stop, restart or reload: every line one api.Event with its time,
// elapsed time and step, the last the outcome (step "result"). With
// -maxdown N, the most processes down at once (from "stopping" until
// "ready" or "failed") must be N exactly; with -readybefore A B, A's
// "ready" must come before B's "stopping". With -has STEP, some line
// must have that step.
//
//	steps [-maxdown N] [-readybefore A B] [-has STEP]...
func cmdSteps(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! steps")
	}
	maxDown := -1
	var before [][2]string
	var has []string
	for len(args) > 0 {
		switch {
		case args[0] == "-maxdown" && len(args) >= 2:
			n, err := strconv.Atoi(args[1])
			ts.Check(err)
			maxDown, args = n, args[2:]
		case args[0] == "-readybefore" && len(args) >= 3:
			before, args = append(before, [2]string{args[1], args[2]}), args[3:]
		case args[0] == "-has" && len(args) >= 2:
			has, args = append(has, args[1]), args[2:]
		default:
			ts.Fatalf("usage: steps [-maxdown N] [-readybefore A B] [-has STEP]...")
		}
	}
	var events []api.Event
	sc := bufio.NewScanner(strings.NewReader(ts.ReadFile("stdout")))
	sc.Buffer(nil, api.MaxEventBytes)
	for sc.Scan() {
		var ev api.Event
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			ts.Fatalf("steps: line %d %q: %v", len(events)+1, sc.Text(), err)
		}
		if ev.Time.IsZero() || ev.Step == "" || ev.ElapsedS < 0 {
			ts.Fatalf("steps: line %d %q: no time, elapsed_s or step", len(events)+1, sc.Text())
		}
		events = append(events, ev)
	}
	ts.Check(sc.Err())
	if len(events) == 0 || events[len(events)-1].Step != api.StepResult {
		ts.Fatalf("steps: the last line is not the outcome (step %q)", api.StepResult)
	}
	for i, ev := range events[:len(events)-1] {
		if ev.Step == api.StepResult || ev.Step == api.StepError {
			ts.Fatalf("steps: line %d is an outcome before the last line", i+1)
		}
	}
	index := func(process, step string) int {
		return slices.IndexFunc(events, func(ev api.Event) bool { return ev.Process == process && ev.Step == step })
	}
	for _, b := range before {
		r, s := index(b[0], api.StepReady), index(b[1], api.StepStopping)
		if r < 0 || s < 0 || r > s {
			ts.Fatalf("steps: %s ready (line %d) not before %s stopping (line %d)", b[0], r+1, b[1], s+1)
		}
	}
	for _, step := range has {
		if !slices.ContainsFunc(events, func(ev api.Event) bool { return ev.Step == step }) {
			ts.Fatalf("steps: no %q step", step)
		}
	}
	if maxDown >= 0 {
		down, most := map[string]bool{}, 0
		for _, ev := range events {
			switch ev.Step {
			case api.StepStopping:
				down[ev.Process] = true
			case api.StepReady, api.StepFailed:
				delete(down, ev.Process)
			}
			most = max(most, len(down))
		}
		if most != maxDown {
			ts.Fatalf("steps: at most %d processes down at once, want %d", most, maxDown)
		}
		ts.Logf("steps: %d events, at most %d processes down at once", len(events), most)
	}
}
