package safefile

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

// mkdir makes base/name with mode, owned by uid.
func mkdir(t *testing.T, base, name string, mode os.FileMode, uid int) string {
	t.Helper()
	d := filepath.Join(base, name)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, uid, uid); err != nil {
		t.Fatal(err)
	}
	return d
}

// setUserWriteACL gives uid a POSIX ACL entry that lets it write path
// (the xattr setfacl -m u:UID:rwx writes; the mode's group bits are the
// mask).
func setUserWriteACL(t *testing.T, path string, uid uint32) {
	t.Helper()
	const undef = 0xffffffff
	acl := binary.LittleEndian.AppendUint32(nil, 2) // version
	for _, e := range [][3]uint32{{0x01, 7, undef}, {0x02, 7, uid}, {0x04, 5, undef}, {0x10, 7, undef}, {0x20, 5, undef}} {
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[0])) // tag: user_obj, user, group_obj, mask, other
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[1]))
		acl = binary.LittleEndian.AppendUint32(acl, e[2])
	}
	if err := unix.Setxattr(path, "system.posix_acl_access", acl, 0); err != nil {
		t.Fatalf("set ACL on %s: %v", path, err)
	}
}

func TestDirRule(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	base := t.TempDir()
	mine := mkdir(t, base, "mine", 0o755, 0)
	his := mkdir(t, base, "his", 0o755, nobody)
	world := mkdir(t, base, "world", 0o777, 0)
	group := mkdir(t, base, "group", 0o775, 0)
	if err := os.Chown(group, 0, nobody); err != nil {
		t.Fatal(err)
	}
	rootGroup := mkdir(t, base, "rootgroup", 0o775, 0)
	sticky := mkdir(t, base, "sticky", 0o777|os.ModeSticky, 0)
	hisInSticky := mkdir(t, sticky, "his", 0o755, nobody)
	mineInSticky := mkdir(t, sticky, "mine", 0o755, 0)
	underHis := mkdir(t, his, "sub", 0o755, 0)
	linkToHis := filepath.Join(mine, "tohis")
	if err := os.Symlink(his, linkToHis); err != nil {
		t.Fatal(err)
	}
	hisLink := filepath.Join(sticky, "hislink")
	if err := os.Symlink(mine, hisLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(hisLink, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	hisLinkInMine := filepath.Join(mine, "hislink")
	if err := os.Symlink(rootGroup, hisLinkInMine); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(hisLinkInMine, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	aclDir := mkdir(t, base, "acl", 0o775, 0)
	mkdir(t, aclDir, "sub", 0o755, 0)
	setUserWriteACL(t, aclDir, nobody)
	for _, c := range []struct {
		dir     string
		program int
		want    string // "" accepted, else a part of the refusal
	}{
		{mine, NoUser, ""},
		{rootGroup, NoUser, ""},
		{sticky, NoUser, ""},
		{mineInSticky, NoUser, ""},
		{filepath.Join(mine, "new", "deeper"), NoUser, ""},
		{his, NoUser, "directory " + his + " is owned by uid 65534 (nobody), mode 0755"},
		{his, nobody, ""}, // the program's own log directory
		{underHis, nobody, "directory " + his + " is owned by uid 65534 (nobody)"},
		{world, NoUser, "directory " + world + " is writable by every user (owner uid 0 (root), mode 0777)"},
		{group, NoUser, "is writable by group 65534 (nogroup)"},
		{hisInSticky, NoUser, "is owned by uid 65534 (nobody) in the sticky directory " + sticky},
		// In a sticky directory its owner may rename the program's
		// directory and put a symlink in its place: not its to own.
		{hisInSticky, nobody, "is owned by uid 65534 (nobody) in the sticky directory " + sticky},
		{linkToHis, NoUser, "directory " + his + " is owned by uid 65534 (nobody)"},
		{hisLink, NoUser, "the symlink " + hisLink + " is owned by uid 65534 (nobody) in the sticky directory " + sticky},
		// A symlink of another user's in a directory only root may
		// write cannot be repointed or replaced: it is followed.
		{hisLinkInMine, NoUser, ""},
		{aclDir, NoUser, "directory " + aclDir + " has an ACL that lets uid 65534 (nobody) write it"},
		{filepath.Join(aclDir, "sub"), NoUser, "directory " + aclDir + " has an ACL that lets uid 65534 (nobody) replace sub"},
	} {
		err := Dir(c.dir, c.program, true)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s (program %d): refused: %v", c.dir, c.program, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s (program %d): want a refusal saying %q, have %v", c.dir, c.program, c.want, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(mine, "new", "deeper")); err != nil || !fi.IsDir() {
		t.Errorf("missing directories not made: %v", err)
	}
}

// A file someone else owns in a sticky directory (/tmp) is not appended
// to; one owned by the program's user is.
func TestOpenAppendFileOwner(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	sticky := mkdir(t, t.TempDir(), "sticky", 0o777|os.ModeSticky, 0)
	f := filepath.Join(sticky, "app.log")
	if err := os.WriteFile(f, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAppend(f, NoUser); err == nil || !strings.Contains(err.Error(), "owned by uid 65534 (nobody)") {
		t.Errorf("appended to another user's file in a sticky directory: %v", err)
	}
	w, err := OpenAppend(f, nobody)
	if err != nil {
		t.Fatalf("the program's own file: %v", err)
	}
	w.Close()
}
