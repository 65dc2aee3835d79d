package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/handover"
	"github.com/spf13/cobra"
)

// version is set at build time (-ldflags "-X main.version=1.2.3"); a build
// without it says the module version, or "dev".
var version = "dev"

// buildInfo names this binary: its version, VCS revision and toolchain.
func buildInfo() handover.Build {
	b := handover.Build{Version: version, Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "" {
		b.Revision += "-dirty"
	}
	return b
}

// startedBinary is the absolute path this process was started as: argv[0],
// looked up in $PATH if it has no slash. Not /proc/self/exe, which after a
// package upgrade names the deleted old file, and resolves the symlink an
// alternatives system repoints.
func startedBinary() string {
	arg0 := os.Args[0]
	if !strings.Contains(arg0, "/") {
		p, err := exec.LookPath(arg0)
		if err != nil {
			return ""
		}
		arg0 = p
	}
	abs, err := filepath.Abs(arg0)
	if err != nil {
		return ""
	}
	return abs
}

// readHandover reads the document the previous image left, if this
// process is the new image of an upgrade; nil otherwise.
func readHandover() (*handover.Doc, error) {
	v, ok := os.LookupEnv(handover.Env)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(handover.Env) // children must not see it
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: not a descriptor", handover.Env, v)
	}
	b, err := handover.Read(fd)
	if err != nil {
		return nil, err
	}
	return handover.Decode(b)
}

// loadHandedConfig parses the configuration the previous image ran, from
// the bytes it read.
func loadHandedConfig(doc *handover.Doc) (*config.Config, error) {
	return config.LoadWith(doc.Config.File, config.LoadOptions{Sources: doc.Config.Sources, Files: doc.Config.Files, InsecureFiles: doc.Config.Insecure})
}

// newUpgradeCheckCmd is what a daemon runs of a new binary before it
// executes it: the binary reads the handover document on stdin (its
// version, and the running configuration) and prints its build and the
// versions it reads, as JSON.
func newUpgradeCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "upgrade-check",
		Short:  "Check that this binary can take over a running daemon (run by the daemon before an upgrade)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Short-lived, and on the upgrade's critical path: no
			// collection (what it allocates is bounded by the document).
			debug.SetGCPercent(-1)
			b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), handover.MaxBytes+1))
			if err != nil {
				return failed(fmt.Errorf("read the handover document: %w", err))
			}
			if len(b) > handover.MaxBytes {
				return failed(fmt.Errorf("handover document larger than %d MiB", handover.MaxBytes>>20))
			}
			doc, err := handover.Decode(b)
			if err != nil {
				return failed(err)
			}
			if _, err := loadHandedConfig(doc); err != nil {
				return failed(fmt.Errorf("the running configuration does not load in this binary: %w", err))
			}
			return printJSON(cmd.OutOrStdout(), handover.Check{Build: buildInfo(), Readable: handover.Readable})
		},
	}
}

func newUpgradeCmd(g *globalFlags) *cobra.Command {
	var binary string
	var timeout time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "upgrade",
		Short: "Re-execute the daemon in place from its (new) binary, keeping every process",
		Long: `Re-execute the daemon in place, as nginx does on SIGUSR2: same pid, every
process kept running as its child, no request refused meanwhile. Install the
new binary over the old one first; --binary runs another file. The binary is
checked first (executable, as root changeable by root alone, and it must read
this daemon's handover and configuration); if it fails, nothing changes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if binary != "" {
				if binary, err = filepath.Abs(binary); err != nil {
					return usage(err)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			start := time.Now()
			reply, err := cl.Upgrade(ctx, binary)
			if err != nil {
				return failed(fmt.Errorf("upgrade refused: %w", err))
			}
			info, err := cl.WaitUpgrade(ctx, reply)
			if err != nil {
				return failed(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, info)
			}
			fmt.Fprintf(out, "upgraded pid %d in %s: %s -> %s (%s)\n", info.Pid, time.Since(start).Round(time.Millisecond),
				describeBuild(reply.From), describeBuild(api.Build{Version: info.Version, Revision: info.Revision}), info.Binary)
			return nil
		},
	}
	c.Flags().StringVar(&binary, "binary", "", "the file to execute (default: the one the daemon was started from)")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for operations in progress and for the new image")
	c.Flags().BoolVar(&asJSON, "json", false, "print the new image's info as JSON")
	return c
}

// describeBuild is "VERSION (REVISION)", the revision cut to 12.
func describeBuild(b api.Build) string {
	if b.Revision == "" {
		return b.Version
	}
	return fmt.Sprintf("%s (%s)", b.Version, b.Revision[:min(12, len(b.Revision))])
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print gosup's version, VCS revision and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			b := buildInfo()
			rev := b.Revision
			if rev == "" {
				rev = "no VCS revision: built with -buildvcs=false or outside a checkout"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gosup %s (%s) %s\n", b.Version, rev, b.Go)
		},
	}
}
