package main

import (
	"errors"
	"fmt"
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
				return checkImported(res.TOML, "the imported configuration")
			}
			if err := os.WriteFile(output, res.TOML, 0o644); err != nil {
				return failed(err)
			}
			if _, err := config.Load(output); err != nil {
				return failed(fmt.Errorf("%s is written but does not pass gosup check; fix these and run gosup check -c %s:\n%w", output, output, err))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d warnings); gosup check passes\n", output, len(res.Warnings))
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "write the gosup configuration here (default: stdout)")
	return c
}

// checkImported validates TOML as if it were a file in the current
// directory (where `gosup import x.conf > gosup.toml` puts it), or in the
// temp directory if that is read-only.
func checkImported(toml []byte, name string) error {
	f, err := os.CreateTemp(".", ".gosup-import-*.toml")
	if err != nil {
		if f, err = os.CreateTemp("", "gosup-import-*.toml"); err != nil {
			return failed(err)
		}
	}
	defer os.Remove(f.Name())
	_, err = f.Write(toml)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return failed(err)
	}
	// The temporary file stands in for the content only: who may change
	// it says nothing about the file the operator will install.
	if _, err := config.LoadWith(f.Name(), config.LoadOptions{InsecureFiles: true}); err != nil {
		abs, _ := filepath.Abs(f.Name())
		return failed(fmt.Errorf("%s does not pass gosup check:\n%s", name, strings.ReplaceAll(err.Error(), abs, "(output)")))
	}
	return nil
}
