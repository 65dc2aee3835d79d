package pathtrust

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosup/gosup/procgroup/pathtrust/pathtrusttest"

	"golang.org/x/sys/unix"
)

const nobody = pathtrusttest.Nobody

var rootOnly = Policy{Owners: []uint32{0}, Groups: []uint32{0}}

func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantProblem(t *testing.T, err error, want ...string) {
	t.Helper()
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("want a *Problem saying %q, have %v", want, err)
	}
	for _, w := range want {
		if !strings.Contains(p.Error()+" fix: "+p.Fix, w) {
			t.Errorf("want %q in %q (fix %q)", w, p.Error(), p.Fix)
		}
	}
}

// A symlink in a sticky world-writable directory (/tmp) is an entry
// like any other: owned by another user, who may repoint it, it is
// refused, even when it points at a root-owned directory, and also when
// it dangles; owned by root, it is followed.
func TestSymlinkInStickyDirectory(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := t.TempDir()
	tmp := mkdir(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky)
	rootDir := mkdir(t, filepath.Join(dir, "rootdir"), 0o755)
	for _, tc := range []struct {
		name, target string
		uid          int
	}{
		{"his", rootDir, nobody},
		{"dangling", filepath.Join(dir, "nowhere"), nobody},
		{"roots", rootDir, 0},
	} {
		link := filepath.Join(tmp, tc.name)
		if err := os.Symlink(tc.target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, tc.uid, tc.uid); err != nil {
			t.Fatal(err)
		}
		real, err := Resolve(filepath.Join(link, "s", "gosup.sock"), rootOnly, true)
		if tc.uid == 0 {
			if err != nil || real != filepath.Join(rootDir, "s", "gosup.sock") {
				t.Errorf("%s: root's link: %q, %v", tc.name, real, err)
			}
			continue
		}
		wantProblem(t, err, "the symlink "+link, "uid 65534", "sticky directory "+tmp, "chown -h root "+link)
	}
}

