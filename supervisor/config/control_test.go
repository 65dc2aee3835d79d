package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A control character in a value that reaches a mail header or nginx's
// configuration is refused, with the file, line and key: a line break
// there would start a header (Bcc:) or a directive of its own.
func TestControlCharactersRefused(t *testing.T) {
	for _, c := range []struct {
		name, table, line, key string
		msg                    string // "": control character
	}{
		{"memmon name CRLF", "memmon", `name = "web-3\r\nBcc: victim@example.com"`, "memmon.name", ""},
		{"memmon name tab", "memmon", `name = "web-3\tx"`, "memmon.name", ""},
		{"email to NUL", "email", `to = ["ops@example.com\u0000"]`, "email.to", ""},
		{"email from DEL", "email", `from = "gosup@web-3\u007f"`, "email.from", ""},
		{"email from LF", "email", `from = "gosup@web-3\nBcc: victim@example.com"`, "email.from", ""},
		{"email smtp LF", "email", `smtp = "localhost:25\nRCPT TO:<victim@example.com>"`, "email.smtp", ""},
		{"nginx server_name VT", "nginx.upstream.web", `server_name = "a\u000bb"`, "nginx.upstream.web.server_name", ""},
		{"nginx listen SOH", "nginx.upstream.web", `listen = "80\u0001"`, "nginx.upstream.web.listen", ""},
		{"nginx location C1", "nginx.upstream.web", `location = "/a\u0085b"`, "nginx.upstream.web.location", ""},
		{"nginx host NUL", "nginx.upstream.web", `host = "127.0.0.1\u0000"`, "nginx.upstream.web.host", ""},
		{"nginx balance VT", "nginx.upstream.web", `balance = "hash $a\u000bb"`, "nginx.upstream.web.balance", "invalid balance"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tables := map[string][]string{
				"memmon":             {`any = "100MB"`},
				"email":              {`to = ["ops@example.com"]`, `smtp = "localhost:25"`},
				"nginx.upstream.web": nil,
			}
			// The bad line replaces a good one with the same key.
			key := strings.TrimSpace(strings.SplitN(c.line, "=", 2)[0])
			var kept []string
			for _, l := range tables[c.table] {
				if !strings.HasPrefix(l, key+" ") {
					kept = append(kept, l)
				}
			}
			tables[c.table] = append(kept, c.line)
			var b strings.Builder
			b.WriteString("[program.web]\ncommand = \"sleep 1\"\nport_start = 9000\nupstream = \"web\"\n\n")
			b.WriteString("[nginx]\noutput = \"nginx.conf\"\n\n")
			for _, tb := range []string{"memmon", "email", "nginx.upstream.web"} {
				b.WriteString("[" + tb + "]\n" + strings.Join(tables[tb], "\n") + "\n\n")
			}
			file := filepath.Join(t.TempDir(), "gosup.toml")
			if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(file)
			if err == nil {
				t.Fatalf("loaded a control character in %s:\n%s", c.key, b.String())
			}
			line := 0
			for i, l := range strings.Split(b.String(), "\n") {
				if l == c.line {
					line = i + 1
				}
			}
			want := (&Error{File: file, Line: line, Key: c.key}).Error()
			msg := c.msg
			if msg == "" {
				msg = "control character"
			}
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), msg) {
				t.Errorf("want an error starting %q and saying %s; have\n%v", want, msg, err)
			}
		})
	}
}

// Values of the nginx template's data that no key checks (the
// configuration's file name, the host name) cannot start a line of their
// own in the rendered file.
func TestRenderSourceCannotInject(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a\nlisten 6666;\n.toml")
	conf := "[program.web]\ncommand = \"sleep 1\"\nport_start = 9000\nupstream = \"web\"\n\n[nginx]\noutput = \"nginx.conf\"\n\n[nginx.upstream.web]\n"
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.RenderNginx(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "listen 6666") {
			t.Fatalf("the file name injected a directive:\n%s", out)
		}
	}
	if !strings.Contains(string(out), "a?listen 6666;?.toml") {
		t.Errorf("the file name is not in the comment with '?' for its line breaks:\n%s", out)
	}
}
