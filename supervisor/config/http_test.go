package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// httpConfig writes a configuration with body after a minimal
// [supervisor] and one program, in a directory of its own, and returns
// its path.
func httpConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "gosup.toml")
	cfg := "[supervisor]\nsocket = \"/tmp/gs-http-test.sock\"\n[program.web]\ncommand = \"/bin/true\"\n" + body
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// writeSecret writes a credential file of mode perm in dir.
func writeSecret(t *testing.T, dir, name, content string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func bcryptOf(t *testing.T, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "$2y$" + string(h[4:]) // as htpasswd -B writes it
}

// TestHTTPOffByDefault: no [http] table, or one without listen, is no
// listener.
func TestHTTPOffByDefault(t *testing.T) {
	for _, body := range []string{"", "[http]\nmax_connections = 4\n"} {
		cfg, err := Load(httpConfig(t, body))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.HTTP != nil {
			t.Errorf("%q: HTTP %+v, want nil", body, cfg.HTTP)
		}
	}
}

// TestHTTPListen: what listen accepts, with its defaults, and which need
// a warning (beyond loopback without authentication).
func TestHTTPListen(t *testing.T) {
	cases := []struct {
		listen string
		unix   bool
		warn   bool
	}{
		{"127.0.0.1:9180", false, false},
		{"[::1]:9180", false, false},
		{"localhost:9180", false, false},
		{"0.0.0.0:9180", false, true},
		{":9180", false, true},
		{"192.0.2.7:9180", false, true},
		{"/run/gosup/http.sock", true, false},
	}
	for _, c := range cases {
		cfg, err := Load(httpConfig(t, "[http]\nlisten = \""+c.listen+"\"\n"))
		if err != nil {
			t.Errorf("%s: %v", c.listen, err)
			continue
		}
		h := cfg.HTTP
		if h == nil || h.Listen != c.listen || h.Unix != c.unix || h.MaxConnections != DefaultHTTPMaxConnections || h.Auth() {
			t.Errorf("%s: %+v", c.listen, h)
			continue
		}
		if c.unix && h.SocketPerm() != 0o600 {
			t.Errorf("%s: socket mode %o, want 0600", c.listen, h.SocketPerm())
		}
		warned := false
		for _, w := range cfg.Warnings {
			if w.Key == "http.listen" && w.Line == 6 && strings.Contains(w.Msg, "without authentication") {
				warned = true
			}
		}
		if warned != c.warn {
			t.Errorf("%s: warned %v (%v), want %v", c.listen, warned, cfg.Warnings, c.warn)
		}
	}
	// A unix socket every local user may reach is beyond loopback too.
	cfg, err := Load(httpConfig(t, "[http]\nlisten = \"/run/gosup/http.sock\"\nsocket_mode = \"0666\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Msg, "lets every local user connect") {
		t.Errorf("socket_mode 0666: warnings %v", cfg.Warnings)
	}
	cfg, err = Load(httpConfig(t, "[http]\nlisten = \"/run/gosup/http.sock\"\nsocket_group = \"root\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.SocketPerm() != 0o660 {
		t.Errorf("with socket_group: mode %o, want 0660", cfg.HTTP.SocketPerm())
	}
}

// TestHTTPBadListen: each mistake names the file, the line and the key.
func TestHTTPBadListen(t *testing.T) {
	cases := map[string]string{
		"listen = \"9180\"":                                   `:6: http.listen: want host:port such as "127.0.0.1:9180"`,
		"listen = \"\"":                                       `:6: http.listen: is empty`,
		"listen = \"example.com:9180\"":                       `:6: http.listen: host "example.com" in "example.com:9180" is not an IP address`,
		"listen = \"127.0.0.1:0\"":                            `:6: http.listen: port 0`,
		"listen = \"127.0.0.1:99999\"":                        `:6: http.listen: port "99999": want a number from 1 to 65535`,
		"listen = \"127.0.0.1:http\"":                         `:6: http.listen: port "http"`,
		"listen = \"/tmp/gs-http-test.sock\"":                 `:6: http.listen: /tmp/gs-http-test.sock is the control socket`,
		"listen = \"/" + strings.Repeat("a", 120) + "\"":      `:6: http.listen: path "/aaaa`,
		"listen = \"127.0.0.1:9180\"\nsocket_mode = \"0600\"": `:7: http.socket_mode: applies to a unix socket only`,
		"listen = \"/run/x.sock\"\nsocket_mode = \"rw\"":      `:7: http.socket_mode: `,
		"listen = \"127.0.0.1:9180\"\nmax_connections = 0":    `:7: http.max_connections: must be between 1 and 4096, have 0`,
		"listen = \"127.0.0.1:9180\"\ntoken_fil = 1":          `:7: http.token_fil: unknown key (did you mean "token_file"?)`,
		"listen = \"127.0.0.1:9180\"\ntoken_file = \"nope\"":  `:7: http.token_file: open `,
	}
	for body, want := range cases {
		file := httpConfig(t, "[http]\n"+body+"\n")
		_, err := Load(file)
		if err == nil || !strings.Contains(err.Error(), file+want) {
			t.Errorf("%q: %v\nwant %s%s", body, err, file, want)
		}
	}
}

// TestHTTPCredentials: the htpasswd and token files are read at each
// load; their mistakes name the credential file and its line.
func TestHTTPCredentials(t *testing.T) {
	file := httpConfig(t, "")
	dir := filepath.Dir(file)
	hash := bcryptOf(t, "pw")
	writeSecret(t, dir, "htpasswd", "# users\nprom:"+hash+"\n\nops:"+hash+"\n", 0o600)
	writeSecret(t, dir, "token", "0123456789abcdef0123\nnext-token-0123456789\n", 0o640)
	body := "[supervisor]\nsocket = \"/tmp/gs-http-test.sock\"\n[program.web]\ncommand = \"/bin/true\"\n[http]\nlisten = \"0.0.0.0:9180\"\nbasic_auth_file = \"htpasswd\"\ntoken_file = \"token\"\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.HTTP
	if !h.Auth() || len(h.Users) != 2 || string(h.Users["prom"]) != hash || len(h.Tokens) != 2 || string(h.Tokens[1]) != "next-token-0123456789" {
		t.Fatalf("credentials: %+v", h)
	}
	if h.BasicAuthFile != filepath.Join(dir, "htpasswd") || len(cfg.Warnings) != 0 {
		t.Fatalf("file %s, warnings %v", h.BasicAuthFile, cfg.Warnings)
	}
	if _, ok := cfg.Sources[h.TokenFile]; ok {
		t.Fatal("the token file is in Sources (handed over to the next image)")
	}

	bad := []struct {
		name, htpasswd, token string
		perm                  os.FileMode
		want                  string
	}{
		{"md5", "prom:$apr1$abc$def\n", "0123456789abcdef0123\n", 0o600, "htpasswd:1: http.basic_auth_file: user \"prom\": only bcrypt entries"},
		{"no colon", "# c\nprom\n", "0123456789abcdef0123\n", 0o600, "htpasswd:2: http.basic_auth_file: want user:bcrypt-hash"},
		{"twice", "a:" + hash + "\na:" + hash + "\n", "0123456789abcdef0123\n", 0o600, "htpasswd:2: http.basic_auth_file: user \"a\" appears twice"},
		{"broken hash", "a:$2y$10$short\n", "0123456789abcdef0123\n", 0o600, "htpasswd:1: http.basic_auth_file: user \"a\": not a valid bcrypt hash"},
		{"empty", "# nobody\n", "0123456789abcdef0123\n", 0o600, "http.basic_auth_file: " + dir + "/htpasswd has no user"},
		{"short token", "a:" + hash + "\n", "# t\nshort\n", 0o600, "token:2: http.token_file: token is 5 bytes: want at least 16"},
		{"token space", "a:" + hash + "\n", "0123456789 abcdef0123\n", 0o600, "token:1: http.token_file: token holds ' '"},
		{"world readable", "a:" + hash + "\n", "0123456789abcdef0123\n", 0o644, "http.basic_auth_file: " + dir + "/htpasswd holds secrets but is mode 0644 lets every user read it: chmod o-rwx"},
		{"group writable", "a:" + hash + "\n", "0123456789abcdef0123\n", 0o660, "holds secrets but is mode 0660 lets group"},
	}
	for _, c := range bad {
		writeSecret(t, dir, "htpasswd", c.htpasswd, c.perm)
		writeSecret(t, dir, "token", c.token, 0o600)
		_, err := Load(file)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant %s", c.name, err, c.want)
		}
	}
	// A symlink is refused, even to a good file.
	writeSecret(t, dir, "real", "a:"+hash+"\n", 0o600)
	os.Remove(filepath.Join(dir, "htpasswd"))
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "htpasswd")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "htpasswd is a symlink") {
		t.Errorf("symlink: %v", err)
	}
	// A directory on the way that another user may write (not sticky):
	// whoever may write it may replace the file.
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	writeSecret(t, shared, "htpasswd", "a:"+hash+"\n", 0o600)
	os.Remove(filepath.Join(dir, "htpasswd"))
	if err := os.WriteFile(file, []byte(strings.Replace(body, `basic_auth_file = "htpasswd"`, `basic_auth_file = "shared/htpasswd"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "http.basic_auth_file") || !strings.Contains(err.Error(), shared) {
		t.Errorf("a credential file in a directory others may write: %v", err)
	}
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// --insecure-config accepts a file others can read.
	os.Remove(filepath.Join(dir, "htpasswd"))
	writeSecret(t, dir, "htpasswd", "a:"+hash+"\n", 0o644)
	if _, err := LoadWith(file, LoadOptions{InsecureFiles: true}); err != nil {
		t.Errorf("insecure: %v", err)
	}
	// Authentication silences the warning beyond loopback.
	writeSecret(t, dir, "htpasswd", "a:"+hash+"\n", 0o600)
	if cfg, err := Load(file); err != nil || len(cfg.Warnings) != 0 {
		t.Errorf("with auth beyond loopback: %v %v", err, cfg.Warnings)
	}
}
