// Package kmod finds kernel modules in an unpacked kernel package, works
// out their dependencies from each module's .modinfo (the package ships no
// modules.dep: depmod makes it at install time), and decompresses them.
package kmod

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Tree is the modules of one kernel release.
type Tree struct {
	Dir     string            // .../lib/modules/RELEASE
	Release string            // RELEASE
	files   map[string]string // module name -> file
}

var suffixes = []string{".ko", ".ko.xz", ".ko.gz", ".ko.zst"}

// Open finds the modules directory under root (lib/modules/RELEASE or
// usr/lib/modules/RELEASE, as the package unpacks) and indexes it.
func Open(root string) (*Tree, error) {
	var dirs []string
	for _, base := range []string{"lib/modules", "usr/lib/modules"} {
		m, _ := filepath.Glob(filepath.Join(root, base, "*"))
		dirs = append(dirs, m...)
	}
	if len(dirs) != 1 {
		return nil, fmt.Errorf("want one lib/modules/RELEASE directory in %s, found %d", root, len(dirs))
	}
	t := &Tree{Dir: dirs[0], Release: filepath.Base(dirs[0]), files: map[string]string{}}
	err := filepath.WalkDir(t.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		for _, s := range suffixes {
			if name, ok := strings.CutSuffix(d.Name(), s); ok {
				t.files[Normalize(name)] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Normalize gives a module's canonical name: the kernel treats - and _
// alike.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Has says whether the tree has the module (as a file: built-in ones
// are not files).
func (t *Tree) Has(name string) bool {
	_, ok := t.files[Normalize(name)]
	return ok
}

// Builtin says whether the kernel has the module built in, from
// modules.builtin when the package ships it.
func (t *Tree) Builtin(name string) bool {
	b, err := os.ReadFile(filepath.Join(t.Dir, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		base := filepath.Base(line)
		for _, s := range suffixes {
			base = strings.TrimSuffix(base, s)
		}
		if Normalize(base) == Normalize(name) {
			return true
		}
	}
	return false
}

// Read returns a module's uncompressed contents.
func (t *Tree) Read(name string) ([]byte, error) {
	p, ok := t.files[Normalize(name)]
	if !ok {
		return nil, fmt.Errorf("kernel %s has no module %s", t.Release, name)
	}
	return decompress(p)
}

func decompress(p string) ([]byte, error) {
	switch {
	case strings.HasSuffix(p, ".ko"):
		return os.ReadFile(p)
	case strings.HasSuffix(p, ".gz"):
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		z, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return io.ReadAll(z)
	case strings.HasSuffix(p, ".xz"):
		return tool(p, "xz", "-dc", p)
	case strings.HasSuffix(p, ".zst"):
		return tool(p, "zstd", "-dcq", p)
	}
	return nil, fmt.Errorf("%s: unknown compression", p)
}

func tool(p, name string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s with %s: %v %s", p, name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Depends returns the modules a module needs loaded first, from its
// .modinfo section.
func Depends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, Normalize(d))
				}
			}
			sort.Strings(deps)
			return deps, nil
		}
	}
	return nil, nil
}

// Module is one module to load.
type Module struct {
	Name string
	Data []byte // uncompressed
}

// Resolve returns the named modules and everything they depend on, each
// after its dependencies. Names the kernel has built in are left out.
func (t *Tree) Resolve(names []string) ([]Module, error) {
	var out []Module
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = Normalize(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		if !t.Has(name) {
			if t.Builtin(name) {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("kernel %s has no module %s (needed by %s)", t.Release, name, strings.Join(append(chain, name), " -> "))
		}
		state[name] = 1
		data, err := t.Read(name)
		if err != nil {
			return err
		}
		deps, err := Depends(data)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Data: data})
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
