package hostaddr

import "testing"

func TestCheck(t *testing.T) {
	for _, h := range []string{"10.0.0.5", "fd00::5", "web-1.example.com", "localhost"} {
		if err := Check(h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	for _, h := range []string{"", "0.0.0.0", "::", "fe80::1%eth0", "a b", "a\nb", "10.0.0.5:80", "x;y", "-a.b", "a..b", "a.b.", "h}"} {
		if err := Check(h); err == nil {
			t.Errorf("%q passed", h)
		}
	}
}
