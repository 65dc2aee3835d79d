package proctree

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParseStatOddName(t *testing.T) {
	// A command name may hold spaces and parentheses: fields are counted
	// from the last ')'.
	line := []byte("4242 (a) b (c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n")
	p, ok := parseStat(line)
	if !ok {
		t.Fatal("not parsed")
	}
	want := Proc{PPid: 17, Pgrp: 4242, State: 'S', Start: 987654}
	if p != want {
		t.Fatalf("parsed %+v, want %+v", p, want)
	}
	if _, ok := parseStat([]byte("1 (x) S 0 1")); ok {
		t.Fatal("a truncated line parsed")
	}
}

func TestHasEntry(t *testing.T) {
	env := []byte("A=1\x00GOSUP_X=ab\x00B=2")
	for kv, want := range map[string]bool{"A=1": true, "GOSUP_X=ab": true, "B=2": true, "GOSUP_X=a": false, "X=ab": false, "=1": false} {
		if hasEntry(env, kv) != want {
			t.Errorf("hasEntry(%q) = %v, want %v", kv, !want, want)
		}
	}
}

// TestRealChild reads a real child's entry: parent, group, start time,
// marker, and its exit.
func TestRealChild(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "60")
	cmd.Env = []string{"PROCTREE_TEST=" + t.Name()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	p, err := Stat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid != pid || p.PPid != os.Getpid() || p.Pgrp != pid || p.Start == 0 {
		t.Fatalf("stat of child %d: %+v (our pid %d)", pid, p, os.Getpid())
	}
	if st, _ := StartTime(pid); st != p.Start {
		t.Fatalf("StartTime %d, Stat %d", st, p.Start)
	}
	if i := slices.IndexFunc(Scan(), func(q Proc) bool { return q.Pid == pid }); i < 0 {
		t.Fatal("Scan misses the child")
	}
	// The environment is read as of exec: wait for it to be the child's.
	deadline := time.Now().Add(30 * time.Second)
	for !HasEnv(pid, "PROCTREE_TEST="+t.Name()) {
		if time.Now().After(deadline) {
			t.Fatal("the child's marker never showed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if HasEnv(pid, "PROCTREE_TEST=other") {
		t.Fatal("HasEnv matched another value")
	}
	if got := Marked("PROCTREE_TEST=" + t.Name()); !slices.Equal(got, []int{pid}) {
		t.Fatalf("Marked = %v, want [%d]", got, pid)
	}
	if Exited(pid) {
		t.Fatal("a sleeping child counted as exited")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Until Wait it is a zombie, and that is exited already.
	for !Exited(pid) {
		if time.Now().After(deadline) {
			t.Fatal("killed child never counted as exited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Wait()
	if !Exited(pid) {
		t.Fatal("a reaped child is not exited")
	}
}

func BenchmarkScan(b *testing.B) {
	n := len(Scan())
	b.ReportMetric(float64(n), "procs")
	for b.Loop() {
		Scan()
	}
}
