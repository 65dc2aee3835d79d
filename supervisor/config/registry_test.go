package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// regConfig writes a configuration whose program web joins upstream web
// (no [nginx]: the registry is where it goes), with body after it.
func regConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "gosup.toml")
	cfg := "[supervisor]\nsocket = \"/tmp/gs-reg-test.sock\"\n[program.web]\ncommand = \"/bin/true\"\nport_start = 9100\nupstream = \"web\"\n" + body
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestRegistryDefaults: a [registry] with endpoints and host publishes
// under /gosup with a 10s lease; a program's upstream needs no [nginx]
// then.
func TestRegistryDefaults(t *testing.T) {
	cfg, err := Load(regConfig(t, "[registry]\netcd = [\"http://127.0.0.1:2379/\", \"https://etcd2:2379\"]\nhost = \"10.0.0.5\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Registry
	if r == nil || r.Prefix != "/gosup" || r.TTL != 10*time.Second || r.Host != "10.0.0.5" ||
		strings.Join(r.Endpoints, " ") != "http://127.0.0.1:2379 https://etcd2:2379" || len(cfg.Warnings) != 0 {
		t.Fatalf("registry %+v, warnings %v", r, cfg.Warnings)
	}
	if tc, err := r.TLS(); tc != nil || err != nil {
		t.Errorf("TLS without ca/cert: %v %v", tc, err)
	}
	cfg, err = Load(regConfig(t, "[registry]\netcd = [\"http://127.0.0.1:2379\"]\nhost = \"fd00::5\"\nprefix = \"/fleet/a/\"\nttl = \"30s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Registry.Prefix != "/fleet/a" || cfg.Registry.TTL != 30*time.Second {
		t.Errorf("registry %+v", cfg.Registry)
	}
	// Without [registry], an upstream still needs [nginx].
	file := filepath.Join(t.TempDir(), "gosup.toml")
	os.WriteFile(file, []byte("[program.web]\ncommand = \"/bin/true\"\nport_start = 9100\nupstream = \"web\"\n"), 0o644)
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "needs an [nginx] table") {
		t.Errorf("upstream without [nginx] or [registry]: %v", err)
	}
}

// TestRegistryBad: each mistake names the file, the line and the key.
func TestRegistryBad(t *testing.T) {
	ok := "etcd = [\"http://127.0.0.1:2379\"]\nhost = \"10.0.0.5\"\n"
	cases := map[string]string{
		"host = \"10.0.0.5\"":                         `:7: registry.etcd: missing`,
		"etcd = [\"127.0.0.1:2379\"]\nhost = \"h\"":   `:8: registry.etcd: endpoint "127.0.0.1:2379": want http://HOST:PORT`,
		"etcd = [\"http://e:2379/v3\"]\nhost = \"h\"": `:8: registry.etcd: endpoint "http://e:2379/v3"`,
		"etcd = [\"http://e\"]\nhost = \"h\"":         `:8: registry.etcd: endpoint "http://e"`,
		// The host is required to publish: the error points at [registry].
		"etcd = [\"http://127.0.0.1:2379\"]":                     `:7: registry.host: missing: program "web" has upstream = "web"`,
		"etcd = [\"http://127.0.0.1:2379\"]\nhost = \"\"":        `:9: registry.host: is empty`,
		"etcd = [\"http://127.0.0.1:2379\"]\nhost = \"h:80\"":    `:9: registry.host: "h:80": want an IP address or a host name (no port`,
		"etcd = [\"http://127.0.0.1:2379\"]\nhost = \"0.0.0.0\"": `:9: registry.host: "0.0.0.0" is every address`,
		ok + "ttl = \"2s\"":                                  `:10: registry.ttl: must be whole seconds from 3s to 1h0m0s, have 2s`,
		ok + "ttl = \"3500ms\"":                              `:10: registry.ttl: must be whole seconds`,
		ok + "prefix = \"gosup\"":                            `:10: registry.prefix: "gosup": want a key path`,
		ok + "prefix = \"/\"":                                `:10: registry.prefix: "/": want a key path`,
		ok + "cert = \"c.pem\"":                              `:7: registry.key: missing: cert and key go together`,
		ok + "username = \"root\"":                           `:7: registry.password_file: missing: username and password_file go together`,
		ok + "ca = \"nope.pem\"":                             `:10: registry.ca: open `,
		ok + "tl = \"10s\"":                                  `:10: registry.tl: unknown key (did you mean "ttl"?)`,
		ok + "password_file = \"nope\"\nusername = \"root\"": `:10: registry.password_file: open `,
	}
	for body, want := range cases {
		file := regConfig(t, "[registry]\n"+body+"\n")
		_, err := Load(file)
		if err == nil || !strings.Contains(err.Error(), file+want) {
			t.Errorf("%q: %v\nwant %s%s", body, err, file, want)
		}
	}
	// Without a program in an upstream, a registry needs no host (a host
	// that only reads it).
	file := filepath.Join(t.TempDir(), "gosup.toml")
	os.WriteFile(file, []byte("[program.w]\ncommand = \"/bin/true\"\n[registry]\netcd = [\"http://127.0.0.1:2379\"]\n"), 0o644)
	if cfg, err := Load(file); err != nil || cfg.Registry.Host != "" {
		t.Errorf("no upstream, no host: %v", err)
	}
}

// TestRegistryPasswordFile: the password file is a credential file, with
// the [http] credential files' checks, read at each load and never put
// in Sources.
func TestRegistryPasswordFile(t *testing.T) {
	file := regConfig(t, "[registry]\netcd = [\"http://10.0.0.10:2379\"]\nhost = \"10.0.0.5\"\nusername = \"gosup\"\npassword_file = \"etcd.pass\"\n")
	dir := filepath.Dir(file)
	writeSecret(t, dir, "etcd.pass", "# etcd\nhunter2-but-longer\n", 0o600)
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Registry
	if r.Username != "gosup" || r.Password != "hunter2-but-longer" || r.PasswordFile != filepath.Join(dir, "etcd.pass") {
		t.Fatalf("registry %+v", r)
	}
	if _, ok := cfg.Sources[r.PasswordFile]; ok {
		t.Fatal("the password file is in Sources (handed over to the next image)")
	}
	// A password sent over plain http beyond loopback is a warning.
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Key != "registry.etcd" || !strings.Contains(cfg.Warnings[0].Msg, "plain http beyond loopback") {
		t.Errorf("warnings %v", cfg.Warnings)
	}
	passwordFileRefused(t, file, dir, "etcd.pass", "registry.password_file")
	writeSecret(t, dir, "real", "pw\n", 0o600)
	os.Remove(filepath.Join(dir, "etcd.pass"))
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "etcd.pass")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "etcd.pass is a symlink") {
		t.Errorf("symlink: %v", err)
	}
}
