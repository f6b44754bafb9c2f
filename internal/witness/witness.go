// Package witness is an independent count of what the kernel hands to BPF
// programs on inet_sock_set_state and tcp_destroy_sock, for the TCP sockets
// of one address and/or one network namespace. It shares no code with the
// tracer (internal/events): the benchmark and the tests run it beside
// socktrace to tell what socktrace lost from what the kernel ran no BPF
// program for.
package witness

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Filter picks the sockets counted; the zero value counts every TCP socket.
type Filter struct {
	Addr  netip.Addr // local or peer IPv4 address; invalid: any
	Netns uint32     // network namespace inode; 0: any
}

// A Witness is attached until Close.
type Witness struct {
	maps  witnessMaps
	progs progs
	links []link.Link
	stats interface{ Close() error }
	odd   []Odd // taken from the odds queue so far
}

// progs are the two programs of one kind: keyed by socket cookie, or (for
// kernels whose tracing programs cannot ask for it) by socket address.
type progs struct {
	SetState, Destroy *ebpf.Program
}

type cookieProgs struct {
	SetState *ebpf.Program `ebpf:"set_state"`
	Destroy  *ebpf.Program `ebpf:"destroy"`
}

type addrProgs struct {
	SetState *ebpf.Program `ebpf:"set_state_addr"`
	Destroy  *ebpf.Program `ebpf:"destroy_addr"`
}

// Open loads and attaches the witness. runCounts also turns on the
// kernel's BPF run counts (for every program on the host, while the
// witness is open), for Counts' Runs.
func Open(f Filter, runCounts bool) (*Witness, error) {
	return open(f, runCounts, false)
}

// open is Open; byAddr picks the programs keyed by socket address even
// where the kernel lets them ask for the cookie.
func open(f Filter, runCounts, byAddr bool) (_ *Witness, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("memlock: %w", err)
	}
	spec, err := loadWitness()
	if err != nil {
		return nil, fmt.Errorf("load witness spec: %w", err)
	}
	var addr uint32
	if f.Addr.IsValid() {
		if !f.Addr.Is4() {
			return nil, fmt.Errorf("witness address %v: want IPv4", f.Addr)
		}
		// As the kernel keeps it (network order), read as a little-endian __be32.
		b := f.Addr.As4()
		addr = uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	}
	if err := spec.Variables["watched_addr"].Set(addr); err != nil {
		return nil, fmt.Errorf("set witness address: %w", err)
	}
	if err := spec.Variables["watched_netns"].Set(f.Netns); err != nil {
		return nil, fmt.Errorf("set witness netns: %w", err)
	}
	w := &Witness{}
	if err := spec.LoadAndAssign(&w.maps, nil); err != nil {
		return nil, fmt.Errorf("load witness maps: %w", err)
	}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"counts": w.maps.Counts, "last": w.maps.Last, "odds": w.maps.Odds, "stacks": w.maps.Stacks,
	}}
	var byCookie cookieProgs
	cookieErr := errors.New("not tried")
	if !byAddr {
		cookieErr = spec.LoadAndAssign(&byCookie, opts)
	}
	if cookieErr == nil {
		w.progs = progs(byCookie)
	} else {
		var byAddr addrProgs
		if err := spec.LoadAndAssign(&byAddr, opts); err != nil {
			return nil, fmt.Errorf("load witness programs: %w (by socket cookie: %v)", err, cookieErr)
		}
		w.progs = progs(byAddr)
	}
	if runCounts {
		if w.stats, err = ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err != nil {
			return nil, fmt.Errorf("enable BPF run counts: %w", err)
		}
	}
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"inet_sock_set_state", w.progs.SetState}, {"tcp_destroy_sock", w.progs.Destroy}} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			return nil, fmt.Errorf("attach witness to %s: %w", p.name, err)
		}
		w.links = append(w.links, l)
	}
	return w, nil
}

// Close detaches and unloads the witness.
func (w *Witness) Close() error {
	var errs []error
	for _, l := range w.links {
		errs = append(errs, l.Close())
	}
	w.links = nil
	if w.stats != nil {
		errs = append(errs, w.stats.Close())
		w.stats = nil
	}
	for _, p := range []*ebpf.Program{w.progs.SetState, w.progs.Destroy} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	errs = append(errs, w.maps.Close())
	return errors.Join(errs...)
}

// ProgStats are one program's invocations: runs (with run counts on) and
// the times the kernel skipped it (recursion misses, of any socket).
type ProgStats struct {
	Runs, Misses uint64
}

