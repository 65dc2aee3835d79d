package config

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosup/gosup/procgroup/pathtrust/pathtrusttest"

	"golang.org/x/sys/unix"
)

const nobody = pathtrusttest.Nobody

const trustConf = "[program.web]\ncommand = \"sleep 1\"\n"

// trustDir is a directory only root can change, for one test.
func trustDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, path, body string, mode os.FileMode, uid, gid int) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	return path
}

func mkdir(t *testing.T, path string, mode os.FileMode, uid, gid int) string {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantRefused loads path as root and wants it refused with an error that
// starts with file (the file refused, which may be an included one) and
// holds each of want; with --insecure-config it loads.
func wantRefused(t *testing.T, path, file string, want ...string) {
	t.Helper()
	_, err := Load(path)
	if err == nil {
		t.Fatalf("%s loaded; want it refused", path)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, file+": ") && !strings.Contains(msg, "\n"+file+": ") {
		t.Errorf("the error does not start with %s:\n%s", file, msg)
	}
	for _, w := range append(want, "gosup runs as root", "--insecure-config") {
		if !strings.Contains(msg, w) {
			t.Errorf("the error lacks %q:\n%s", w, msg)
		}
	}
	if _, err := LoadWith(path, LoadOptions{InsecureFiles: true}); err != nil {
		t.Errorf("with InsecureFiles: %v", err)
	}
}

func wantLoaded(t *testing.T, path string) {
	t.Helper()
	if _, err := Load(path); err != nil {
		t.Errorf("%s refused: %v", path, err)
	}
}

// As root, a configuration file that another user owns, or may write, is
// refused: whoever can change it runs commands as root.
func TestTrustFileOwnerAndMode(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := trustDir(t)
	f := writeFile(t, filepath.Join(dir, "other.toml"), trustConf, 0o644, nobody, 0)
	wantRefused(t, f, f, "owned by uid 65534", "not root", "chown root "+f)

	f = writeFile(t, filepath.Join(dir, "world.toml"), trustConf, 0o666, 0, 0)
	wantRefused(t, f, f, "mode 0666 lets every user write it", "chmod go-w "+f)

	f = writeFile(t, filepath.Join(dir, "group.toml"), trustConf, 0o664, 0, nobody)
	wantRefused(t, f, f, "mode 0664 lets group 65534", "chmod go-w "+f)

	f = writeFile(t, filepath.Join(dir, "both.toml"), trustConf, 0o646, nobody, 0)
	wantRefused(t, f, f, "owned by uid 65534", "mode 0646 lets every user write it", "chown root "+f+" and chmod go-w "+f)

	// Group root may write it, as sudo allows for sudoers.
	wantLoaded(t, writeFile(t, filepath.Join(dir, "rootgroup.toml"), trustConf, 0o664, 0, 0))
	wantLoaded(t, writeFile(t, filepath.Join(dir, "ok.toml"), trustConf, 0o600, 0, 0))
}

// An included file is checked like the main file, and the error names it.
func TestTrustIncludedFile(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := trustDir(t)
	confd := mkdir(t, filepath.Join(dir, "conf.d"), 0o755, 0, 0)
	writeFile(t, filepath.Join(confd, "a.toml"), "[program.a]\ncommand = \"sleep 1\"\n", 0o644, 0, 0)
	bad := writeFile(t, filepath.Join(confd, "b.toml"), "[program.b]\ncommand = \"sleep 1\"\n", 0o644, nobody, nobody)
	main := writeFile(t, filepath.Join(dir, "gosup.toml"), "include = [\"conf.d/*.toml\"]\n"+trustConf, 0o644, 0, 0)
	wantRefused(t, main, bad, "owned by uid 65534")

	// A conf.d others may write: anyone could add a program.
	confd2 := mkdir(t, filepath.Join(dir, "open.d"), 0o777, 0, 0)
	writeFile(t, filepath.Join(confd2, "a.toml"), "[program.a]\ncommand = \"sleep 1\"\n", 0o644, 0, 0)
	main2 := writeFile(t, filepath.Join(dir, "open.toml"), "include = [\"open.d/*.toml\"]\n"+trustConf, 0o644, 0, 0)
	wantRefused(t, main2, filepath.Join(confd2, "a.toml"), "directory "+confd2+" (mode 0777) lets every user replace a.toml", "chmod go-w "+confd2)
}

// Every directory on the way to the file is root's and closed to others:
// the owner of any of them could swap the file.
func TestTrustDirectories(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := trustDir(t)
	owned := mkdir(t, filepath.Join(dir, "owned"), 0o755, nobody, nobody)
	sub := mkdir(t, filepath.Join(owned, "sub"), 0o755, 0, 0)
	f := writeFile(t, filepath.Join(sub, "gosup.toml"), trustConf, 0o644, 0, 0)
	wantRefused(t, f, f, "directory "+owned+" is owned by uid 65534", "chown root "+owned)

	group := mkdir(t, filepath.Join(dir, "group"), 0o775, 0, nobody)
	f = writeFile(t, filepath.Join(group, "gosup.toml"), trustConf, 0o644, 0, 0)
	wantRefused(t, f, f, "directory "+group+" (mode 0775) lets group 65534", "chmod go-w "+group)

	// A sticky directory open to all (/tmp): root's entries in it are safe,
	// another user's are not.
	sticky := mkdir(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky, 0, 0)
	wantLoaded(t, writeFile(t, filepath.Join(sticky, "root.toml"), trustConf, 0o644, 0, 0))
	subdir := mkdir(t, filepath.Join(sticky, "rootdir"), 0o755, 0, 0)
	wantLoaded(t, writeFile(t, filepath.Join(subdir, "gosup.toml"), trustConf, 0o644, 0, 0))
	hisdir := mkdir(t, filepath.Join(sticky, "hisdir"), 0o755, nobody, nobody)
	f = writeFile(t, filepath.Join(hisdir, "gosup.toml"), trustConf, 0o644, 0, 0)
	wantRefused(t, f, f, hisdir+" is owned by uid 65534", "sticky directory "+sticky)
}

// A symlink to a root-owned file is fine; what counts is who can replace
// the link, and the directories on the way to its target.
func TestTrustSymlinks(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := trustDir(t)
	real := mkdir(t, filepath.Join(dir, "real"), 0o755, 0, 0)
	target := writeFile(t, filepath.Join(real, "gosup.toml"), trustConf, 0o644, 0, 0)
	etc := mkdir(t, filepath.Join(dir, "etc"), 0o755, 0, 0)
	link := filepath.Join(etc, "gosup.toml")
	if err := os.Symlink("../real/gosup.toml", link); err != nil {
		t.Fatal(err)
	}
	wantLoaded(t, link)

	// The link in a directory others may write: they could point it elsewhere.
	open := mkdir(t, filepath.Join(dir, "open"), 0o777, 0, 0)
	openLink := filepath.Join(open, "gosup.toml")
	if err := os.Symlink(target, openLink); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, openLink, openLink, "directory "+open+" (mode 0777) lets every user replace gosup.toml")

	// Another user's link in a sticky directory.
	sticky := mkdir(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky, 0, 0)
	hisLink := filepath.Join(sticky, "gosup.toml")
	if err := os.Symlink(target, hisLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(hisLink, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, hisLink, hisLink, hisLink+" is owned by uid 65534")

	// A root link to a file in another user's directory, or to another user's file.
	his := mkdir(t, filepath.Join(dir, "his"), 0o755, nobody, nobody)
	hisFile := writeFile(t, filepath.Join(his, "gosup.toml"), trustConf, 0o644, 0, 0)
	toHis := filepath.Join(etc, "his.toml")
	if err := os.Symlink(hisFile, toHis); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, toHis, toHis, "directory "+his+" is owned by uid 65534")
	other := writeFile(t, filepath.Join(real, "other.toml"), trustConf, 0o644, nobody, 0)
	toOther := filepath.Join(etc, "other.toml")
	if err := os.Symlink("../real/other.toml", toOther); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, toOther, toOther, other+", which it links to, is owned by uid 65534")

	loop := filepath.Join(etc, "loop.toml")
	if err := os.Symlink("loop.toml", loop); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(loop); err == nil || !strings.Contains(err.Error(), "too many levels of symbolic links") {
		t.Errorf("a symlink loop: %v", err)
	}
}

