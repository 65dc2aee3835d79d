package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/supervisor/api"
)

// shortTimeouts makes the control socket give up on idle clients fast.
func shortTimeouts(s *Supervisor) {
	s.hooks.socketTimeouts = &api.Timeouts{ReadHeader: 300 * time.Millisecond, Read: 300 * time.Millisecond, Idle: 300 * time.Millisecond}
}

// sendRaw starts a daemon with short control socket timeouts, connects to
// its socket and sends req as it is; the connection is closed at the end
// of the test.
func sendRaw(t *testing.T, req string) net.Conn {
	t.Helper()
	file := writeConfig(t, program("a", "sleep", 1, ""))
	_, cl, _ := guardedDaemon(t, file, shortTimeouts)
	c, err := net.Dial("unix", cl.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// A keep-alive connection left idle after a request is closed by the
// daemon: the client's next read returns EOF.
func TestIdleControlConnectionIsClosed(t *testing.T) {
	c := sendRaw(t, "GET /v1/info HTTP/1.1\r\nHost: gosup\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %d close=%v %v", resp.StatusCode, resp.Close, err)
	}
	// Idle now; the daemon must close the connection (well before 20 s).
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := br.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: want EOF from the daemon closing it, have %d bytes, %v", n, err)
	}
}

// A connection that sends half a request header and stops is closed too.
func TestSlowRequestHeaderIsCut(t *testing.T) {
	c := sendRaw(t, "GET /v1/info HTTP/1.1\r\nHo")
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("half a header: want the daemon to close the connection, have %q, %v", b, err)
	}
}

// The timeouts bound reading requests, never responses: `ctl tail -f`
// goes on streaming, and a stop that waits out stopwaitsecs answers, long
// after the read and idle timeouts have passed.
func TestControlTimeoutsDoNotCutLongResponses(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "stuck.pid")
	file := writeConfig(t, fmt.Sprintf(chattyConfig, "100MB")+fmt.Sprintf(`
[program.stuck]
command = "@HELPER@ ignore-term %s"
startsecs = 0
stopwaitsecs = 2
%s
`, pidfile, helperEnv))
	_, cl, _ := guardedDaemon(t, file, shortTimeouts)
	waitAll(t, cl, "RUNNING")
	readPidfile(t, pidfile) // SIGTERM is ignored from here on

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tail, _, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"chatty"}, Lines: 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	streamed := make(chan error, 1)
	go func() {
		// chatty writes a line a millisecond: bytes keep coming for 2 s,
		// several times the timeouts, or the stream was cut.
		start := time.Now()
		buf := make([]byte, 4096)
		for time.Since(start) < 2*time.Second {
			if _, err := tail.Read(buf); err != nil {
				streamed <- fmt.Errorf("after %s: %w", time.Since(start).Round(time.Millisecond), err)
				return
			}
		}
		streamed <- nil
	}()

	res, err := cl.Action(context.Background(), "stop", api.ActionRequest{Patterns: []string{"stuck"}})
	if err != nil || len(res) != 1 || !res[0].OK {
		t.Errorf("stop waiting out stopwaitsecs = 2: %+v %v", res, err)
	}
	if err := <-streamed; err != nil {
		t.Errorf("tail -f was cut: %v", err)
	}
	waitState(t, cl, "stuck:stuck", "STOPPED")
}

// A `ctl tail -f` client that stops reading is dropped once a write has
// waited Timeouts.Write: the daemon closes the connection (so the handler
// has ended), logs it, and goes on serving.
func TestTailFollowClientThatStopsReadingIsDropped(t *testing.T) {
	// One process's log as it is (name=), and the tail of several logs,
	// line by line, prefixed (p=): the same bound.
	t.Run("one", func(t *testing.T) {
		testTailDropped(t, "name=chatty", "tail of chatty stdout: the client took no bytes for 500ms; dropped")
	})
	t.Run("many", func(t *testing.T) {
		testTailDropped(t, "p=chatty&prefix=1&timestamps=1", "tail of chatty:chatty (stdout): the client took no bytes for 500ms; dropped")
	})
}

func testTailDropped(t *testing.T, query, logged string) {
	file := writeConfig(t, fmt.Sprintf(chattyConfig, "100MB"))
	_, cl, logs := guardedDaemon(t, file, func(s *Supervisor) {
		s.hooks.socketTimeouts = &api.Timeouts{ReadHeader: 5 * time.Second, Read: 30 * time.Second, Idle: 30 * time.Second, Write: 500 * time.Millisecond}
	})
	waitAll(t, cl, "RUNNING")
	c, err := net.Dial("unix", cl.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	if err := uc.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /v1/tail?"+query+"&stream=stdout&n=10&follow=1 HTTP/1.1\r\nHost: gosup\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read nothing: chatty writes a line a millisecond, the socket's
	// buffers fill, and a write waits. The daemon must close its end
	// (poll sees the hang-up without reading) well within 30 s.
	raw, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var revents int16
	deadline := time.Now().Add(30 * time.Second)
	for revents&(unix.POLLRDHUP|unix.POLLHUP) == 0 {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("a tail -f client that reads nothing was not dropped within 30s (Timeouts.Write = 500ms)")
		}
		var perr error
		if err := raw.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
			if _, perr = unix.Poll(fds, int(left/time.Millisecond)+1); perr == nil {
				revents = fds[0].Revents
			}
		}); err != nil {
			t.Fatal(err)
		}
		if perr != nil && !errors.Is(perr, unix.EINTR) {
			t.Fatal(perr)
		}
	}
	// What the buffers held, then the end of the connection.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("after %d bytes: want the daemon's end closed, have %v", n, err)
	}
	waitLog(t, "the daemon's log of the dropped client", func() bool {
		return strings.Contains(logs.String(), logged)
	})
	// The daemon goes on serving, tails included.
	if _, err := cl.Status(context.Background()); err != nil {
		t.Fatalf("status after dropping a tail client: %v", err)
	}
	tail, _, err := cl.TailLogs(context.Background(), api.TailRequest{Patterns: []string{"chatty"}, Lines: 1})
	if err != nil {
		t.Fatalf("tail after dropping a tail client: %v", err)
	}
	defer tail.Close()
	if b, err := io.ReadAll(tail); err != nil || len(b) == 0 {
		t.Fatalf("tail after dropping a tail client: %q, %v", b, err)
	}
}
