// Command gosup is a process supervisor and fan-out launcher: it runs N
// children per program on sequential ports with supervisord's semantics and
// is driven by `gosup ctl`.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the operation failed
	exitUsage  = 2 // bad usage or bad configuration
)

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func failed(err error) error { return &exitError{code: exitFailed, err: err} }
func usage(err error) error  { return &exitError{code: exitUsage, err: err} }

// silent is an exitError whose message has already been printed.
func silent(code int) error { return &exitError{code: code, err: errSilent} }

var errSilent = errors.New("")

func init() {
	// The daemon's main goroutine is its spawning thread (see package
	// reaper): locked to the main thread from the start, so that every
	// child is the main thread's, which survives the execve of an
	// in-place upgrade, and the new image spawns from it again. A
	// client, which never spawns, is not locked: the lock starts a
	// thread of its own (the runtime's template thread), 0.1 ms of a
	// gosup ctl status.
	if len(os.Args) > 1 && (os.Args[1] == "ctl" || os.Args[1] == "version") {
		return
	}
	runtime.LockOSThread()
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != errSilent {
			for _, line := range strings.Split(hintNotRunning(ee.err).Error(), "\n") {
				fmt.Fprintln(os.Stderr, "gosup:", line)
			}
		}
		return ee.code
	}
	// cobra's own errors: unknown command or flag.
	fmt.Fprintln(os.Stderr, "gosup:", err)
	return exitUsage
}

// globalFlags are shared by every command.
type globalFlags struct {
	config string
	socket string
	// insecure accepts configuration files others than root can change,
	// when running as root (config.LoadOptions.InsecureFiles).
	insecure bool
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "gosup",
		Short:         "Process supervisor and fan-out launcher",
		Long:          "gosup runs N children per program on sequential ports with supervisord's semantics,\nkeeps them alive, and is driven by `gosup ctl`.",
		Version:       buildInfo().Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&g.config, "config", "c", "", "configuration file (default ./gosup.toml, then /etc/gosup/gosup.toml)")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "control socket of the daemon (default: from the config, or $GOSUP_SOCKET)")
	root.PersistentFlags().BoolVar(&g.insecure, "insecure-config", false, "as root, read configuration files that others than root can change (refused otherwise); the daemon remembers it for its reloads")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(newStartCmd(g), newCtlCmd(g), newStatusCmd(g), newCheckCmd(g), newRenderCmd(g), newSystemdUnitCmd(g), newImportCmd(), newDemoAppCmd(), newDemoGrowCmd(), newDemoSendmailCmd(), newDemoWorkerCmd(), newUpgradeCheckCmd(), newVersionCmd())
	explainArgs(root)
	completeNames(g, root)
	return root
}

// printJSON is every command's --json output: indented, one value.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
