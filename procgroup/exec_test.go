package procgroup

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
)

// portOwner finds the listener among many sockets, over IPv4 and IPv6,
// reading /proc/net/tcp{,6} line by line.
func TestPortOwnerAmongManySockets(t *testing.T) {
	for range 300 { // a table of some 45 KB: many reads of the scanner's buffer
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := "127.0.0.1:0"
		if network == "tcp6" {
			addr = "[::1]:0"
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if pid, comm := portOwner(port); pid != os.Getpid() || comm == "" {
			t.Errorf("%s port %d: owner %d (%q), want this test, pid %d", network, port, pid, comm, os.Getpid())
		}
		ln.Close()
	}
}

// A line longer than maxSocketLine ends the table with an error, not a
// larger buffer; the listeners before it are found.
func TestListenInodesBoundsALine(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	const line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n"
	inodes := map[string]bool{}
	err := listenInodes(strings.NewReader(header+line+strings.Repeat("x", maxSocketLine+1)+"\n"+strings.Replace(line, " 4242 ", " 4243 ", 1)), 0x1F90, inodes)
	if !errors.Is(err, bufio.ErrTooLong) {
		t.Errorf("an overlong line: want %v, have %v", bufio.ErrTooLong, err)
	}
	if !inodes["socket:[4242]"] || len(inodes) != 1 {
		t.Errorf("inodes: %v", inodes)
	}
}
