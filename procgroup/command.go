package procgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/gosup/gosup/logtail"
	"github.com/gosup/gosup/procgroup/forkexec"
	"github.com/gosup/gosup/procgroup/reaper"
	"golang.org/x/sys/unix"
)

// shellChars are what make a command line need /bin/sh.
const shellChars = "|&;<>()$`*?[]~!#\n"

// CommandArgv splits an operator's command line (an nginx test or reload
// command, sendmail): plainly when it is plain, through /bin/sh -c when it
// uses the shell (pipes, redirections, $VARS).
func CommandArgv(command string) ([]string, error) {
	if strings.ContainsAny(command, shellChars) {
		return []string{"/bin/sh", "-c", command}, nil
	}
	return SplitCommand(command)
}

// maxCommandOutput is how much of a command's output is kept.
const maxCommandOutput = 64 << 10

// RunCommand runs a short-lived command line through the reaper (the
// daemon's only waiter) with input, if not nil, on its stdin and stdout and
// stderr captured together (the first 64 KiB of them, then a line
// "[gosup: 9.9MB cut]" when there was more), in its
// own process group, killed with that group if it outlives timeout. It
// never waits for more than timeout plus a second. A command that runs and
// fails is a *CommandError.
func RunCommand(ctx context.Context, rp *reaper.Reaper, command string, input []byte, timeout time.Duration) ([]byte, error) {
	argv, err := CommandArgv(command)
	if err != nil {
		return nil, err
	}
	return runArgv(ctx, rp, command, argv, input, timeout)
}

// RunArgv is RunCommand with the command given as its arguments, argv[0]
// a path or a name looked up in $PATH.
func RunArgv(ctx context.Context, rp *reaper.Reaper, argv []string, input []byte, timeout time.Duration) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("run: no command")
	}
	return runArgv(ctx, rp, strings.Join(argv, " "), argv, input, timeout)
}

func runArgv(ctx context.Context, rp *reaper.Reaper, command string, argv []string, input []byte, timeout time.Duration) ([]byte, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("run %q: %w", command, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("run %q: output pipe: %w", command, err)
	}
	defer pr.Close()
	var stdin, inW *os.File
	if input != nil {
		stdin, inW, err = os.Pipe()
		if err != nil {
			err = fmt.Errorf("run %q: input pipe: %w", command, err)
		}
	} else if stdin, err = os.Open(os.DevNull); err != nil {
		err = fmt.Errorf("run %q: stdin: %w", command, err)
	}
	if err != nil {
		pw.Close()
		return nil, err
	}
	defer stdin.Close()
	attr := &forkexec.Attr{Files: [3]*os.File{stdin, pw, pw}, Umask: -1, Pdeathsig: syscall.SIGKILL}
	proc, exitC, err := rp.Start(func() (*os.Process, error) { return rp.Spawner().Start(path, argv, attr) })
	pw.Close()
	stdin.Close()
	if err != nil {
		if inW != nil {
			inW.Close()
		}
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	if inW != nil {
		go func() {
			_, _ = inW.Write(input)
			inW.Close()
		}()
	}
	defer proc.Release()
	var out bytes.Buffer
	var cut int64 // output past maxCommandOutput
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(&out, io.LimitReader(pr, maxCommandOutput))
		cut, _ = io.Copy(io.Discard, pr)
	}()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ex reaper.Exit
	select {
	case ex = <-exitC:
	case <-ctx.Done():
		_ = unix.Kill(-proc.Pid, unix.SIGKILL)
		ex = <-exitC
		if perr := parent.Err(); perr != nil {
			// Not its fault: the caller gave up (the daemon shutting down).
			err = fmt.Errorf("%q was killed before it finished: %w", command, perr)
		} else {
			err = fmt.Errorf("%q did not finish within %s and was killed: %w", command, timeout, ctx.Err())
		}
	}
	// Something it started may hold the pipe open: stop reading soon.
	_ = pr.SetReadDeadline(time.Now().Add(time.Second))
	<-copied
	text := bytes.TrimSpace(out.Bytes())
	if cut > 0 {
		text = append(text, "\n[gosup: "+logtail.FormatBytes(cut)+" cut]"...)
	}
	if err != nil {
		return text, err
	}
	if ex.Code() != 0 {
		return text, &CommandError{Command: command, Exit: ex.String(), Output: string(text)}
	}
	return text, nil
}

// CommandError is a command that ran and failed.
type CommandError struct {
	Command string
	Exit    string
	Output  string
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%q failed (%s)", e.Command, e.Exit)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}
