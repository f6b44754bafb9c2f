// Package kernelbtf parses the running kernel's BTF
// (/sys/kernel/btf/vmlinux) once per process and shares it between every
// BPF object socktrace loads. Parsing it takes tens of milliseconds, and
// cilium/ebpf does it again for each collection or program loaded
// without a shared cache: a dozen times while the tracer starts.
package kernelbtf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

var cache = btf.NewCache()

// Spec returns the running kernel's types, parsed on first use. The
// Spec is shared: read it, never change it.
func Spec() (*btf.Spec, error) {
	s, err := cache.Kernel()
	if err != nil {
		return nil, fmt.Errorf("read the kernel's BTF (/sys/kernel/btf/vmlinux): %w", err)
	}
	return s, nil
}

// Cache is the process's BTF cache, for loads that take one.
func Cache() *btf.Cache { return cache }

// Options returns collection options that relocate against kernel (nil:
// the running kernel's types, from the shared cache, and only
// vmlinux's: socktrace's programs use no module's types) and find
// attach targets in the shared cache.
func Options(kernel *btf.Spec) (*ebpf.CollectionOptions, error) {
	if kernel == nil {
		var err error
		if kernel, err = Spec(); err != nil {
			return nil, err
		}
	}
	return &ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kernel},
		Cache:    cache,
	}, nil
}
