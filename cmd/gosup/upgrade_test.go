package main

import (
	"context"
	"debug/elf"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"golang.org/x/sys/unix"
)

// buildGosup builds a real gosup binary (not the test binary: an upgrade
// executes it by its path) with version and build tags, into dir.
func buildGosup(tb testing.TB, dir, version string, tags ...string) string {
	tb.Helper()
	bin := filepath.Join(dir, "gosup")
	args := []string{"-ldflags", "-X main.version=" + version, "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	if err := buildStatic("", bin, append(args, "github.com/gosup/gosup/cmd/gosup")...); err != nil {
		tb.Fatal(err)
	}
	return bin
}

// buildStatic is goBuild of bin (args name it with -o), which must come
// out static (checkStatic).
func buildStatic(dir, bin string, args ...string) error {
	if out, err := goBuild(dir, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", bin, err, out)
	}
	return checkStatic(bin)
}

// goBuild is `go build args...` in dir ("": here) as the README builds
// gosup: CGO_ENABLED=0, a static binary. A test's binary is then the one
// operators run, and a benchmark's figures are theirs: with cgo (go
// build's default where a C compiler is) gosup links libc dynamically,
// for the resolver and the user lookups, and a ctl status took 2 ms more.
func goBuild(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

// checkStatic says why bin is not a static executable: one with an
// interpreter (PT_INTERP) is linked dynamically.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is linked dynamically (it has an ELF interpreter): not the README's static build", bin)
		}
	}
	return nil
}

// upgradeDaemon is a real gosup daemon run from a built binary, with n
// sleep children in program sl.
type upgradeDaemon struct {
	cmd    *exec.Cmd
	cl     *api.Client
	log    string // the daemon's own
	logDir string // the children's
	pids   map[string]int
}

func startUpgradeDaemon(t testing.TB, bin string, n int, env ...string) *upgradeDaemon {
	t.Helper()
	return startUpgradeDaemonCmd(t, bin, "sleep 3600", n, env...)
}

// startUpgradeDaemonCmd is startUpgradeDaemon with the children's command.
func startUpgradeDaemonCmd(t testing.TB, bin, command string, n int, env ...string) *upgradeDaemon {
	t.Helper()
	return startUpgradeDaemonConf(t, bin, command, n, "", env...)
}

// startUpgradeDaemonConf is startUpgradeDaemonCmd with more of the
// configuration (tables after the program's).
func startUpgradeDaemonConf(t testing.TB, bin, command string, n int, more string, env ...string) *upgradeDaemon {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "gosup.sock")
	cfg := filepath.Join(dir, "gosup.toml")
	body := fmt.Sprintf(`[supervisor]
socket = %q
logdir = %q
shutdown_timeout = "30s"
[program.sl]
command = %q
numprocs = %d
process_name = "sl_%%(process_num)d"
startsecs = 0
stopsignal = "KILL"
%s`, sock, filepath.Join(dir, "log"), command, n, more)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &upgradeDaemon{cmd: exec.Command(bin, "start", "-c", cfg), cl: api.NewClient(sock), log: filepath.Join(dir, "daemon.log"), logDir: filepath.Join(dir, "log")}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd.Stderr = logf
	d.cmd.Env = append(os.Environ(), env...)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := d.cl.Shutdown(ctx); err != nil {
			_ = d.cmd.Process.Kill()
		}
		_ = d.cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("daemon log:\n%s", b)
		}
	})
	d.pids = d.waitRunning(t, n)
	return d
}