// The nginx template becomes root's nginx configuration: it is checked too.
func TestTrustTemplate(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := trustDir(t)
	tmpl := writeFile(t, filepath.Join(dir, "nginx.tmpl"), "# {{ .Source }}\n", 0o644, nobody, 0)
	conf := "[program.web]\ncommand = \"sleep 1\"\nport_start = 9000\nupstream = \"web\"\n\n[nginx]\noutput = \"nginx.conf\"\ntemplate = \"nginx.tmpl\"\n\n[nginx.upstream.web]\n"
	f := writeFile(t, filepath.Join(dir, "gosup.toml"), conf, 0o644, 0, 0)
	wantRefused(t, f, tmpl, "owned by uid 65534", "chown root "+tmpl)
}

// aclBlob is a system.posix_acl_access value as setfacl writes it:
// version 2, then entries of tag, permission (16 bits each) and id,
// little-endian.
func aclBlob(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

// A POSIX ACL entry that lets another user write the file (here
// u:nobody:rw, so that the mode, -rw-rw-r--+ root root, shows only the
// mask in its group bits), or a directory on the way, is refused, naming
// the ACL; one that lets nobody only read is fine.
func TestTrustACL(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	const (
		userObj, user, groupObj, mask, other = 0x01, 0x02, 0x04, 0x10, 0x20
		undef                                = 0xffffffff
	)
	dir := trustDir(t)
	f := writeFile(t, filepath.Join(dir, "gosup.toml"), trustConf, 0o644, 0, 0)
	set := func(path string, perm uint32) {
		t.Helper()
		acl := aclBlob([3]uint32{userObj, 7, undef}, [3]uint32{user, perm, nobody}, [3]uint32{groupObj, 4, undef}, [3]uint32{mask, 7, undef}, [3]uint32{other, 4, undef})
		if err := unix.Setxattr(path, "system.posix_acl_access", acl, 0); err != nil {
			t.Fatalf("set an ACL on %s: %v", path, err)
		}
	}
	set(f, 4)
	wantLoaded(t, f)
	set(f, 6)
	wantRefused(t, f, f, "its ACL lets uid 65534", "setfacl -b "+f)
	if err := unix.Removexattr(f, "system.posix_acl_access"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	wantLoaded(t, f)
	d := mkdir(t, filepath.Join(dir, "d"), 0o755, 0, 0)
	g := writeFile(t, filepath.Join(d, "gosup.toml"), trustConf, 0o644, 0, 0)
	set(d, 7)
	wantRefused(t, g, g, "directory "+d+" has an ACL that lets uid 65534 (nobody) replace gosup.toml", "setfacl -b "+d)
}
