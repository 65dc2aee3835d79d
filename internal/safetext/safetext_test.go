package safetext

import "testing"

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"web:web_01", "web:web_01"},
		{"日本語:プロセス", "日本語:プロセス"},
		{"a\x1b[2Jb\r\n\t\x7f\u0085c", "a?[2Jb?????c"},
		{"web:\u202eevil\u200b\ufeff\u00ad", "web:?evil???"},
		{"bad\xffutf8", "bad\ufffdutf8"},
	} {
		if got := Printable(tc.in, '?'); got != tc.want {
			t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := Printable("a\nb", ' '); got != "a b" {
		t.Errorf("with a space: %q", got)
	}
}