// upgrade asks for an upgrade to the binary the daemon runs, failing the
// test if it is refused, and waits for its outcome.
func (d *upgradeDaemon) upgrade(t testing.TB, ctx context.Context) (api.Info, error) {
	t.Helper()
	reply, err := d.cl.Upgrade(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	return d.cl.WaitUpgrade(ctx, reply)
}

// waitRespawned waits until the process name is RUNNING as another pid
// than old, and returns its status.
func (d *upgradeDaemon) waitRespawned(t testing.TB, name string, old int) api.ProcStatus {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		st, err := d.cl.Status(context.Background(), name)
		if err == nil && len(st) == 1 && st[0].State == "RUNNING" && st[0].Pid != old {
			return st[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not respawned (was pid %d): %+v %v", name, old, st, err)
		}
	}
}

// waitRunning waits until the n processes are RUNNING and returns their pids.
func (d *upgradeDaemon) waitRunning(t testing.TB, n int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := d.cl.Status(context.Background())
		pids := map[string]int{}
		for _, p := range st {
			if p.State == "RUNNING" {
				pids[p.Name] = p.Pid
			}
		}
		if err == nil && len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d RUNNING after a minute: %v %v", len(pids), n, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// notifyListener is a NOTIFY_SOCKET as systemd has it: a datagram socket
// that learns each sender's pid (SO_PASSCRED).
type notifyListener struct {
	conn *net.UnixConn
	path string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return &notifyListener{conn: conn, path: path}
}

// next reads the next message and its sender's pid.
func (l *notifyListener) next(t *testing.T) (string, int) {
	t.Helper()
	buf, oob := make([]byte, 4096), make([]byte, 1024)
	_ = l.conn.SetReadDeadline(time.Now().Add(time.Minute))
	n, oobn, _, _, err := l.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		t.Fatalf("no credentials with the message: %v", err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), int(cred.Pid)
}

// until reads messages until one has the line want, checking that every
// message came from pid; it returns the messages read.
func (l *notifyListener) until(t *testing.T, pid int, want string) []string {
	t.Helper()
	var got []string
	for {
		msg, from := l.next(t)
		if from != pid {
			t.Fatalf("sd_notify message %q from pid %d, not the daemon's %d: systemd would take it for another MAINPID", msg, from, pid)
		}
		got = append(got, msg)
		if slices.Contains(strings.Split(msg, "\n"), want) {
			return got
		}
	}
}

// TestUpgradeKeepsSystemdInformed: systemd hears RELOADING=1 (with
// MONOTONIC_USEC) before the exec and READY=1 from the new image, every
// message from the one pid, which never changes.
func TestUpgradeKeepsSystemdInformed(t *testing.T) {
	bin := buildGosup(t, t.TempDir(), "notify-test")
	nl := listenNotify(t)
	d := startUpgradeDaemon(t, bin, 3, "NOTIFY_SOCKET="+nl.path)
	pid := d.cmd.Process.Pid
	nl.until(t, pid, "READY=1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := d.upgrade(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs := nl.until(t, pid, "RELOADING=1")
	if last := msgs[len(msgs)-1]; !strings.Contains(last, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", last)
	}
	nl.until(t, pid, "READY=1")
	if info.Pid != pid || info.Upgrades != 1 {
		t.Errorf("after the upgrade: pid %d (want %d), upgrades %d (want 1)", info.Pid, pid, info.Upgrades)
	}
	if got := d.waitRunning(t, 3); !maps.Equal(got, d.pids) {
		t.Errorf("children changed across the upgrade: %v, were %v", got, d.pids)
	}
}

// TestCorePanicRescuesEveryChild: a panic injected in a process's owner
// goroutine (the gosup_testhooks build, SIGTTIN) makes the daemon
// re-execute itself; it keeps its pid and every child, and the process
// whose owner panicked is still supervised: killed, it is respawned.
func TestCorePanicRescuesEveryChild(t *testing.T) {
	bin := buildGosup(t, t.TempDir(), "rescue-test", "gosup_testhooks")
	d := startUpgradeDaemon(t, bin, 3, "GOSUP_TEST_PANIC=sl:sl_1")
	pid := d.cmd.Process.Pid
	if err := d.cmd.Process.Signal(syscall.SIGTTIN); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var info api.Info
	for info.Rescues == 0 {
		var err error
		if info, err = d.cl.Info(ctx); err != nil {
			t.Fatalf("the daemon did not answer after the panic: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if info.Pid != pid || info.Rescues != 1 {
		t.Fatalf("after the rescue: pid %d (want %d), rescues %d (want 1)", info.Pid, pid, info.Rescues)
	}
	if got := d.waitRunning(t, 3); !maps.Equal(got, d.pids) {
		t.Fatalf("children changed across the rescue: %v, were %v", got, d.pids)
	}
	old := d.pids["sl:sl_1"]
	if err := unix.Kill(old, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := d.waitRespawned(t, "sl:sl_1", old); st.Restarts != 1 {
		t.Errorf("sl:sl_1 after the rescue: restarts %d, want 1", st.Restarts)
	}
}

// TestExitInHandoverWindowIsNotLost: a child that dies after the old image
// stopped reaping and before the exec (the gosup_testhooks build kills it
// there and waits for the zombie) is reaped by the new image, which
// applies the restart policy: it is respawned; the others are untouched.
func TestExitInHandoverWindowIsNotLost(t *testing.T) {
	bin := buildGosup(t, t.TempDir(), "window-test", "gosup_testhooks")
	d := startUpgradeDaemon(t, bin, 3, "GOSUP_TEST_KILL_BEFORE_EXEC=sl:sl_2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.upgrade(t, ctx); err != nil {
		t.Fatal(err)
	}
	// The new image reaps the exit and respawns sl:sl_2 (after the
	// backoff of a crash); the others keep their pids.
	if st := d.waitRespawned(t, "sl:sl_2", d.pids["sl:sl_2"]); st.Restarts != 1 {
		t.Errorf("sl:sl_2 after its exit in the handover window: restarts %d, want 1", st.Restarts)
	}
	got := d.waitRunning(t, 3)
	for name, pid := range d.pids {
		if name != "sl:sl_2" && got[name] != pid {
			t.Errorf("%s: pid %d, was %d", name, got[name], pid)
		}
	}
	log, _ := os.ReadFile(d.log)
	if !strings.Contains(string(log), "test hook: killing a child in the handover window") || strings.Contains(string(log), "did not become a zombie") {
		t.Fatalf("the hook did not kill the child in the window:\n%s", log)
	}
}

// TestSIGUSR2UpgradesFromTheStartedPath: SIGUSR2 upgrades, as for nginx,
// from the path the daemon was started as: after a package manager renamed
// a new file over it, that is the new binary (not /proc/self/exe, the
// deleted old one).
func TestSIGUSR2UpgradesFromTheStartedPath(t *testing.T) {
	dir := t.TempDir()
	v1 := buildGosup(t, t.TempDir(), "usr2-v1")
	v2 := buildGosup(t, t.TempDir(), "usr2-v2")
	bin := filepath.Join(dir, "gosup")
	copyFile(t, v1, bin)
	d := startUpgradeDaemon(t, bin, 2)
	tmp := filepath.Join(dir, ".gosup.new")
	copyFile(t, v2, tmp)
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := d.cl.WaitUpgrade(ctx, api.UpgradeReply{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "usr2-v2" || info.UpgradedFrom != "usr2-v1" || info.Binary != bin || info.Pid != d.cmd.Process.Pid {
		t.Errorf("after SIGUSR2: version %q from %q, binary %q, pid %d; want usr2-v2 from usr2-v1, %s, %d", info.Version, info.UpgradedFrom, info.Binary, info.Pid, bin, d.cmd.Process.Pid)
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", info.Pid)); err != nil || exe != bin {
		t.Errorf("/proc/%d/exe is %q (%v), want the new file %s", info.Pid, exe, err, bin)
	}
	if got := d.waitRunning(t, 2); !maps.Equal(got, d.pids) {
		t.Errorf("children changed across the upgrade: %v, were %v", got, d.pids)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestFailedExecUndoesEverything: an upgrade that fails after everything
// was frozen (a gosup_testhooks hook replaces the binary just before the
// exec, which the last check refuses) leaves the daemon as it was: ctl
// upgrade says why, info counts the failure, systemd hears READY=1 again,
// every child keeps its pid and its output reaches its log with no line
// lost or doubled, a crash is respawned (reaping goes on), and the next
// upgrade goes through (the locks, the socket and its watch are back).
func TestFailedExecUndoesEverything(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "gosup")
	copyFile(t, buildGosup(t, t.TempDir(), "undo-test", "gosup_testhooks"), bin)
	flag := filepath.Join(dir, "fail-once")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	nl := listenNotify(t)
	counter := `i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.002; done`
	d := startUpgradeDaemonCmd(t, bin, "/bin/sh -c '"+counter+"'", 2, "NOTIFY_SOCKET="+nl.path, "GOSUP_TEST_REPLACE_BEFORE_EXEC="+flag)
	pid := d.cmd.Process.Pid
	nl.until(t, pid, "READY=1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := d.upgrade(t, ctx)
	if err == nil || !strings.Contains(err.Error(), "replaced after its check") {
		t.Fatalf("upgrade with the binary replaced before the exec: %v, want it failed as replaced after its check", err)
	}
	if info.Upgrades != 0 || info.UpgradeFailures != 1 || info.Pid != pid {
		t.Errorf("after the failed upgrade: upgrades %d, failures %d, pid %d; want 0, 1, %d", info.Upgrades, info.UpgradeFailures, info.Pid, pid)
	}
	nl.until(t, pid, "RELOADING=1")
	nl.until(t, pid, "READY=1")
	if got := d.waitRunning(t, 2); !maps.Equal(got, d.pids) {
		t.Fatalf("children changed across the failed upgrade: %v, were %v", got, d.pids)
	}
	// The copiers were resumed: the log grows on, every line once.
	logf := filepath.Join(d.logDir, "sl_0.stdout.log")
	grown := func(n int) bool {
		b, _ := os.ReadFile(logf)
		return strings.Count(string(b), "\n") > n
	}
	b, _ := os.ReadFile(logf)
	before := strings.Count(string(b), "\n")
	for deadline := time.Now().Add(time.Minute); !grown(before + 50); {
		if time.Now().After(deadline) {
			t.Fatalf("%s stopped growing after the failed upgrade (%d lines)", logf, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Reaping goes on.
	old := d.pids["sl:sl_1"]
	if err := unix.Kill(old, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitRespawned(t, "sl:sl_1", old)
	// And the next upgrade goes through.
	if info, err = d.upgrade(t, ctx); err != nil || info.Upgrades != 1 {
		t.Fatalf("the upgrade after the failed one: %+v, %v", info, err)
	}
	b, _ = os.ReadFile(logf)
	var want int
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line != fmt.Sprintf("line %d", i+1) {
			t.Fatalf("%s line %d is %q: a line lost or doubled", logf, i+1, line)
		}
		want = i + 1
	}
	if want < before+50 {
		t.Fatalf("%s has %d lines", logf, want)
	}
}

// TestUpgradeReturnsOnceServing: `gosup ctl upgrade` returns only once the
// new image serves in full, so a second upgrade right after it is not
// refused as "still starting" (upgrade_many failed so: WaitUpgrade took
// the new image's first answer, sent before it served, for the end). The
// test hook makes the new image take a second between answering and
// serving.
func TestUpgradeReturnsOnceServing(t *testing.T) {
	bin := buildGosup(t, t.TempDir(), "v-serving", "gosup_testhooks")
	d := startUpgradeDaemon(t, bin, 2, "GOSUP_TEST_SERVING_DELAY=1s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The first start is held too: wait until it serves.
	for info, err := d.cl.Info(ctx); err != nil || info.State != "running"; info, err = d.cl.Info(ctx) {
		if ctx.Err() != nil {
			t.Fatalf("the daemon never ran: %+v, %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 2 {
		info, err := d.upgrade(t, ctx)
		if err != nil || info.Upgrades != i+1 || info.State != "running" {
			t.Fatalf("upgrade %d: %+v, %v; want upgrades %d, state running", i+1, info, err, i+1)
		}
	}
}
