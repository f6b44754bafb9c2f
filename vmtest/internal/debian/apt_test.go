package debian

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSystemMirrors(t *testing.T) {
	etc := t.TempDir()
	os.MkdirAll(filepath.Join(etc, "sources.list.d"), 0o755)
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("sources.list.d/vendor.list", "deb https://packages.example.com/apt cloud-sdk-bookworm main\n")
	write("sources.list.d/debian.sources", `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://sec.example.org/debian-security
Suites: bookworm-security
Components: main
`)
	if got, want := SystemMirrors(etc), (Mirrors{"http://mirror.example.org/debian", "http://sec.example.org/debian-security"}); got != want {
		t.Errorf("deb822: got %+v, want %+v", got, want)
	}

	etc = t.TempDir()
	write("sources.list", "# deb http://old.example.org/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example.org/debian bookworm main contrib\n")
	if got, want := SystemMirrors(etc), (Mirrors{"http://one.example.org/debian", "http://one.example.org/debian-security"}); got != want {
		t.Errorf("one-line: got %+v, want %+v", got, want)
	}

	if got := SystemMirrors(t.TempDir()); got != DefaultMirrors {
		t.Errorf("nothing configured: got %+v, want %+v", got, DefaultMirrors)
	}
}

func TestParseMadison(t *testing.T) {
	out := []byte(` linux-image-6.1.0-56-cloud-amd64 | 6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.1.0-55-cloud-amd64 | 6.1.190-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
     linux | 6.1.190-1 | http://deb.debian.org/debian bookworm/main Sources
`)
	got := parseMadison(out)
	want := []Package{{"linux-image-6.1.0-56-cloud-amd64", "6.1.192-2"}, {"linux-image-6.1.0-55-cloud-amd64", "6.1.190-1"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
