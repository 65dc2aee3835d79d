package supervisor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
)

// Actors start in list order and stop in the reverse order once done is
// closed; a start that fails stops only those already started, and the
// group returns its error without waiting for done.
func TestRunGroupOrder(t *testing.T) {
	var trace []string
	group := func(failAt string) *runGroup {
		g := &runGroup{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		for _, name := range []string{"a", "b", "c"} {
			g.add(name, func() error {
				if name == failAt {
					trace = append(trace, "fail "+name)
					return errors.New(name + " failed")
				}
				trace = append(trace, "start "+name)
				return nil
			}, func() { trace = append(trace, "stop "+name) })
		}
		g.add("no stop", nil, nil)
		return g
	}

	done := make(chan struct{})
	close(done)
	if err := group("").run(done); err != nil {
		t.Fatal(err)
	}
	if have := fmt.Sprint(trace); have != "[start a start b start c stop c stop b stop a]" {
		t.Errorf("want start a, b, c then stop c, b, a; have %s", have)
	}

	trace = nil
	never := make(chan struct{})
	if err := group("c").run(never); err == nil || err.Error() != "c failed" {
		t.Errorf("want c's error, have %v", err)
	}
	if have := fmt.Sprint(trace); have != "[start a start b fail c stop b stop a]" {
		t.Errorf("want a and b stopped after c failed, have %s", have)
	}
}