// Counts is what the witness saw so far.
type Counts struct {
	SetState, Destroy ProgStats
	// Transitions by [old][new] state, and destroys by the state the
	// socket was in, of the sockets watched.
	Transitions [16][16]uint64
	Destroyed   [16]uint64
	// Filtered: what each program's filter did with its invocations.
	SetStateFilter, DestroyFilter FilterCounts
	// Odd: sockets destroyed whose last transition seen was not into
	// close (at most 64).
	Odd []Odd
	// Open: sockets seen and not destroyed, whose last transition was not
	// into close or listen (at most 64).
	Open []OpenSocket
}

// An OpenSocket had transitions seen but no destroy.
type OpenSocket struct {
	Cookie       uint64
	Last         string // "old -> new"
	Sport, Dport uint16
}

// FilterCounts are one program's invocations as its filter saw them: all
// of them, and those left out for another protocol, a namespace read as 0,
// or another namespace.
type FilterCounts struct {
	Invoked, OtherProtocol, NetnsZero, OtherNetns uint64
}

// Seen is the number of transitions seen.
func (c Counts) Seen() uint64 {
	var n uint64
	for _, row := range c.Transitions {
		for _, v := range row {
			n += v
		}
	}
	return n
}

// Destroys is the number of tcp_destroy_sock seen.
func (c Counts) Destroys() uint64 {
	var n uint64
	for _, v := range c.Destroyed {
		n += v
	}
	return n
}

// An Odd socket was destroyed without its close seen.
type Odd struct {
	Cookie uint64
	AtNs   uint64
	State  tcpstate.State // at destroy
	Last   string         // "old -> new", or "none"
	Stack  []uint64       // kernel addresses of the destroy, innermost first
}

// Counts reads the counts.
func (w *Witness) Counts() (Counts, error) {
	var c Counts
	for _, p := range []struct {
		prog *ebpf.Program
		into *ProgStats
	}{{w.progs.SetState, &c.SetState}, {w.progs.Destroy, &c.Destroy}} {
		s, err := p.prog.Stats()
		if err != nil {
			return c, fmt.Errorf("witness program stats: %w", err)
		}
		*p.into = ProgStats{Runs: s.RunCount, Misses: s.RecursionMisses}
	}
	for k := uint32(0); k < w.maps.Counts.MaxEntries(); k++ {
		var v uint64
		if err := w.maps.Counts.Lookup(k, &v); err != nil {
			return c, fmt.Errorf("read witness counts: %w", err)
		}
		if k < 256 {
			c.Transitions[k/16][k%16] = v
		} else if k < 272 {
			c.Destroyed[k%16] = v
		} else if k < 280 {
			f := &c.SetStateFilter
			if k >= 276 {
				f = &c.DestroyFilter
			}
			*[]*uint64{&f.Invoked, &f.OtherProtocol, &f.NetnsZero, &f.OtherNetns}[k%4] = v
		}
	}
	for {
		var od witnessOdd
		if err := w.maps.Odds.LookupAndDelete(nil, &od); err != nil {
			break // empty
		}
		o := Odd{Cookie: od.Cookie, AtNs: od.AtNs, State: tcpstate.State(od.State), Last: "none"}
		if od.Last != 0xffff {
			o.Last = transition(od.Last)
		}
		var pcs [127]uint64
		if od.Stack >= 0 && w.maps.Stacks.Lookup(uint32(od.Stack), &pcs) == nil {
			for _, pc := range pcs {
				if pc == 0 {
					break
				}
				o.Stack = append(o.Stack, pc)
			}
		}
		w.odd = append(w.odd, o)
	}
	c.Odd = w.odd
	var (
		cookie uint64
		seen   witnessSeen
	)
	it := w.maps.Last.Iterate()
	for len(c.Open) < 64 && it.Next(&cookie, &seen) {
		if n := tcpstate.State(seen.Last & 0xff); n == tcpstate.Close || n == tcpstate.Listen {
			continue
		}
		c.Open = append(c.Open, OpenSocket{Cookie: cookie, Last: transition(seen.Last), Sport: seen.Sport, Dport: seen.Dport})
	}
	if err := it.Err(); err != nil {
		return c, fmt.Errorf("read witness sockets: %w", err)
	}
	return c, nil
}

// transition is old << 8 | new as "old -> new".
func transition(v uint32) string {
	return fmt.Sprintf("%v -> %v", tcpstate.State(v>>8&0xff), tcpstate.State(v&0xff))
}

// Symbols names kernel addresses from /proc/kallsyms.
type Symbols []ksym

type ksym struct {
	addr uint64
	name string
}

// KernelSymbols reads /proc/kallsyms (none if it cannot).
func KernelSymbols() Symbols {
	b, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		return nil
	}
	var s Symbols
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

// Name is pc as symbol+offset.
func (s Symbols) Name(pc uint64) string {
	i := sort.Search(len(s), func(i int) bool { return s[i].addr > pc }) - 1
	if i < 0 {
		return fmt.Sprintf("%#x", pc)
	}
	return fmt.Sprintf("%s+%#x", s[i].name, pc-s[i].addr)
}
