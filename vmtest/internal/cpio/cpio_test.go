package cpio

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type entry struct {
	name         string
	mode         uint32
	data         string
	major, minor uint32
}

// read decodes a newc archive independently of the writer.
func read(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	off := 0
	hex := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("bad header at %d: %v", off, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, b[off:off+6])
		}
		mode, size, namesize := hex(1), int(hex(6)), int(hex(11))
		name := string(b[off+110 : off+110+namesize-1])
		rmaj, rmin := hex(9), hex(10)
		data := align(off + 110 + namesize)
		if name == trailer {
			if end := align(data); len(b)%512 != 0 || end > len(b) {
				t.Fatalf("archive of %d bytes: not padded to 512", len(b))
			}
			return out
		}
		out = append(out, entry{name, mode, string(b[data : data+size]), rmaj, rmin})
		off = align(data + size)
	}
}

func TestWriter(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.MkdirAll("/a/b", 0o755))
	must(w.MkdirAll("a/b/c", 0o755)) // a and a/b exist: only c is added
	must(w.File("/a/b/c/init", 0o755, src))
	must(w.Bytes("x", 0o600, []byte("12345")))
	must(w.Dir("dev", 0o755))
	must(w.CharDev("dev/console", 0o600, 5, 1))
	must(w.Symlink("a/link", "b/c/init"))
	must(w.Close())

	got := read(t, buf.Bytes())
	want := []entry{
		{"a", TypeDir | 0o755, "", 0, 0},
		{"a/b", TypeDir | 0o755, "", 0, 0},
		{"a/b/c", TypeDir | 0o755, "", 0, 0},
		{"a/b/c/init", TypeReg | 0o755, "#!/bin/sh\necho hi\n", 0, 0},
		{"x", TypeReg | 0o600, "12345", 0, 0},
		{"dev", TypeDir | 0o755, "", 0, 0},
		{"dev/console", TypeChar | 0o600, "", 5, 1},
		{"a/link", TypeLink | 0o777, "b/c/init", 0, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}

	// cpio(1), where installed, must agree.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-t", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		names := strings.Fields(string(out))
		if len(names) != len(want) || names[3] != "a/b/c/init" {
			t.Errorf("cpio -t lists %v", names)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	if err := w.Bytes("f", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Bytes("/f", 0o644, nil); err == nil {
		t.Error("a second /f was accepted")
	}
	if err := w.Close(); err == nil {
		t.Error("Close after an error succeeded")
	}
	w = NewWriter(&bytes.Buffer{})
	if err := w.File("x", 0o644, "/nonexistent/file"); err == nil {
		t.Error("missing source accepted")
	}
	w = NewWriter(&bytes.Buffer{})
	if err := w.Dir("/", 0o755); err == nil {
		t.Error("empty name accepted")
	}
}
