package safetext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"java", "java"},
		{"", ""},
		{"\x1b[2J\x1b[31mEV\nIL", `\x1b[2J\x1b[31mEV\nIL`}, // the prctl name
		{"a\tb\rc", `a\tb\rc`},
		{`back\slash`, `back\\slash`},
		{"nul\x00del\x7f", `nul\x00del\x7f`},
		{"bad\xffutf8\xc3", `bad\xffutf8\xc3`},
		{"café", "café"},
		{"日本", "日本"},
		{"rtl\u202eevil", `rtl\u{202e}evil`},
		{"line\u2028sep", `line\u{2028}sep`},
		{"c1\u009bcsi", `c1\u{9b}csi`},
		{"zero\u200bwidth", `zero\u{200b}width`},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzEscape: no input leaves a control character, a line break, invalid
// UTF-8 or a hidden mark in the output.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"java", "\x1b[2J\nX", "\xff\xfe", "\u202e\u2028", `\x1b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Escape(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Escape(%q) = %q: invalid UTF-8", s, out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f || hidden(r) {
				t.Fatalf("Escape(%q) = %q holds %U", s, out, r)
			}
		}
		if Safe(s) && out != s {
			t.Fatalf("safe %q changed to %q", s, out)
		}
		if strings.Count(out, "\n") != 0 {
			t.Fatalf("a newline in %q", out)
		}
	})
}
