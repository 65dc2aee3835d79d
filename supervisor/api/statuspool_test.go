package api

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// filterDaemon answers Status with the processes named by the patterns
// (all when none), appended to dst as the daemon does.
type filterDaemon struct {
	Daemon
	procs []ProcStatus
}

func (d filterDaemon) Status(dst []ProcStatus, patterns []string) ([]ProcStatus, []string, error) {
	for _, p := range d.procs {
		if len(patterns) == 0 || slices.Contains(patterns, p.Name) {
			dst = append(dst, p)
		}
	}
	return dst, nil, nil
}

// The server keeps a status's buffers for the next one: a status of one
// process after one of many, and of many after one, shows each what it
// asked for and nothing of the status before, as a table and as JSON.
func TestStatusBuffersCarryNothingOver(t *testing.T) {
	var procs []ProcStatus
	for i := range 50 {
		procs = append(procs, ProcStatus{Name: fmt.Sprintf("web:web_%02d", i), State: "RUNNING", Pid: 1000 + i, Description: fmt.Sprintf("pid %d", 1000+i)})
	}
	cl := serveOn(t, NewHandler(filterDaemon{procs: procs}, 0))
	for i, patterns := range [][]string{nil, {"web:web_07"}, nil, {"web:web_03", "web:web_41"}, {"web:web_49"}} {
		var want []ProcStatus
		for _, p := range procs {
			if len(patterns) == 0 || slices.Contains(patterns, p.Name) {
				want = append(want, p)
			}
		}
		var table bytes.Buffer
		if _, err := cl.StatusTable(t.Context(), &table, patterns...); err != nil {
			t.Fatal(err)
		}
		if wantTable := AppendStatusTable(nil, want); !bytes.Equal(table.Bytes(), wantTable) {
			t.Errorf("status %d %q: table\n%s\nwant\n%s", i, patterns, table.Bytes(), wantTable)
		}
		var js bytes.Buffer
		if _, err := cl.StatusJSON(t.Context(), &js, patterns...); err != nil {
			t.Fatal(err)
		}
		if wantJSON := AppendStatusJSON(nil, want, true); !bytes.Equal(js.Bytes(), wantJSON) {
			t.Errorf("status %d %q: JSON\n%s\nwant\n%s", i, patterns, js.Bytes(), wantJSON)
		}
	}
}
