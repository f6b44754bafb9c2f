// Package socktrace holds the go:generate points of the project: they
// compile the BPF programs under bpf/ and write the Go bindings and the
// object files into internal/events (the tracer), internal/owner/owners (the
// socket owners iterator), internal/dns/dnswatch (DNS answers) and
// internal/witness (the independent count the benchmark and tests use). Run them with `make generate`.
package socktrace

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -output-dir internal/events -go-package events -type event -type dest_key -type dest_counters -type drop_dest_key -type drop_other_key socktrace bpf/socktrace.bpf.c -- -O2 -g -Wall -Werror -I./bpf -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -output-dir internal/owner/owners -go-package owners -type owner_rec owners bpf/owners.bpf.c -- -O2 -g -Wall -Werror -I./bpf -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -output-dir internal/dns/dnswatch -go-package dnswatch -type dns_record dns bpf/dns.bpf.c -- -O2 -g -Wall -Werror -I./bpf -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -output-dir internal/witness -go-package witness -type odd -type seen witness bpf/witness.bpf.c -- -O2 -g -Wall -Werror -mcpu=v3 -I./bpf -I/usr/include/x86_64-linux-gnu
