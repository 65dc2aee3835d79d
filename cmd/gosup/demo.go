package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// newDemoAppCmd is a tiny web child for examples and tests: GET / answers
// with its port and pid, GET /grow?mb=N makes it hold N MB more (touched,
// so resident: a leak for memmon to find). It exits 0 on TERM, INT or QUIT.
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
			var mu sync.Mutex
			var held [][]byte
			mux.HandleFunc("GET /grow", func(w http.ResponseWriter, r *http.Request) {
				mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
				mu.Lock()
				defer mu.Unlock()
				if err != nil || mb <= 0 || mb > maxGrowMB-len(held) { // not len(held)+mb: that wraps round
					http.Error(w, fmt.Sprintf("want mb=N, 1 to %d in all; holding %d MB", maxGrowMB, len(held)), http.StatusBadRequest)
					return
				}
				// Reserved first, touched only once the answer and the log
				// line are out: memmon, which may restart the child as soon
				// as the memory is resident, never cuts them off (on a slow
				// machine touching 300 MB outlasts memmon's two samples).
				grown := make([][]byte, mb)
				for i := range grown {
					grown[i] = make([]byte, 1<<20)
				}
				held = append(held, grown...)
				fmt.Fprintf(w, "port %d pid %d holds %d MB more, %d MB in all\n", port, pid, mb, len(held))
				fmt.Fprintf(cmd.OutOrStdout(), "demo-app on port %d: holding %d MB more, %d MB in all\n", port, mb, len(held))
				go func() {
					for _, b := range grown {
						for i := 0; i < len(b); i += 4096 {
							b[i] = 1 // touch every page: resident, not just reserved
						}
					}
				}()
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

// maxGrowMB bounds what a demo-app holds for /grow, all requests together.
const maxGrowMB = 2048

// newDemoGrowCmd asks the demo-app on a port to hold more memory (GET
// /grow?mb=N) and prints its answer: the quick start's way to trigger a
// memory alert with nothing but gosup installed.
func newDemoGrowCmd() *cobra.Command {
	var port, mb int
	var host string
	c := &cobra.Command{
		Use:    "demo-grow --port N [--mb MB]",
		Short:  "Make the demo-app on a port hold MB more memory (to trigger memmon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port <= 0 {
				return usage(errors.New("demo-grow needs --port N"))
			}
			hc := &http.Client{Timeout: 30 * time.Second}
			resp, err := hc.Get(fmt.Sprintf("http://%s/grow?mb=%d", net.JoinHostPort(host, strconv.Itoa(port)), mb))
			if err != nil {
				return failed(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if err != nil {
				return failed(err)
			}
			if resp.StatusCode != http.StatusOK {
				return failed(fmt.Errorf("demo-app on port %d: %s: %s", port, resp.Status, strings.TrimSpace(string(body))))
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}
	c.Flags().IntVar(&port, "port", 0, "the demo-app's TCP port")
	c.Flags().IntVar(&mb, "mb", 300, "megabytes more to hold")
	c.Flags().StringVar(&host, "host", "127.0.0.1", "the demo-app's address")
	return c
}

// maxMailBytes bounds one message demo-sendmail takes: an alert is a few KiB
// (64 KiB of logs at most).
const maxMailBytes = 1 << 20

// newDemoSendmailCmd is a sendmail for the quick start: it appends the
// message on its stdin to an mbox file (a "From " line, the message with
// its body's "From " lines quoted, a blank line), so alerts can be read
// with nothing else installed. A message over 1 MiB is refused, and
// nothing is appended.
func newDemoSendmailCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "demo-sendmail MBOX [sendmail flags ignored]",
		Short:  "Append the message on stdin to an mbox file (a sendmail for the quick start)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		// sendmail's own flags (-t, -i) may follow: they are not ours.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			msg, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxMailBytes+1))
			if err != nil {
				return failed(fmt.Errorf("read the message: %w", err))
			}
			if len(msg) > maxMailBytes {
				return failed(fmt.Errorf("message over %d bytes: not delivered", maxMailBytes))
			}
			var b bytes.Buffer
			fmt.Fprintf(&b, "From gosup %s\n", time.Now().UTC().Format("Mon Jan _2 15:04:05 2006"))
			for line := range strings.Lines(strings.ReplaceAll(string(msg), "\r\n", "\n")) {
				if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
					b.WriteByte('>')
				}
				b.WriteString(line)
			}
			if !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
				b.WriteByte('\n')
			}
			b.WriteByte('\n')
			if err := os.MkdirAll(filepath.Dir(args[0]), 0o755); err != nil {
				return failed(err)
			}
			f, err := openMbox(args[0])
			if err != nil {
				return failed(err)
			}
			// One write: a reader never sees half a message.
			if _, err := f.Write(b.Bytes()); err != nil {
				f.Close()
				return failed(err)
			}
			if err := f.Close(); err != nil {
				return failed(err)
			}
			return nil
		},
	}
}

// openMbox opens path to append to, creating it (0600) if need be. It runs
// as the daemon's user, often root, so it never follows a symlink at path
// (one another user planted would make it append to any file), and appends
// only to a regular file: a FIFO or a device is refused at once, not
// waited on.
func openMbox(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s: a symbolic link, not followed: give the mbox's own path", path)
	}
	if errors.Is(err, syscall.ENXIO) {
		// A FIFO without a reader.
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())
	}
	return f, nil
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
