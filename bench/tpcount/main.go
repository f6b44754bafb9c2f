// Command tpcount is the benchmark's independent witness: it counts what
// the kernel hands to BPF programs on inet_sock_set_state and
// tcp_destroy_sock for the sockets of one address (the load generator's),
// with each program's runs and recursion misses, and lists the sockets
// destroyed whose last transition it saw was not into close, with the
// kernel stack of the destroy. Run it beside a tracer and the load; stop
// it with SIGINT for the report. It explains transitions that no tracer
// reports (see bench/README.md, "Unaccounted").
//
//	tpcount [-addr 127.77.0.1]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"golang.org/x/sys/unix"
)

func main() {
	addr := flag.String("addr", "127.77.0.1", "count the sockets with this local or peer IPv4 address")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "tpcount:", err)
		os.Exit(1)
	}
}

func run(addrText string) error {
	a, err := netip.ParseAddr(addrText)
	if err != nil || !a.Is4() {
		return fmt.Errorf("-addr %q: want an IPv4 address", addrText)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("memlock: %w", err)
	}
	spec, err := loadTpcount()
	if err != nil {
		return fmt.Errorf("load spec: %w", err)
	}
	b := a.As4()
	// The address as the kernel keeps it (network order), read as a
	// little-endian __be32.
	if err := spec.Variables["watched_addr"].Set(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24); err != nil {
		return fmt.Errorf("set address: %w", err)
	}
	var objs tpcountObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer objs.Close()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable BPF run counts: %w", err)
	}
	defer stats.Close()
	for _, p := range []*ebpf.Program{objs.SetState, objs.Destroy} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return fmt.Errorf("attach %v: %w", p, err)
		}
		defer l.Close()
	}
	fmt.Println("tpcount: attached; SIGINT for the report")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return report(&objs)
}

func report(o *tpcountObjects) error {
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"inet_sock_set_state", o.SetState}, {"tcp_destroy_sock", o.Destroy}} {
		s, err := p.prog.Stats()
		if err != nil {
			return fmt.Errorf("%s stats: %w", p.name, err)
		}
		fmt.Printf("%s: runs %d, recursion misses %d, invocations %d\n", p.name, s.RunCount, s.RecursionMisses, s.RunCount+s.RecursionMisses)
	}
	var transitions, destroys uint64
	for k := uint32(0); k < 512; k++ {
		var v uint64
		if err := o.Counts.Lookup(k, &v); err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		if v == 0 {
			continue
		}
		if k < 256 {
			transitions += v
			fmt.Printf("transition %v -> %v: %d\n", tcpstate.State(k/16), tcpstate.State(k%16), v)
		} else {
			destroys += v
			fmt.Printf("destroyed in %v: %d\n", tcpstate.State(k%16), v)
		}
	}
	fmt.Printf("transitions seen: %d; destroys seen: %d\n", transitions, destroys)
	syms := kernelSymbols()
	for i := uint32(0); i < 64; i++ {
		var od tpcountOdd
		if err := o.Odds.Lookup(i, &od); err != nil || od.AtNs == 0 {
			break
		}
		last := "none"
		if od.Last != 0xffff {
			last = fmt.Sprintf("%v -> %v", tcpstate.State(od.Last>>8&0xff), tcpstate.State(od.Last&0xff))
		}
		fmt.Printf("destroyed without its close seen: cookie %d at %d ns, state %v, last transition seen %s\n",
			od.Cookie, od.AtNs, tcpstate.State(od.State), last)
		if od.Stack < 0 {
			continue
		}
		var pcs [127]uint64
		if err := o.Stacks.Lookup(uint32(od.Stack), &pcs); err != nil {
			continue
		}
		for _, pc := range pcs {
			if pc == 0 {
				break
			}
			fmt.Println("    " + syms.name(pc))
		}
	}
	return nil
}

type ksym struct {
	addr uint64
	name string
}

type symbols []ksym

func kernelSymbols() symbols {
	b, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		return nil
	}
	var s symbols
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || a == 0 {
			continue
		}
		s = append(s, ksym{a, f[2]})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].addr < s[j].addr })
	return s
}

func (s symbols) name(pc uint64) string {
	i := sort.Search(len(s), func(i int) bool { return s[i].addr > pc }) - 1
	if i < 0 {
		return fmt.Sprintf("%#x", pc)
	}
	return fmt.Sprintf("%s+%#x", s[i].name, pc-s[i].addr)
}
