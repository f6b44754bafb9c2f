// Package safetext makes text that other processes control (command
// names, host names from DNS, cgroup paths, pod names, strings read back
// from capture files) safe to print on an operator's terminal: control
// characters, line breaks, invalid UTF-8 and the Unicode marks that
// reorder a line are written as visible escapes, so that no input can
// clear the screen, recolour it, or start a forged line. Every text
// writer of socktrace goes through it; JSON has its own, faithful,
// escaping.
package safetext

import (
	"strconv"
	"unicode/utf8"
)

// Safe reports whether s needs no escaping (the common case: no copy).
func Safe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

// Escape returns s with what a terminal would act on made visible:
// \n \r \t, other control characters and invalid bytes as \xNN, the
// backslash as \\ (so an escape cannot be faked), and C1 controls and
// the bidirectional and line-separator marks as \u{NNNN}.
func Escape(s string) string {
	if Safe(s) {
		return s
	}
	return string(Append(make([]byte, 0, len(s)+8), s))
}

// Append appends Escape(s) to b.
func Append(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		switch c {
		case '\n':
			b = append(b, `\n`...)
			i++
			continue
		case '\r':
			b = append(b, `\r`...)
			i++
			continue
		case '\t':
			b = append(b, `\t`...)
			i++
			continue
		case '\\':
			b = append(b, `\\`...)
			i++
			continue
		}
		if c < 0x80 { // other C0 controls, DEL
			b = appendHex(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			b = appendHex(b, c)
			i++
			continue
		}
		if hidden(r) {
			b = append(b, `\u{`...)
			b = strconv.AppendUint(b, uint64(r), 16)
			b = append(b, '}')
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

func appendHex(b []byte, c byte) []byte {
	const hex = "0123456789abcdef"
	return append(b, '\\', 'x', hex[c>>4], hex[c&15])
}

// hidden: runes a terminal acts on or that change how a line reads: C1
// controls, line and paragraph separators, bidirectional marks,
// embeddings, overrides and isolates, zero-width characters.
func hidden(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f,
		r == 0x2028 || r == 0x2029,
		r >= 0x200b && r <= 0x200f,
		r >= 0x202a && r <= 0x202e,
		r >= 0x2066 && r <= 0x2069,
		r == 0xfeff:
		return true
	}
	return false
}
