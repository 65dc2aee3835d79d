package procgroup

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// syslogd is a unix datagram socket standing for the local syslog; it
// counts the messages that reach it.
type syslogd struct {
	conn *net.UnixConn
	got  chan string
}

func listenSyslog(t *testing.T, path string) *syslogd {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &syslogd{conn: conn, got: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case s.got <- string(buf[:n]):
			default: // the test reads only what it needs
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return s
}

// waitMessage waits for a message from the process's stdout.
func (s *syslogd) waitMessage(t *testing.T, what string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-s.got:
			if strings.Contains(m, "tick ") {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no message within 30s", what)
		}
	}
}

// Output sent to syslog that syslog refuses is lost like output a failing
// disk refuses: counted, shown in status as a failing log with the path
// "syslog", WARN once when it starts and INFO once when syslog takes it
// again. The syslog is a real unix datagram socket that goes away (closed
// and removed, as when syslogd stops) and comes back.
func TestSyslogLossIsCountedAndReported(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	sd := listenSyslog(t, sock)
	spec := helperSpec("tick")
	spec.StdoutLogfile = "syslog"
	g, _, logs := guardedPool(t, spec, func(p *Process) { p.out.syslogAddr = sock })
	p := g.Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 10*time.Second)
	sd.waitMessage(t, "syslog up")
	if st := p.Status(); len(st.LogFailing) != 0 || st.StdoutDropped != 0 {
		t.Fatalf("syslog up, yet %+v dropped %d", st.LogFailing, st.StdoutDropped)
	}

	sd.conn.Close() // syslogd stops and its socket is removed
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "syslog shown failing", func() bool {
		st := p.Status()
		return len(st.LogFailing) == 1 && st.LogFailing[0].Path == "syslog" && st.LogFailing[0].Stream == "stdout" &&
			st.LogFailing[0].Dropped > 0 && st.StdoutDropped > 0
	})
	warn := regexp.MustCompile(`level=WARN msg="log write failed[^\n]*stream=stdout path=syslog`)
	waitFor(t, "the WARN line", func() bool { return warn.MatchString(logs.String()) })

	sd = listenSyslog(t, sock) // syslogd back
	sd.waitMessage(t, "syslog back")
	waitFor(t, "syslog shown writable again", func() bool { return len(p.Status().LogFailing) == 0 })
	info := regexp.MustCompile(`level=INFO msg="log writable again"[^\n]*stream=stdout path=syslog dropped_bytes=([1-9][0-9]*)`)
	waitFor(t, "the INFO line", func() bool { return info.MatchString(logs.String()) })
	if n := len(warn.FindAllString(logs.String(), -1)); n != 1 {
		t.Errorf("%d WARN lines for one episode, want 1", n)
	}
	// Every line lost is counted whole, newline included ("tick N\n").
	if d := p.Status().StdoutDropped; d < int64(len("tick 0\n")) {
		t.Errorf("dropped %d bytes", d)
	}
}
