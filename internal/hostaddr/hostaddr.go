// Package hostaddr checks a host address that goes into other hosts'
// configuration: a published member's host, [registry] host.
package hostaddr

import (
	"fmt"
	"net/netip"
	"strings"
)

// Check checks h: an IP address other hosts can reach (not unspecified,
// no zone) or a host name (RFC 1123 labels), without a port. Nothing it
// passes can end a directive, a word or a line in nginx's or HAProxy's
// configuration.
func Check(h string) error {
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.IsUnspecified() {
			return fmt.Errorf("%q is every address, not one other hosts can reach: write this host's address", h)
		}
		if ip.Zone() != "" {
			return fmt.Errorf("%q: an address with a zone is not one other hosts can reach", h)
		}
		return nil
	}
	bad := fmt.Errorf("%q: want an IP address or a host name (no port: each process's port is added)", h)
	if len(h) > 253 {
		return bad
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return bad
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return bad
			}
		}
	}
	return nil
}
