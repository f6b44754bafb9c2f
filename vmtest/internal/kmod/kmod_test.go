package kmod

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeModule builds a minimal ELF64 relocatable file whose only content is
// a .modinfo section with the given key=value strings.
func fakeModule(info ...string) []byte {
	modinfo := []byte(strings.Join(info, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	infoOff := ehsize
	strOff := infoOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7

	var b bytes.Buffer
	le := binary.LittleEndian
	ident := [16]byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* LE */, 1 /* version */}
	b.Write(ident[:])
	binary.Write(&b, le, uint16(1))  // ET_REL
	binary.Write(&b, le, uint16(62)) // EM_X86_64
	binary.Write(&b, le, uint32(1))
	binary.Write(&b, le, uint64(0)) // entry
	binary.Write(&b, le, uint64(0)) // phoff
	binary.Write(&b, le, uint64(shOff))
	binary.Write(&b, le, uint32(0))
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(0)) // phentsize
	binary.Write(&b, le, uint16(0)) // phnum
	binary.Write(&b, le, uint16(shentsize))
	binary.Write(&b, le, uint16(3)) // shnum
	binary.Write(&b, le, uint16(2)) // shstrndx
	b.Write(modinfo)
	b.Write(shstr)
	b.Write(make([]byte, shOff-b.Len()))
	section := func(name, typ uint32, off, size int) {
		binary.Write(&b, le, name)
		binary.Write(&b, le, typ)
		binary.Write(&b, le, uint64(0)) // flags
		binary.Write(&b, le, uint64(0)) // addr
		binary.Write(&b, le, uint64(off))
		binary.Write(&b, le, uint64(size))
		binary.Write(&b, le, uint32(0)) // link
		binary.Write(&b, le, uint32(0)) // info
		binary.Write(&b, le, uint64(1)) // align
		binary.Write(&b, le, uint64(0)) // entsize
	}
	section(0, 0, 0, 0)
	section(1, 1 /* PROGBITS */, infoOff, len(modinfo))
	section(10, 3 /* STRTAB */, strOff, len(shstr))
	return b.Bytes()
}

func TestDepends(t *testing.T) {
	deps, err := Depends(fakeModule("license=GPL", "depends=sock-diag,inet_diag", "name=tcp_diag"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(deps, ",") != "inet_diag,sock_diag" {
		t.Errorf("depends %v", deps)
	}
	deps, err = Depends(fakeModule("depends=", "name=inet_diag"))
	if err != nil || len(deps) != 0 {
		t.Errorf("empty depends: %v %v", deps, err)
	}
	if _, err := Depends([]byte("not elf")); err == nil {
		t.Error("garbage accepted")
	}
}

func TestResolve(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "usr/lib/modules/6.12.0-test/kernel/net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gz := func(b []byte) []byte {
		var out bytes.Buffer
		z := gzip.NewWriter(&out)
		z.Write(b)
		z.Close()
		return out.Bytes()
	}
	write("tcp_diag.ko.gz", gz(fakeModule("depends=inet_diag")))
	write("inet_diag.ko", fakeModule("depends=sock-diag,builtin_thing"))
	write("sock_diag.ko", fakeModule("depends="))
	write("loop_a.ko", fakeModule("depends=loop_b"))
	write("loop_b.ko", fakeModule("depends=loop_a"))
	if err := os.WriteFile(filepath.Join(root, "usr/lib/modules/6.12.0-test/modules.builtin"), []byte("kernel/lib/builtin_thing.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tree, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Release != "6.12.0-test" {
		t.Errorf("release %q", tree.Release)
	}
	mods, err := tree.Resolve([]string{"tcp-diag", "inet_diag"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
		if _, err := Depends(m.Data); err != nil {
			t.Errorf("%s: data is not the uncompressed module: %v", m.Name, err)
		}
	}
	if got := strings.Join(names, " "); got != "sock_diag inet_diag tcp_diag" {
		t.Errorf("load order %q", got)
	}
	if _, err := tree.Resolve([]string{"loop_a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	if _, err := tree.Resolve([]string{"veth"}); err == nil || !strings.Contains(err.Error(), "no module veth") {
		t.Errorf("missing module: %v", err)
	}
}
