package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/gosup/gosup/supervisor"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/spf13/cobra"
)

func newRenderCmd(g *globalFlags) *cobra.Command {
	var haproxy bool
	c := &cobra.Command{
		Use:   "render",
		Short: "Print the nginx (or HAProxy) configuration the daemon would write, without a daemon",
		Long: `Print the nginx configuration the daemon would write ([nginx]), or with
--haproxy (or without an [nginx] table) the HAProxy one ([haproxy]). An
upstream whose servers come from the registry is rendered from every
host's members, read from etcd once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			hasNginx := cfg.Nginx != nil || cfg.NginxRenderOnly != nil
			if !haproxy && !hasNginx && cfg.HAProxy != nil {
				haproxy = true
			}
			switch {
			case haproxy && cfg.HAProxy == nil:
				return usage(fmt.Errorf("%s has no [haproxy] table: nothing to render", cfg.File))
			case !haproxy && !hasNginx:
				return usage(fmt.Errorf("%s has no [nginx] table: nothing to render", cfg.File))
			}
			render, names := cfg.RenderNginx, cfg.NginxRegistryUpstreams()
			if haproxy {
				render, names = cfg.RenderHAProxy, slices.Sorted(maps.Keys(cfg.HAProxy.Backend))
			}
			remote, empty, err := supervisor.ReadRemote(cmd.Context(), cfg, names)
			if err != nil {
				return failed(err)
			}
			for _, name := range empty {
				fmt.Fprintf(cmd.ErrOrStderr(), "gosup render: upstream %s has no members in the registry\n", name)
			}
			out, err := render(remote)
			if err != nil {
				return usage(err)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	c.Flags().BoolVar(&haproxy, "haproxy", false, "print the [haproxy] configuration")
	return c
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
func nginxState(st api.NginxStatus) string { return balancerState("nginx", st) }

// balancerState is nginxState for the balancer name (nginx or haproxy).
func balancerState(name string, st api.NginxStatus) string {
	switch {
	case st.OK:
		return "ok"
	case st.NotInstalled:
		return "not installed (the file is written, not checked; checked and " + name + " reloaded once it is there)"
	case st.NotRunning:
		return "not running (the file is written; " + name + " is reloaded once it runs)"
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
