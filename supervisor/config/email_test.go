package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// emailConfig writes a config whose [email] table ends with body, mode
// perm, and returns its path.
func emailConfig(t *testing.T, body string, perm os.FileMode) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "gosup.toml")
	cfg := "[supervisor]\nsocket = \"/tmp/gs-email-test.sock\"\n[program.web]\ncommand = \"/bin/true\"\n" +
		"[memmon]\nany = \"100MB\"\n[email]\nto = [\"ops@example.com\"]\nsmtp = \"127.0.0.1:587\"\nusername = \"gosup\"\n" + body
	if err := os.WriteFile(file, []byte(cfg), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return file
}

// TestEmailPasswordFile: [email] password_file is a credential file with
// the [http] credential files' checks, read at each load, and never in
// Sources (what an upgrade hands the new image).
func TestEmailPasswordFile(t *testing.T) {
	file := emailConfig(t, "password_file = \"smtp.pass\"\n", 0o644)
	dir := filepath.Dir(file)
	writeSecret(t, dir, "smtp.pass", "# the relay's\nhunter2-but-longer\n", 0o600)
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Email; e.Password != "hunter2-but-longer" || e.PasswordFile != filepath.Join(dir, "smtp.pass") {
		t.Fatalf("email %+v", e)
	}
	if _, ok := cfg.Sources[cfg.Email.PasswordFile]; ok {
		t.Fatal("the password file is in Sources (handed over to the next image)")
	}
	// A config every user may read is no warning: the password is not in it.
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings %v", cfg.Warnings)
	}
	passwordFileRefused(t, file, dir, "smtp.pass", "email.password_file")
	// The refusal names the config's line of the key.
	writeSecret(t, dir, "smtp.pass", "", 0o600)
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), file+":11: email.password_file: ") {
		t.Errorf("an empty password file: %v, want it at %s:11", err, file)
	}
	// Without username the password would never be sent.
	noUser := filepath.Join(t.TempDir(), "gosup.toml")
	if err := os.WriteFile(noUser, []byte("[memmon]\nany = \"100MB\"\n[email]\nto = [\"ops@example.com\"]\nsmtp = \"127.0.0.1:587\"\npassword_file = \"smtp.pass\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(noUser); err == nil || !strings.Contains(err.Error(), noUser+":6: email.password_file: missing: username and password_file go together") {
		t.Errorf("no username: %v", err)
	}
	both := emailConfig(t, "password = \"x\"\npassword_file = \"smtp.pass\"\n", 0o600)
	if _, err := Load(both); err == nil || !strings.Contains(err.Error(), ":12: email.password_file: set password or password_file, not both") {
		t.Errorf("both: %v", err)
	}
}

// TestEmailPasswordInReadableConfigWarns: a password written in a config
// every user may read is a warning naming the file, the line and the key,
// with what to do; the config still loads (a running daemon keeps
// mailing). Readable by root alone, it is no warning.
func TestEmailPasswordInReadableConfigWarns(t *testing.T) {
	file := emailConfig(t, "password = \"hunter2\"\n", 0o644)
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Email.Password != "hunter2" {
		t.Fatalf("email %+v", cfg.Email)
	}
	if len(cfg.Warnings) != 1 {
		t.Fatalf("warnings %v, want one", cfg.Warnings)
	}
	w := cfg.Warnings[0].Error()
	for _, want := range []string{file + ":11: email.password: ", "is mode 0644: every user on this host can read the SMTP password", "a file only gosup's user reads (install -m 600) and name it with password_file", "chmod o-r " + file} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q\nwant %q in it", w, want)
		}
	}
	for _, perm := range []os.FileMode{0o600, 0o640} {
		cfg, err := Load(emailConfig(t, "password = \"hunter2\"\n", perm))
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Warnings) != 0 {
			t.Errorf("mode %04o: warnings %v", perm, cfg.Warnings)
		}
	}
}

// passwordFileRefused checks that the config file, whose key names the
// password file name in dir, refuses the file empty, readable by every
// user, or writable by its group, saying which and what to do.
func passwordFileRefused(t *testing.T, file, dir, name, key string) {
	t.Helper()
	path := filepath.Join(dir, name)
	for _, c := range []struct {
		content string
		perm    os.FileMode
		want    string
	}{
		{"# nothing\n", 0o600, key + ": " + path + " holds no password"},
		{"pw\n", 0o644, key + ": " + path + " holds secrets but is mode 0644 lets every user read it: chmod o-rwx"},
		{"pw\n", 0o660, key + ": " + path + " holds secrets but is mode 0660 lets group"},
	} {
		writeSecret(t, dir, name, c.content, c.perm)
		if _, err := Load(file); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %o: %v\nwant %s", c.content, c.perm, err, c.want)
		}
	}
}
