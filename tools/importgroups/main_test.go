package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name, imports string
		want          string // a substring of the one problem; "": none
	}{
		{"in order", "\"fmt\"\n\n\"github.com/spf13/cobra\"\n\n\"github.com/socktrace/socktrace/internal/events\"", ""},
		{"standard only, two blocks", "\"fmt\"\n\n\"os\"", `"os" starts a second group of the standard library`},
		{"own packages, two blocks", "\"fmt\"\n\n\"github.com/socktrace/socktrace/internal/dns/dnscache\"\n\n\"github.com/socktrace/socktrace/internal/events\"",
			"a second group of socktrace's own packages"},
		{"own before others, apart", "\"fmt\"\n\n\"github.com/socktrace/socktrace/internal/events\"\n\n\"github.com/spf13/cobra\"",
			`"github.com/spf13/cobra" imported after socktrace's own packages`},
		{"standard after others", "\"github.com/spf13/cobra\"\n\n\"fmt\"", `"fmt" imported after other modules`},
		{"no blank line", "\"fmt\"\n\"github.com/spf13/cobra\"", "want a blank line before it"},
		{"the project itself", "\"golang.org/x/sys/unix\"\n\n\"github.com/socktrace/socktrace\"", ""},
		{"a lookalike is another module", "\"fmt\"\n\n\"github.com/socktrace/socktrace2/x\"\n\n\"github.com/socktrace/socktrace/x\"", ""},
	}
	for _, c := range tests {
		path := filepath.Join(t.TempDir(), "a.go")
		src := "package a\n\nimport (\n" + c.imports + "\n)\n"
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		problems, err := check(path)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		switch {
		case c.want == "" && len(problems) != 0:
			t.Errorf("%s: %q, want no problem", c.name, problems)
		case c.want != "" && (len(problems) != 1 || !strings.Contains(problems[0], c.want)):
			t.Errorf("%s: %q, want one problem with %q", c.name, problems, c.want)
		}
	}
}
