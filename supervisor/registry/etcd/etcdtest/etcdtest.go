// Package etcdtest runs a real etcd (Debian's etcd-server, /usr/bin/etcd)
// for tests: on 127.0.0.1, on free ports, with its data in a temp dir,
// started and stopped by the test (by pid), optionally with TLS and
// authentication.
package etcdtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Config says what the server offers besides plain HTTP without auth.
type Config struct {
	// TLS: https with a CA made for the test, and client certificates
	// required (Server.CAFile, CertFile, KeyFile are a client's).
	TLS bool
	// AuthTokenTTL is etcd's --auth-token-ttl (how long an unused simple
	// token lives); 0 is etcd's default (5 minutes).
	AuthTokenTTL time.Duration
}

// Server is one etcd member.
type Server struct {
	// Endpoint is the client URL ("http://127.0.0.1:PORT").
	Endpoint string
	// CAFile trusts the server's certificate; CertFile and KeyFile are a
	// client certificate it accepts (Config.TLS only).
	CAFile, CertFile, KeyFile string

	bin, dir, log string
	args          []string
	cmd           *exec.Cmd
	exited        chan struct{}
	tls           *tls.Config
}

// Bin finds etcd. Under CI (CI=true) a missing one fails the test: .ci/run
// installs it. Elsewhere the test is skipped with the way to install it.
func Bin(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("etcd")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("etcd not found; CI must install it (apt-get install etcd-server)")
	}
	t.Skipf("etcd not installed; run `apt-get install etcd-server` to run this test")
	return ""
}

// Start runs a plain etcd and stops it when the test ends.
func Start(t testing.TB) *Server { t.Helper(); return StartWith(t, Config{}) }

// StartWith runs an etcd set up as cfg says and stops it when the test ends.
func StartWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := &Server{bin: Bin(t), dir: t.TempDir()}
	s.log = filepath.Join(s.dir, "etcd.log")
	scheme := "http"
	if cfg.TLS {
		scheme = "https"
		s.makeCerts(t)
	}
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			data, _ := os.ReadFile(s.log)
			if len(data) > 8000 {
				data = data[len(data)-8000:]
			}
			t.Logf("etcd's log (end):\n%s", data)
		}
	})
	// Free ports can be taken between asking and binding: try again
	// with others.
	for attempt := 0; ; attempt++ {
		client, peer := freePort(t), freePort(t)
		s.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, client)
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
		s.args = []string{
			"--name", "t", "--data-dir", filepath.Join(s.dir, "data"),
			"--listen-client-urls", s.Endpoint, "--advertise-client-urls", s.Endpoint,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "t=" + peerURL,
			"--log-outputs", "stderr", "--logger", "zap",
		}
		if cfg.AuthTokenTTL > 0 {
			s.args = append(s.args, "--auth-token-ttl", fmt.Sprint(int(cfg.AuthTokenTTL/time.Second)))
		}
		if cfg.TLS {
			s.args = append(s.args, "--cert-file", filepath.Join(s.dir, "server.pem"),
				"--key-file", filepath.Join(s.dir, "server-key.pem"),
				"--trusted-ca-file", s.CAFile, "--client-cert-auth")
		}
		err := s.start(t)
		if err == nil {
			return s
		}
		os.RemoveAll(filepath.Join(s.dir, "data"))
		if attempt == 2 {
			t.Fatalf("etcd: %v", err)
		}
		t.Logf("etcd did not start (%v): trying other ports", err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs etcd with s.args and waits until it answers.
func (s *Server) start(t testing.TB) error {
	t.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Killed with the test binary (go test's -timeout, a crash), which
	// runs no cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// etcd takes ETCD_* variables as flags: none from the test's
	// environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("etcd: %v", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.cmd = nil
			return fmt.Errorf("exited: %v (log %s)", cmd.ProcessState, s.log)
		default:
		}
		if s.healthy() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop(t)
	return fmt.Errorf("not answering after 60s (log %s)", s.log)
}

func (s *Server) httpClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: s.tls, Proxy: nil}}
}

func (s *Server) healthy() bool {
	c := s.httpClient()
	defer c.CloseIdleConnections()
	resp, err := c.Get(s.Endpoint + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == 200 && bytes.Contains(body, []byte(`"true"`))
}

// Stop ends etcd (SIGTERM, by pid) and waits for it; stopping a stopped
// server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Restart starts a stopped server again, on the same ports with the same
// data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(t); err != nil {
		t.Fatalf("etcd restart: %v", err)
	}
}

// Post sends one gateway request (path "/v3/...", body JSON) with token
// (may be "") and gives the answer's body; a non-200 answer fails the test.
func (s *Server) Post(t testing.TB, path, token string, body any) []byte {
	t.Helper()
	in, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, s.Endpoint+path, bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	c := s.httpClient()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("etcd %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		t.Fatalf("etcd %s: %s: %s", path, resp.Status, out)
	}
	return out
}

// EnableAuth makes user root (password) the only user, with every right,
// and turns authentication on.
func (s *Server) EnableAuth(t testing.TB, password string) {
	t.Helper()
	s.Post(t, "/v3/auth/role/add", "", map[string]string{"name": "root"})
	s.Post(t, "/v3/auth/user/add", "", map[string]string{"name": "root", "password": password})
	s.Post(t, "/v3/auth/user/grant", "", map[string]string{"user": "root", "role": "root"})
	s.Post(t, "/v3/auth/enable", "", map[string]string{})
}

// Compact drops the history before rev.
func (s *Server) Compact(t testing.TB, token string, rev int64) {
	t.Helper()
	s.Post(t, "/v3/kv/compaction", token, map[string]any{"revision": fmt.Sprint(rev), "physical": true})
}

// Keys gives every key under prefix with its value, read straight from
// etcd.
func (s *Server) Keys(t testing.TB, token, prefix string) map[string]string {
	t.Helper()
	end := []byte(prefix)
	end[len(end)-1]++
	out := s.Post(t, "/v3/kv/range", token, map[string]string{
		"key": base64.StdEncoding.EncodeToString([]byte(prefix)), "range_end": base64.StdEncoding.EncodeToString(end),
	})
	var r struct {
		KVs []struct{ Key, Value []byte } `json:"kvs"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("etcd range: %v: %s", err, out)
	}
	m := map[string]string{}
	for _, kv := range r.KVs {
		m[string(kv.Key)] = string(kv.Value)
	}
	return m
}

// makeCerts writes a CA, a server certificate for 127.0.0.1 (also good for
// client auth: etcd's gateway dials etcd with it) and a client
// certificate, in s.dir.
func (s *Server) makeCerts(t testing.TB) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcdtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	s.CAFile = filepath.Join(s.dir, "ca.pem")
	writePEM(t, s.CAFile, "CERTIFICATE", caDER)
	leaf := func(serial int64, cn, file string, usage []x509.ExtKeyUsage) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(s.dir, file+".pem"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(s.dir, file+"-key.pem"), "EC PRIVATE KEY", kder)
	}
	leaf(2, "127.0.0.1", "server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
	leaf(3, "gosup", "client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	s.CertFile = filepath.Join(s.dir, "client.pem")
	s.KeyFile = filepath.Join(s.dir, "client-key.pem")
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	s.tls = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
}

func writePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Pid is etcd's process id (0 when stopped).
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
