package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/spf13/cobra"
)

func newRenderCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "render",
		Short: "Print the nginx configuration the daemon would write, without a daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if cfg.Nginx == nil && cfg.NginxRenderOnly == nil {
				return usage(fmt.Errorf("%s has no [nginx] table: nothing to render", cfg.File))
			}
			out, err := cfg.RenderNginx()
			if err != nil {
				return usage(err)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
}

func newNginxCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "nginx",
		Short: "Show the last nginx update: file, outcome, nginx's error text, reloads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			st, err := cl.Nginx(cmd.Context())
			if err != nil {
				return clientErr(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, st)
			}
			fmt.Fprintf(out, "output:   %s\nstate:    %s\nservers:  %s\nreloads:  %d\nfailures: %d\n", st.Output, nginxState(st), nginxServers(st), st.Reloads, st.Failures)
			if !st.LastChange.IsZero() {
				fmt.Fprintf(out, "changed:  %s\n", st.LastChange.Format(time.DateTime))
			}
			if !st.RetryAt.IsZero() {
				fmt.Fprintf(out, "retry:    %s\n", st.RetryAt.Format(time.DateTime))
			}
			if st.Error != "" {
				fmt.Fprintf(out, "error:    %s\n", st.Error)
			}
			if !st.OK && !st.LastAttempt.IsZero() {
				return silent(exitFailed)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// nginxState is the state of an nginx status in words: ok; not installed
// or not running, the file written and nginx reloaded once it is there;
// pending before the first attempt; FAILED otherwise.
func nginxState(st api.NginxStatus) string {
	switch {
	case st.OK:
		return "ok"
	case st.NotInstalled:
		return "not installed (the file is written, not checked; checked and nginx reloaded once it is there)"
	case st.NotRunning:
		return "not running (the file is written; nginx is reloaded once it runs)"
	case st.LastAttempt.IsZero():
		return "pending"
	}
	return "FAILED"
}

// nginxServers is the count of servers in the file, and how many of them
// are marked down.
func nginxServers(st api.NginxStatus) string {
	if st.Down > 0 {
		return fmt.Sprintf("%d (%d down)", st.Servers, st.Down)
	}
	return strconv.Itoa(st.Servers)
}
