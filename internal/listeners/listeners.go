// Package listeners watches the accept queues of listening sockets: it
// polls them with sock_diag, keeps each one's count of dropped SYNs, and
// says when a listener starts dropping (its accept queue overflows) and
// when it stops.
//
// Every kernel counts a listener's drops in its sk_drops
// (tcp_listendrop(), which also adds to nstat's TcpExtListenDrops; an
// overflow adds to TcpExtListenOverflows first), and sock_diag reports
// it in the socket's memory info (INET_DIAG_SKMEMINFO, SK_MEMINFO_DROPS:
// ss -m's "d"). A rise between two polls is an overflow. That works
// from 5.10 on, where the kernel's drop reason TCP_LISTEN_OVERFLOW only
// exists from 6.15, and costs one small dump a second per namespace.
//
// The package has two halves, so that a replay comes to the same
// alerts as the live run: Samples turns a poll into the few samples
// worth keeping (what changed, and a tick for each listener that is
// overflowing), which a recording stores; Apply turns a sample, live or
// replayed, into an event.
package listeners

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// RecoverAfter: a listener that dropped nothing for this long has
// recovered (listen-recovered).
const RecoverAfter = 5 * time.Second

// maxTracked bounds the listeners remembered (those that dropped
// something): beyond, the one quiet for longest is forgotten.
const maxTracked = 4096

// Listener is a listening socket as a poll saw it.
type Listener struct {
	Netns   uint32
	Addr    netip.Addr
	Port    uint16
	Cookie  uint64
	Inode   uint32
	Drops   uint32 // the kernel's count (sk_drops) since the socket was made
	Backlog uint32 // the accept queue's limit (ss Send-Q)
	Queue   uint32 // connections waiting for accept() (ss Recv-Q)
}

// Poll is one look at the listeners of some network namespaces.
type Poll struct {
	At time.Time
	// Netns: the namespaces dumped in full (a listener of one of them
	// missing from Listeners has closed).
	Netns     map[uint32]bool
	Listeners []Listener
}

// Owner is who a listener belongs to.
type Owner struct {
	Known bool
	PID   uint32
	Comm  string
	ID    *identity.Identity
}

// Sample is what a poll says of one listener: what a recording stores
// (capture record type 13) and Apply takes.
type Sample struct {
	At time.Time
	Listener
	Owner Owner
	// Baseline: the drops counted before the trace saw the listener (its
	// namespace's first poll), not counted as overflows.
	Baseline bool
	// Gone: the listener is no longer there (closed).
	Gone bool
	// Prev: the count the tracker had for it (0 for one it did not
	// know): a replay that starts past a listener's first sample (its
	// file rotated away) still counts the rise from there.
	Prev uint32
}

// Kind says what an event is.
type Kind uint8

const (
	Overflow  Kind = iota + 1 // the listener dropped SYNs since the last poll
	Recovered                 // it dropped none for RecoverAfter, or closed
)

// State is what is known of a listener that dropped SYNs during the
// trace.
type State struct {
	Listener
	Owner Owner
	// Total: SYNs dropped since the trace began (the baseline not
	// counted); Dropped: since the last overflow event.
	Total, Dropped uint64
	// Overflowing: dropping now (since Since); LastDrop: the last poll
	// that saw a rise.
	Overflowing     bool
	Since, LastDrop time.Time
	Closed          bool
}

// Event is a listener that started or went on dropping, or stopped.
type Event struct {
	Kind Kind
	Time time.Time
	State
	// For Recovered: how long it overflowed.
	For time.Duration
}

type key struct {
	netns  uint32
	addr   netip.Addr
	port   uint16
	cookie uint64
}

func keyOf(l *Listener) key { return key{l.Netns, l.Addr, l.Port, l.Cookie} }

type entry struct {
	State
	last uint32 // the kernel's count at the last sample
}

// Tracker keeps the listeners' drop counts between polls. It is not
// safe for concurrent use.
type Tracker struct {
	known  map[key]*entry
	polled map[uint32]bool // namespaces polled at least once
}

// NewTracker is a tracker that has seen nothing.
func NewTracker() *Tracker {
	return &Tracker{known: map[key]*entry{}, polled: map[uint32]bool{}}
}

// Samples are what poll says that the tracker does not know: the drop
// counts of listeners first seen (a baseline in a namespace polled for
// the first time), those that changed, a tick for each listener that is
// overflowing (so that it can recover), and the overflowing listeners
// that closed. owner names a listener's owner (nil: unknown).
func (t *Tracker) Samples(p *Poll, owner func(*Listener) Owner) []Sample {
	var out []Sample
	seen := map[key]bool{}
	add := func(l *Listener, baseline bool, prev uint32) {
		s := Sample{At: p.At, Listener: *l, Baseline: baseline, Prev: prev}
		if owner != nil {
			s.Owner = owner(l)
		}
		out = append(out, s)
	}
	for i := range p.Listeners {
		l := &p.Listeners[i]
		k := keyOf(l)
		seen[k] = true
		e := t.known[k]
		switch {
		case e == nil && l.Drops == 0:
			// Nothing dropped: nothing to know.
		case e == nil:
			add(l, !t.polled[l.Netns], 0)
		case l.Drops != e.last || e.Overflowing:
			add(l, false, e.last)
		}
	}
	for k, e := range t.known {
		if p.Netns[k.netns] && !seen[k] && !e.Closed {
			out = append(out, Sample{At: p.At, Listener: e.Listener, Owner: e.Owner, Gone: true, Prev: e.last})
		}
	}
	for ns := range p.Netns {
		t.polled[ns] = true
	}
	sort.Slice(out, func(i, j int) bool { return less(&out[i].Listener, &out[j].Listener) })
	return out
}