// aclBlob is a system.posix_acl_access value: version 2, then entries.
func aclBlob(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

// setACL writes a real ACL on path (as setfacl does: the xattr, and the
// mode's group bits become the mask).
func setACL(t *testing.T, path string, acl []byte) {
	t.Helper()
	if err := unix.Setxattr(path, aclName, acl, 0); err != nil {
		t.Fatalf("set ACL on %s: %v", path, err)
	}
}

const undef = 0xffffffff

// A named ACL entry that lets another user (or group) write is found,
// masked as the kernel masks it; one for a trusted id, or masked
// read-only, is not.
func TestACLWriters(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		acl  []byte
		want string
	}{
		{"user nobody rw", aclBlob([3]uint32{aclUserObj, 6, undef}, [3]uint32{aclUser, 6, nobody}, [3]uint32{aclGroupObj, 4, undef}, [3]uint32{aclMask, 6, undef}, [3]uint32{aclOther, 4, undef}), "uid 65534"},
		{"group nogroup rw", aclBlob([3]uint32{aclUserObj, 6, undef}, [3]uint32{aclGroupObj, 4, undef}, [3]uint32{aclGroup, 6, nobody}, [3]uint32{aclMask, 6, undef}, [3]uint32{aclOther, 4, undef}), "group 65534"},
		{"user nobody rw, masked r", aclBlob([3]uint32{aclUserObj, 6, undef}, [3]uint32{aclUser, 6, nobody}, [3]uint32{aclGroupObj, 4, undef}, [3]uint32{aclMask, 4, undef}, [3]uint32{aclOther, 4, undef}), ""},
		{"user root rw", aclBlob([3]uint32{aclUserObj, 6, undef}, [3]uint32{aclUser, 6, 0}, [3]uint32{aclGroupObj, 4, undef}, [3]uint32{aclMask, 6, undef}, [3]uint32{aclOther, 4, undef}), ""},
		{"user nobody r", aclBlob([3]uint32{aclUserObj, 6, undef}, [3]uint32{aclUser, 4, nobody}, [3]uint32{aclGroupObj, 4, undef}, [3]uint32{aclMask, 6, undef}, [3]uint32{aclOther, 4, undef}), ""},
	} {
		setACL(t, f, tc.acl)
		fd, err := unix.Open(f, unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		acl, err := FileACL(fd)
		unix.Close(fd)
		if err != nil || len(acl) == 0 {
			t.Fatalf("%s: FileACL: %d bytes, %v", tc.name, len(acl), err)
		}
		w := Writers(&st, acl, rootOnly)
		if tc.want == "" && w.Who != "" || !strings.Contains(w.Who, tc.want) || (w.Who != "" && !w.ACL) {
			t.Errorf("%s: Writers = %+v, want %q", tc.name, w, tc.want)
		}
		if err := unix.Removexattr(f, aclName); err != nil {
			t.Fatal(err)
		}
	}
}

// A directory that an ACL entry lets another user write does not keep
// what is in it: it is refused on the way, naming the ACL.
func TestACLOnDirectory(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := mkdir(t, filepath.Join(t.TempDir(), "d"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(filepath.Join(dir, "f"), rootOnly, false); err != nil {
		t.Fatalf("before the ACL: %v", err)
	}
	setACL(t, dir, aclBlob([3]uint32{aclUserObj, 7, undef}, [3]uint32{aclUser, 7, nobody}, [3]uint32{aclGroupObj, 5, undef}, [3]uint32{aclMask, 7, undef}, [3]uint32{aclOther, 5, undef}))
	_, err := Resolve(filepath.Join(dir, "f"), rootOnly, false)
	wantProblem(t, err, "directory "+dir+" has an ACL that lets uid 65534", "setfacl -b "+dir)
}

// Directories owned by someone outside the policy are refused, naming
// who may own them.
func TestDirectoryOwner(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := mkdir(t, filepath.Join(t.TempDir(), "d"), 0o755)
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	_, err := Resolve(filepath.Join(dir, "f"), Policy{Owners: []uint32{0, 1000}}, true)
	wantProblem(t, err, "directory "+dir+" is owned by uid 65534", "not root or uid 1000")
	if _, err := Resolve(filepath.Join(dir, "f"), Policy{Owners: []uint32{0, nobody}}, true); err != nil {
		t.Errorf("owned by a trusted uid: %v", err)
	}
}

// ACLOf skips the ACL of a file whose mode gives group and others no
// write: the kernel keeps an ACL's mask (and other entry) one with the
// mode's group (and other) bits, so a chmod go-w masks a named writer
// read-only. Checked here against the kernel: what ACLOf skips, Writers
// over the ACL itself clears too, and the walk accepts the directory.
func TestACLOfModeMasksTheACL(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	dir := mkdir(t, filepath.Join(t.TempDir(), "d"), 0o755)
	setACL(t, dir, aclBlob([3]uint32{aclUserObj, 7, undef}, [3]uint32{aclUser, 7, nobody}, [3]uint32{aclGroupObj, 5, undef}, [3]uint32{aclMask, 7, undef}, [3]uint32{aclOther, 5, undef}))
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if acl, err := ACLOf(dir, &st); err != nil || Writers(&st, acl, rootOnly).Who == "" {
		t.Fatalf("with the mask rwx (mode %04o): ACLOf = %d bytes, %v; want nobody's write found", st.Mode&0o7777, len(acl), err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	acl, err := ACL(dir)
	if err != nil || len(acl) == 0 {
		t.Fatalf("after chmod 0755: ACL = %d bytes, %v; want nobody's entry kept", len(acl), err)
	}
	if w := Writers(&st, acl, rootOnly); w.Who != "" {
		t.Errorf("after chmod 0755 the kernel left a writer in the ACL: %+v", w)
	}
	if skipped, err := ACLOf(dir, &st); err != nil || skipped != nil {
		t.Errorf("ACLOf read the ACL of a directory of mode %04o: %d bytes, %v", st.Mode&0o7777, len(skipped), err)
	}
	if _, err := Resolve(filepath.Join(dir, "f"), rootOnly, true); err != nil {
		t.Errorf("after chmod 0755: %v", err)
	}
}
