// Package kallsyms reads the kernel's symbols (/proc/kallsyms) to name
// the functions at kernel addresses: drop locations on kernels that give
// no drop reasons (before 5.17).
package kallsyms

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Symbols is the kernel's text symbols, by address.
type Symbols struct {
	addrs []uint64
	names []string
}

// Read reads /proc/kallsyms (as root: others see zero addresses).
func Read() (*Symbols, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, fmt.Errorf("read kernel symbols to name drop locations: %w", err)
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads symbols in /proc/kallsyms's form: "ADDR TYPE NAME
// [MODULE]"; only text symbols (t, T, w, W) are kept.
func Parse(r io.Reader) (*Symbols, error) {
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		switch f[1] {
		case "t", "T", "w", "W":
		default:
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || a == 0 {
			continue
		}
		syms = append(syms, sym{a, f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	if len(syms) == 0 {
		return nil, fmt.Errorf("read kernel symbols: no addresses in /proc/kallsyms (needs root, or kernel.kptr_restrict < 2)")
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	k := &Symbols{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		k.addrs[i], k.names[i] = s.addr, s.name
	}
	return k, nil
}

// Func is the function holding address a, "" if none.
func (k *Symbols) Func(a uint64) string {
	i := sort.Search(len(k.addrs), func(i int) bool { return k.addrs[i] > a })
	if i == 0 {
		return ""
	}
	return k.names[i-1]
}

// Addr is the address of function name, 0 if none (for tests).
func (k *Symbols) Addr(name string) uint64 {
	for i, n := range k.names {
		if n == name {
			return k.addrs[i]
		}
	}
	return 0
}

// Range is the address range [lo, hi) of function name: from its
// address to the next symbol's; 0, 0 if none.
func (k *Symbols) Range(name string) (lo, hi uint64) {
	for i, n := range k.names {
		if n == name && i+1 < len(k.addrs) {
			return k.addrs[i], k.addrs[i+1]
		}
	}
	return 0, 0
}
