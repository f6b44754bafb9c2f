// Package socktrace holds the one go:generate point of the project: it
// compiles the BPF programs under bpf/ and writes the Go bindings and the
// object file into internal/events. Run it with `make generate`.
package socktrace

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -output-dir internal/events -go-package events -type event -type dest_key -type dest_counters socktrace bpf/socktrace.bpf.c -- -O2 -g -Wall -Werror -I./bpf -I/usr/include/x86_64-linux-gnu
