// Command tpcount is the benchmark's independent witness (internal/witness)
// as a process: it counts what the kernel hands to BPF programs on
// inet_sock_set_state and tcp_destroy_sock for the sockets of one address
// (the load generator's), with each program's runs and recursion misses,
// and lists the sockets destroyed whose last transition it saw was not into
// close, with the kernel stack of the destroy. Run it beside a tracer and
// the load; stop it with SIGINT for the report. It explains transitions
// that no tracer reports (see bench/README.md, "Reading the counts").
//
//	tpcount [-addr 127.77.0.1]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/witness"
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
	w, err := witness.Open(witness.Filter{Addr: a}, true)
	if err != nil {
		return err
	}
	defer w.Close()
	fmt.Println("tpcount: attached; SIGINT for the report")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	c, err := w.Counts()
	if err != nil {
		return err
	}
	report(c)
	return nil
}

func report(c witness.Counts) {
	for _, p := range []struct {
		name string
		s    witness.ProgStats
	}{{"inet_sock_set_state", c.SetState}, {"tcp_destroy_sock", c.Destroy}} {
		fmt.Printf("%s: runs %d, recursion misses %d, invocations %d\n", p.name, p.s.Runs, p.s.Misses, p.s.Runs+p.s.Misses)
	}
	for o, row := range c.Transitions {
		for n, v := range row {
			if v != 0 {
				fmt.Printf("transition %v -> %v: %d\n", tcpstate.State(o), tcpstate.State(n), v)
			}
		}
	}
	for s, v := range c.Destroyed {
		if v != 0 {
			fmt.Printf("destroyed in %v: %d\n", tcpstate.State(s), v)
		}
	}
	for _, f := range []struct {
		name string
		f    witness.FilterCounts
	}{{"inet_sock_set_state", c.SetStateFilter}, {"tcp_destroy_sock", c.DestroyFilter}} {
		fmt.Printf("%s filter: invoked %d, other protocol %d\n", f.name, f.f.Invoked, f.f.OtherProtocol)
	}
	fmt.Printf("transitions seen: %d; destroys seen: %d\n", c.Seen(), c.Destroys())
	for _, o := range c.Open {
		fmt.Printf("no close seen: cookie %d, port %d -> %d, last transition seen %s\n", o.Cookie, o.Sport, o.Dport, o.Last)
	}
	var syms witness.Symbols
	if len(c.Odd) > 0 {
		syms = witness.KernelSymbols()
	}
	for _, od := range c.Odd {
		fmt.Printf("destroyed without its close seen: cookie %d at %d ns, state %v, last transition seen %s\n",
			od.Cookie, od.AtNs, od.State, od.Last)
		for _, pc := range od.Stack {
			fmt.Println("    " + syms.Name(pc))
		}
	}
}
