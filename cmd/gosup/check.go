package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newCheckCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate a configuration and print the processes it expands to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPORT\tCOMMAND")
			n := 0
			for _, p := range cfg.Programs {
				for _, ps := range p.Procs {
					port := "-"
					if ps.Port > 0 {
						port = strconv.Itoa(ps.Port)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", ps.FullName(), port, strings.Join(ps.Argv, " "))
					n++
				}
			}
			tw.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid, %d programs, %d processes\n", cfg.File, len(cfg.Programs), n)
			return nil
		},
	}
}