func less(a, b *Listener) bool {
	if a.Netns != b.Netns {
		return a.Netns < b.Netns
	}
	if a.Port != b.Port {
		return a.Port < b.Port
	}
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c < 0
	}
	return a.Cookie < b.Cookie
}

// Apply takes one sample, live or replayed, and returns the event it
// makes, if any: Overflow when the listener's drops rose, Recovered when
// an overflowing one dropped nothing for RecoverAfter or closed.
func (t *Tracker) Apply(s *Sample) *Event {
	t.polled[s.Netns] = true
	k := keyOf(&s.Listener)
	e := t.known[k]
	if s.Gone {
		if e == nil || e.Closed {
			return nil
		}
		// Kept, closed, for the summary and the metrics' totals.
		was := e.Overflowing
		e.Overflowing, e.Closed, e.Dropped = false, true, 0
		if !was {
			return nil
		}
		return &Event{Kind: Recovered, Time: s.At, State: e.State, For: s.At.Sub(e.Since)}
	}
	if e == nil || e.Closed {
		t.room()
		e = &entry{State: State{Listener: s.Listener}}
		t.known[k] = e
		e.last = s.Prev
		if s.Baseline {
			e.last = s.Drops
		}
	}
	if s.Owner.Known || !e.Owner.Known {
		e.Owner = s.Owner
	}
	rise := uint64(0)
	if s.Drops >= e.last {
		rise = uint64(s.Drops - e.last)
	} else {
		rise = uint64(s.Drops) // a new socket with the same key: counted from 0
	}
	e.last = s.Drops
	e.Listener = s.Listener
	if rise > 0 {
		e.Total += rise
		e.Dropped = rise
		e.LastDrop = s.At
		if !e.Overflowing {
			e.Overflowing, e.Since = true, s.At
		}
		return &Event{Kind: Overflow, Time: s.At, State: e.State}
	}
	if e.Overflowing && s.At.Sub(e.LastDrop) >= RecoverAfter {
		e.Overflowing, e.Dropped = false, 0
		return &Event{Kind: Recovered, Time: s.At, State: e.State, For: e.LastDrop.Sub(e.Since)}
	}
	return nil
}

// room forgets the listener quiet for longest when the tracker is full.
func (t *Tracker) room() {
	if len(t.known) < maxTracked {
		return
	}
	var victim key
	var oldest *entry
	for k, e := range t.known {
		if !e.Overflowing && (oldest == nil || e.LastDrop.Before(oldest.LastDrop)) {
			victim, oldest = k, e
		}
	}
	if oldest == nil {
		for k, e := range t.known {
			if oldest == nil || e.LastDrop.Before(oldest.LastDrop) {
				victim, oldest = k, e
			}
		}
	}
	delete(t.known, victim)
}

// Overflowing is the listener that a connect to addr:port in network
// namespace netns reaches, if it is overflowing now: one bound to addr
// or to the wildcard, on port.
func (t *Tracker) Overflowing(netns uint32, addr netip.Addr, port uint16) *State {
	var best *State
	for _, e := range t.known {
		if !e.Overflowing || e.Netns != netns || e.Port != port {
			continue
		}
		if e.Addr == addr.Unmap() || e.Addr == addr {
			s := e.State
			return &s
		}
		if e.Addr.IsUnspecified() && best == nil {
			s := e.State
			best = &s
		}
	}
	return best
}

// Dropping are the listeners that dropped SYNs during the trace (still
// open, or overflowing when they closed), most drops first.
func (t *Tracker) Dropping() []State {
	var out []State
	for _, e := range t.known {
		if e.Total > 0 {
			out = append(out, e.State)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total != out[j].Total {
			return out[i].Total > out[j].Total
		}
		return less(&out[i].Listener, &out[j].Listener)
	})
	return out
}

// Dump lists the listeners of the network namespaces at paths ("" is
// socktrace's own) with their drop counts. A namespace that cannot be
// dumped (gone meanwhile) is left out of the poll's Netns; the first
// error is returned with what the others gave.
func Dump(paths []string, ipv4, ipv6 bool, at time.Time) (*Poll, error) {
	p := &Poll{At: at, Netns: map[uint32]bool{}}
	var first error
	for _, path := range paths {
		socks, ns, err := dumpOne(path, ipv4, ipv6)
		if err != nil {
			// A namespace gone meanwhile (its last process exited) is
			// no error: there is nothing left to watch.
			if _, serr := os.Stat(path); first == nil && (path == "" || serr == nil) {
				first = fmt.Errorf("listeners of network namespace %s: %w", nsName(path), err)
			}
			continue
		}
		p.Netns[ns] = true
		for i := range socks {
			s := &socks[i]
			l := Listener{Netns: s.Netns, Addr: s.Src, Port: s.SPort, Cookie: s.Cookie, Inode: s.Inode, Backlog: s.SendQ, Queue: s.RecvQ}
			if s.Mem != nil {
				l.Drops = s.Mem.Drops
			}
			p.Listeners = append(p.Listeners, l)
		}
	}
	return p, first
}

func nsName(path string) string {
	if path == "" {
		return "(socktrace's own)"
	}
	return path
}

func dumpOne(path string, ipv4, ipv6 bool) ([]snapshot.Socket, uint32, error) {
	nsPath := path
	if nsPath == "" {
		nsPath = "/proc/thread-self/ns/net"
	}
	ns, err := snapshot.NetnsInode(nsPath)
	if err != nil {
		return nil, 0, err
	}
	socks, err := snapshot.Dump(snapshot.Options{States: tcpstate.MaskOf(tcpstate.Listen), IPv4: ipv4, IPv6: ipv6, Netns: path, Mem: true})
	return socks, ns, err
}
