package main

import (
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// ctl info's registry line: the state, since when, the error when
// unreachable, the members and the counts.
func TestRegistryLine(t *testing.T) {
	since := time.Date(2026, 11, 30, 12, 0, 0, 0, time.Local)
	r := api.RegistryStatus{Endpoints: []string{"http://10.0.0.10:2379", "http://10.0.0.11:2379"}, Prefix: "/gosup", Host: "10.0.0.5", TTLS: 10,
		State: "ok", Since: since, Lease: "694d8a1b2c3d4e5f", Published: 4, Down: 1, LeaseGrants: 1}
	want := "ok since 2026-11-30 12:00:00; 4 members published (1 down) as 10.0.0.5 under /gosup, lease 694d8a1b2c3d4e5f (ttl 10s) on http://10.0.0.10:2379, http://10.0.0.11:2379; 0 failed writes, 1 leases granted"
	if have := registryLine(r); have != want {
		t.Errorf("ok:\nhave %s\nwant %s", have, want)
	}
	r.State, r.Error, r.Down, r.FailedWrites = "unreachable", "http://10.0.0.10:2379: connection refused", 0, 3
	want = "UNREACHABLE since 2026-11-30 12:00:00: http://10.0.0.10:2379: connection refused; 4 members published as 10.0.0.5 under /gosup, lease 694d8a1b2c3d4e5f (ttl 10s) on http://10.0.0.10:2379, http://10.0.0.11:2379; 3 failed writes, 1 leases granted"
	if have := registryLine(r); have != want {
		t.Errorf("unreachable:\nhave %s\nwant %s", have, want)
	}
}
