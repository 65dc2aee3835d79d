package main

import (
	"cmp"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
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
					fmt.Fprintf(tw, "%s\t%s\t%s\n", ps.FullName(), port, shellJoin(ps.Argv))
					n++
				}
			}
			tw.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid, %d programs, %d processes\n", cfg.File, len(cfg.Programs), n)
			// What is valid but will not work here: on stderr, as
			// import's warnings; the file is still valid (exit 0).
			for _, w := range checkWarnings(cfg) {
				fmt.Fprintln(cmd.ErrOrStderr(), w)
			}
			if n := cmp.Or(cfg.Nginx, cfg.NginxRenderOnly); n != nil {
				servers := 0
				for _, p := range cfg.Programs {
					if p.Spec.Upstream != "" {
						servers += len(p.Procs)
					}
				}
				if n.Output != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "nginx: %d upstreams, %d servers, rendered to %s (see gosup render)\n", len(n.Upstream), servers, n.Output)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "nginx: %d upstreams, %d servers; no output: gosup render prints them, the daemon writes no file and reloads no nginx\n", len(n.Upstream), servers)
				}
			}
			if h := cfg.HTTP; h != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "http: read-only listener on %s (auth %s; at most %d connections): /metrics, /, /status.json, /healthz\n", h.Listen, h.AuthText(), h.MaxConnections)
			}
			if r := cfg.Registry; r != nil {
				members := 0
				for _, p := range cfg.Programs {
					if p.Spec.Upstream != "" {
						members += len(p.Procs)
					}
				}
				if r.Host != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "registry: publishes %d upstream members as %s under %s/upstreams/ (lease ttl %s) to %s\n", members, r.Host, r.Prefix, r.TTL, strings.Join(r.Endpoints, ", "))
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "registry: %s under %s; publishes nothing (no host)\n", strings.Join(r.Endpoints, ", "), r.Prefix)
				}
				if names := cfg.RegistryUpstreams(); len(names) > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "registry: renders every host's members of %s, watched (etcd not asked now)\n", strings.Join(names, ", "))
				}
			}
			if h := cfg.HAProxy; h != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "haproxy: %d backends, rendered to %s (see gosup render --haproxy)\n", len(h.Backend), h.Output)
			}
			return nil
		},
	}
}

var shellSafe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`) })

// shellJoin prints argv so that it splits back into the same words:
// an argument with spaces or quotes is single-quoted.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if shellSafe().MatchString(a) {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
