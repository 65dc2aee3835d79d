package procgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"github.com/gosup/gosup/procgroup/proctree"
	"golang.org/x/sys/unix"
)

// A helper process runs its main goroutine on the main thread, so that
// zombie-leader can end that thread alone.
func init() {
	if os.Getenv("GO_WANT_HELPER_PROCESS") == "1" {
		runtime.LockOSThread()
	}
}

func proctreeStat(pid int) (proctree.Proc, error) { return proctree.Stat(pid) }

// sweepHelper runs the helper modes of the sweep tests.
func sweepHelper(mode string, args []string) (int, bool) {
	switch mode {
	case "term-log": // term-log FILE: write "ready" to FILE, and "got TERM" on SIGTERM, then exit
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		if err := os.WriteFile(args[0], []byte("ready\n"), 0o644); err != nil {
			return 1, true
		}
		<-c
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return 1, true
		}
		fmt.Fprintln(f, "got TERM")
		f.Close()
		return 0, true
	case "zombie-leader": // zombie-leader PIDFILE: start a sleep, write "OURPID\nSLEEPPID" to PIDFILE, then end the main thread alone
		cmd := exec.Command("/bin/sleep", "3600")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		if err := writeFileAtomic(args[0], strconv.Itoa(os.Getpid())+"\n"+strconv.Itoa(cmd.Process.Pid)+"\n"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1, true
		}
		// The thread group leader exits; the runtime's other threads run on.
		_, _, _ = unix.RawSyscall(unix.SYS_EXIT, 0, 0, 0)
		return 1, true
	case "sweep-emfile": // start a sleep, then sweep it with no file descriptor to spare
		cmd := exec.Command("/bin/sleep", "3600")
		if err := cmd.Start(); err != nil {
			fmt.Println(err)
			return 1, true
		}
		defer func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}()
		st, err := proctree.Stat(cmd.Process.Pid)
		if err != nil {
			fmt.Println(err)
			return 1, true
		}
		l := []leftover{{pid: st.Pid, start: st.Start, pgrp: st.Pgrp}}
		var lim, low unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Println(err)
			return 1, true
		}
		low = lim
		low.Cur = 3 // stdio only: every open fails with EMFILE
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
			fmt.Println(err)
			return 1, true
		}
		res := sweep(context.Background(), l, func() []leftover { return l }, unix.SIGTERM, 0, 0, 0)
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
		alive := cmd.Process.Signal(syscall.Signal(0)) == nil
		fmt.Printf("found=%d killed=%d left=%d alive=%v err=%v\n", res.found, res.killed, res.left, alive, res.err)
		return 0, true
	}
	return 0, false
}
