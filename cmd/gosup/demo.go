package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// newDemoAppCmd is a tiny web child for examples and tests: GET / answers
// with its port and pid. It exits 0 on TERM, INT or QUIT.
func newDemoAppCmd() *cobra.Command {
	var port int
	var host, gate string
	c := &cobra.Command{
		Use:    "demo-app --port N",
		Short:  "Serve GET / with this process's port and pid (a test child)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port == 0 {
				port, _ = strconv.Atoi(os.Getenv("PORT"))
			}
			if port <= 0 {
				return usage(errors.New("demo-app needs --port N or $PORT"))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
			defer stop()
			if gate != "" {
				// Not ready (not listening) until the gate file exists:
				// tests hold a start in STARTING for as long as they like.
				fmt.Fprintf(cmd.OutOrStdout(), "demo-app waiting for %s\n", gate)
				for {
					if _, err := os.Stat(gate); err == nil {
						break
					}
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return failed(err)
			}
			pid := os.Getpid()
			mux := http.NewServeMux()
			mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "port %d pid %d\n", port, pid)
			})
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "demo-app listening on %s, pid %d\n", ln.Addr(), pid)
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return failed(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "demo-app on port %d stopping\n", port)
			return nil
		},
	}
	c.Flags().IntVar(&port, "port", 0, "TCP port (default $PORT)")
	c.Flags().StringVar(&host, "host", "127.0.0.1", "address to listen on")
	c.Flags().StringVar(&gate, "listen-when", "", "listen only once this file exists (a readiness tests control)")
	return c
}

// newDemoWorkerCmd is a tiny worker child: it logs a line every interval.
func newDemoWorkerCmd() *cobra.Command {
	var every time.Duration
	c := &cobra.Command{
		Use:    "demo-worker",
		Short:  "Log a line every interval until TERM (a test child)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
			defer stop()
			name := os.Getenv("SUPERVISOR_PROCESS_NAME")
			t := time.NewTicker(every)
			defer t.Stop()
			for n := 1; ; n++ {
				fmt.Fprintf(cmd.OutOrStdout(), "%s worker pid %d: job %d done\n", name, os.Getpid(), n)
				select {
				case <-ctx.Done():
					fmt.Fprintf(cmd.OutOrStdout(), "%s worker stopping\n", name)
					return nil
				case <-t.C:
				}
			}
		},
	}
	c.Flags().DurationVar(&every, "interval", 5*time.Second, "time between log lines")
	return c
}
