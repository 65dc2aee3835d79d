// Package safetext makes text from elsewhere (a process name, a host
// name, a file name, what a daemon answers) safe to show or write where a
// control character would act: a terminal, an nginx configuration, a mail
// header. It depends on nothing in gosup, so that every package may
// import it.
package safetext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Unsafe says whether r must not be shown as it is: a control character
// (C0 including tab and newline, DEL, C1: an escape sequence drives a
// terminal, a newline starts a header or a directive) or a format
// character (Unicode category Cf: a bidi override such as U+202E reverses
// the text after it, a zero-width space hides in a name).
func Unsafe(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// Printable returns s with each rune Unsafe says is unsafe replaced by
// with, and each byte that is not UTF-8 by U+FFFD.
func Printable(s string, with rune) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, Unsafe) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if Unsafe(r) {
			return with
		}
		return r
	}, s)
}
