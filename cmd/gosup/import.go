package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/importer"
	"github.com/spf13/cobra"
)

func newImportCmd() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "import SUPERVISORD.CONF [-o gosup.toml]",
		Short: "Translate a supervisord.conf (and its memmon listener) into a gosup configuration",
		Long: `Reads a supervisord.conf as supervisord does ([include] files too) and writes
the equivalent gosup TOML to -o FILE or stdout. What gosup does differently is
commented in the output; what it does not do is written as a comment and
reported on stderr as FILE:LINE: warning: ..., one line each. The result is
checked like gosup check: exit 2 for a malformed supervisord.conf, 1 if the
result does not pass the check.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := importer.Import(args[0])
			if err != nil {
				var pe *importer.ParseError
				if errors.As(err, &pe) {
					return usage(err)
				}
				return failed(err)
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s:%d: warning: %s\n", w.File, w.Line, w.Msg)
			}
			if output == "" {
				// The draft is printed either way, to be fixed if the check fails.
				if _, err := cmd.OutOrStdout().Write(res.TOML); err != nil {
					return failed(err)
				}
				warnings, err := checkImported(res.TOML, "the imported configuration")
				if err != nil {
					return err
				}
				for _, w := range warnings {
					fmt.Fprintln(cmd.ErrOrStderr(), w)
				}
				printNextSteps(cmd.ErrOrStderr(), args[0], "", res, len(warnings))
				return nil
			}
			if err := os.WriteFile(output, res.TOML, 0o644); err != nil {
				return failed(err)
			}
			cfg, err := config.Load(output)
			if err != nil {
				return failed(fmt.Errorf("%s is written but does not pass gosup check; fix these and run gosup check -c %s:\n%w", output, output, err))
			}
			warnings := checkWarnings(cfg)
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), w)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d warnings); gosup check passes\n", output, len(res.Warnings)+len(warnings))
			printNextSteps(cmd.ErrOrStderr(), args[0], output, res, len(warnings))
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "write the gosup configuration here (default: stdout)")
	return c
}

// checkImported validates TOML as if it were a file in the current
// directory (where `gosup import x.conf > gosup.toml` puts it), or in the
// temp directory if that is read-only. It returns what gosup check would
// warn about (see checkWarnings), naming the content "(output)".
func checkImported(toml []byte, name string) ([]string, error) {
	f, err := os.CreateTemp(".", ".gosup-import-*.toml")
	if err != nil {
		if f, err = os.CreateTemp("", "gosup-import-*.toml"); err != nil {
			return nil, failed(err)
		}
	}
	defer os.Remove(f.Name())
	_, err = f.Write(toml)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, failed(err)
	}
	abs, _ := filepath.Abs(f.Name())
	// The temporary file stands in for the content only: who may change
	// it says nothing about the file the operator will install.
	cfg, err := config.LoadWith(f.Name(), config.LoadOptions{InsecureFiles: true})
	if err != nil {
		return nil, failed(fmt.Errorf("%s does not pass gosup check:\n%s", name, strings.ReplaceAll(err.Error(), abs, "(output)")))
	}
	warnings := checkWarnings(cfg)
	for i, w := range warnings {
		warnings[i] = strings.ReplaceAll(w, abs, "(output)")
	}
	return warnings, nil
}

// checkWarnings are the warnings gosup check prints for cfg: the
// configuration's own (an [email] sendmail that is not there, this host's
// limits), then the PATH ones, one line each.
func checkWarnings(cfg *config.Config) []string {
	var out []string
	for _, w := range cfg.Warnings {
		out = append(out, w.Warning())
	}
	for _, w := range pathWarnings(cfg, os.Getenv("PATH")) {
		out = append(out, w.Warning())
	}
	return out
}

// installedConfig is where the next steps install an imported file:
// where gosup looks when -c is not given (after ./gosup.toml).
const installedConfig = "/etc/gosup/gosup.toml"

// printNextSteps tells what to do with an imported configuration (written
// to output, or to stdout when output is ""), in the order that keeps the
// site up: the file in place, what gosup check warns about (warnings of
// them) fixed, nginx given the upstream (supervisord's processes still
// serve the same ports), then supervisord stopped and gosup started under
// systemd.
func printNextSteps(w io.Writer, conf, output string, res *importer.Result, warnings int) {
	c := installedConfig
	fmt.Fprintln(w, "next steps:")
	abs, _ := filepath.Abs(output)
	switch {
	case output == "":
		fmt.Fprintf(w, "  1. save it (gosup import %s -o gosup.toml) and install it as %s:\n", conf, c)
		fmt.Fprintf(w, "     install -D -m 0644 gosup.toml %s && gosup check -c %s\n", c, c)
	case abs == c:
		fmt.Fprintf(w, "  1. it is where gosup looks without -c; review it:\n")
		fmt.Fprintf(w, "     gosup check -c %s\n", c)
	default:
		fmt.Fprintf(w, "  1. install it as %s, where gosup looks without -c:\n", c)
		fmt.Fprintf(w, "     install -D -m 0644 %s %s && gosup check -c %s\n", output, c, c)
	}
	n := 2
	if warnings > 0 {
		fmt.Fprintf(w, "  %d. fix what gosup check warns about above (%d warnings) before gosup starts: a sendmail that\n", n, warnings)
		fmt.Fprintln(w, "     is not there loses every alert; a command found through this shell's PATH runs another, or")
		fmt.Fprintln(w, "     none, under systemd")
		n++
	}
	if len(res.Upstreams) > 0 {
		fmt.Fprintf(w, "  %d. gosup render -c %s prints the nginx upstream %s: put it in nginx's\n", n, c, strings.Join(res.Upstreams, ", "))
		fmt.Fprintln(w, "     http { } in place of your upstream block for those ports (if your uwsgi_pass or proxy_pass names")
		fmt.Fprintln(w, "     another upstream, rename [nginx.upstream.NAME] and the program's upstream = to it), or set")
		fmt.Fprintln(w, "     [nginx] output (commented in the file) so that gosup writes it and reloads nginx as processes")
		fmt.Fprintln(w, "     come and go")
		fmt.Fprintf(w, "  %d. nginx -t && systemctl reload nginx (systemctl start nginx if it is not running yet):\n", n+1)
		fmt.Fprintln(w, "     the ports are the same, so supervisord's processes serve it until gosup's take over")
		n += 2
	}
	fmt.Fprintf(w, "  %d. stop supervisord (its processes hold the same ports and names), then start gosup under systemd:\n", n)
	fmt.Fprintf(w, "     gosup systemd-unit -c %s > /etc/systemd/system/gosup.service\n", c)
	fmt.Fprintln(w, "     systemctl daemon-reload && systemctl enable --now gosup && gosup ctl status")
}
