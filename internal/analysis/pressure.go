package analysis

import (
	"net/netip"
	"sort"
	"time"

	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// PressureStates are the states a pressure check lists with sock_diag.
var PressureStates = tcpstate.MaskOf(tcpstate.CloseWait, tcpstate.TimeWait, tcpstate.Listen, tcpstate.SynRecv)

// CloseWaitLeak is one process's sockets stuck in CLOSE_WAIT: the peer
// closed, the application did not.
type CloseWaitLeak struct {
	OwnerKnown bool
	PID        uint32
	Comm       string
	Owner      *identity.Identity
	Count      int
	// Oldest: the longest any of them has been in CLOSE_WAIT. When
	// OldestAtLeast, it is a lower bound: the socket was already in
	// CLOSE_WAIT when the trace began.
	Oldest        time.Duration
	OldestAtLeast bool
	Peers         []Count // peers with the most such sockets, up to 3
}

// Count is a number of sockets for one endpoint.
type Count struct {
	Netns uint32
	Addr  netip.Addr
	Port  uint16
	N     int
}

// Listener is a listening socket under pressure: accept queue full, or
// handshakes piling up.
type Listener struct {
	Netns      uint32
	Addr       netip.Addr
	Port       uint16
	OwnerKnown bool
	PID        uint32
	Comm       string
	Owner      *identity.Identity
	AcceptQ    uint32 // connections waiting for accept() (ss Recv-Q)
	Backlog    uint32 // the accept queue's limit (ss Send-Q)
	SynRecv    int    // handshakes in progress (SYN_RECV)
	Full       bool   // AcceptQ reached Backlog: new connections are dropped
	// Drops: SYNs it dropped during the trace, its accept queue full
	// (package listeners); Overflowing: it is dropping now.
	Drops       uint64
	Overflowing bool
}

// Pressure is the leak and pressure picture at one moment.
type Pressure struct {
	CloseWaitAfter time.Duration
	CloseWait      []CloseWaitLeak // by process, most sockets first
	TimeWait       []Count         // by destination, most first
	Listeners      []Listener      // full or with SYN_RECV build-up
}

// PressureInput is what Measure needs.
type PressureInput struct {
	Sockets []snapshot.Socket // a fresh dump of PressureStates
	Owners  procs.Table       // their owners by inode
	Table   *timeline.Table   // for how long each has been in its state
	Now     uint64            // CLOCK_MONOTONIC now
	Start   uint64            // CLOCK_MONOTONIC when the trace began
	// CloseWaitAfter: sockets in CLOSE_WAIT at least this long count.
	CloseWaitAfter time.Duration
	// Keep: the user's filter; nil keeps all.
	Keep func(*snapshot.Socket) bool
	// TopN bounds the time-wait list (0: 10).
	TopN int
	// Identify: who a process is beyond its pid (package identity);
	// nil: not asked.
	Identify func(pid uint32) *identity.Identity
}

// Measure computes the pressure picture.
func Measure(in PressureInput) Pressure {
	p := Pressure{CloseWaitAfter: in.CloseWaitAfter}
	top := in.TopN
	if top <= 0 {
		top = 10
	}
	type procKey struct {
		known bool
		pid   uint32
		comm  string
		owner *identity.Identity
	}
	identify := func(pid uint32) *identity.Identity {
		if in.Identify == nil {
			return nil
		}
		return in.Identify(pid)
	}
	leaks := map[procKey]*CloseWaitLeak{}
	leakPeers := map[procKey]map[Count]int{}
	timeWait := map[Count]int{}
	type lk struct {
		netns uint32
		port  uint16
	}
	listeners := map[lk]*Listener{}
	synRecv := map[lk]int{}

	for i := range in.Sockets {
		s := &in.Sockets[i]
		if in.Keep != nil && !in.Keep(s) {
			continue
		}
		switch s.State {
		case tcpstate.CloseWait:
			age, atLeast := time.Duration(0), false
			if r := in.Table.Lookup(s.Cookie); r != nil && r.Since != 0 && r.State == tcpstate.CloseWait {
				age = time.Duration(in.Now - r.Since)
			} else {
				age, atLeast = time.Duration(in.Now-in.Start), true
			}
			if age < in.CloseWaitAfter {
				continue
			}
			k := procKey{}
			if us := in.Owners[s.Inode]; s.Inode != 0 && len(us) > 0 {
				k = procKey{true, us[0].PID, us[0].Comm, identify(us[0].PID)}
			} else if r := in.Table.Lookup(s.Cookie); r != nil && r.OwnerKnown {
				k = procKey{true, r.OwnerPID, r.OwnerComm, r.OwnerID}
			}
			l := leaks[k]
			if l == nil {
				l = &CloseWaitLeak{OwnerKnown: k.known, PID: k.pid, Comm: k.comm, Owner: k.owner}
				leaks[k] = l
				leakPeers[k] = map[Count]int{}
			}
			l.Count++
			if age > l.Oldest || (age == l.Oldest && atLeast) {
				l.Oldest, l.OldestAtLeast = age, atLeast
			}
			leakPeers[k][Count{Netns: s.Netns, Addr: s.Dst, Port: s.DPort}]++
		case tcpstate.TimeWait:
			timeWait[Count{Netns: s.Netns, Addr: s.Dst, Port: s.DPort}]++
		case tcpstate.Listen:
			l := &Listener{Netns: s.Netns, Addr: s.Src, Port: s.SPort, AcceptQ: s.RecvQ, Backlog: s.SendQ}
			l.Full = l.AcceptQ > 0 && l.AcceptQ >= l.Backlog
			if us := in.Owners[s.Inode]; s.Inode != 0 && len(us) > 0 {
				l.OwnerKnown, l.PID, l.Comm, l.Owner = true, us[0].PID, us[0].Comm, identify(us[0].PID)
			}
			listeners[lk{s.Netns, s.SPort}] = l
		case tcpstate.SynRecv, tcpstate.NewSynRecv:
			synRecv[lk{s.Netns, s.SPort}]++
		}
	}
	for k, l := range leaks {
		l.Peers = topCounts(leakPeers[k], 3)
		p.CloseWait = append(p.CloseWait, *l)
	}
	sort.Slice(p.CloseWait, func(i, j int) bool {
		a, b := p.CloseWait[i], p.CloseWait[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.PID < b.PID
	})
	p.TimeWait = topCounts(timeWait, top)
	for k, l := range listeners {
		l.SynRecv = synRecv[k]
		if l.Full || l.SynRecv > 0 {
			p.Listeners = append(p.Listeners, *l)
		}
	}
	sort.Slice(p.Listeners, func(i, j int) bool {
		a, b := p.Listeners[i], p.Listeners[j]
		if a.Full != b.Full {
			return a.Full
		}
		if a.SynRecv != b.SynRecv {
			return a.SynRecv > b.SynRecv
		}
		return a.Port < b.Port
	})
	return p
}

func topCounts(m map[Count]int, n int) []Count {
	out := make([]Count, 0, len(m))
	for c, k := range m {
		c.N = k
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].N != out[j].N {
			return out[i].N > out[j].N
		}
		if c := out[i].Addr.Compare(out[j].Addr); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	if len(out) > n {
		// A copy: out[:n] kept the whole slice (one entry per time-wait
		// peer: tens of thousands) alive until the next measure.
		out = append([]Count(nil), out[:n]...)
	}
	return out
}

func sortDests(ds []Dest) {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := &ds[i], &ds[j]
		if a.Failing != b.Failing {
			return a.Failing
		}
		if a.Streak != b.Streak {
			return a.Streak > b.Streak
		}
		if a.Attempts != b.Attempts {
			return a.Attempts > b.Attempts
		}
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c < 0
		}
		return a.Port < b.Port
	})
}

// Summary is everything the summary tables show.
type Summary struct {
	Time         time.Time // when it was made
	Since        time.Time // when the trace began
	Dests        []Dest
	DestsEvicted uint64
	Pressure
	History timeline.Stats
	Lost    uint64 // transitions lost so far: the figures may be short
	Skipped uint64 // state changes the kernel skipped (of any socket)
	// DNS: what passive DNS took in and kept; nil without it.
	DNS *DNSSummary
	// Ring: the tracer's ring buffer, live traces only (nil in replays).
	Ring *RingUse
	// Recording: the recording (-w) of a live trace; nil without one,
	// and in replays.
	Recording *RecordingSummary
	// Flight: the flight recorder (--flight-recorder); nil without one,
	// and in replays.
	Flight *FlightSummary
}

// FlightSummary is the flight recorder's memory and what it wrote.
type FlightSummary struct {
	Dir        string
	Bytes      int64             // in memory now
	Size       int64             // its bound (--flight-recorder-size)
	Records    int               // kept now
	Dropped    uint64            // records dropped, oldest first, to stay within Size
	Recordings map[string]uint64 // files written, by alert
	Removed    uint64            // files removed to keep at most --flight-max-files
	Errors     uint64            // recordings that could not be written
}

// RecordingSummary is what the recording wrote, and what write errors
// kept it from writing.
type RecordingSummary struct {
	File        string // the file written (or to be written)
	Paused      bool
	Since       time.Time // paused since
	Err         string    // why, while paused
	Transitions uint64    // recorded
	Bytes       int64     // in all files
	Files       int
	Errors      uint64 // write errors that paused it
	Dropped     uint64 // transitions not recorded because of them
}

// RingUse is the ring buffer's size and the most it held at once, bytes.
type RingUse struct{ Size, Peak int }

// DNSSummary counts the DNS answers seen and the bounds they met.
type DNSSummary struct {
	Answers, Malformed, Cut, Lost uint64 // taken in; not answers; cut short; dropped by the kernel (ring full)
	Addrs, Names                  int    // kept now
	AddrsEvicted, NamesEvicted    uint64 // forgotten for room
	Stale                         int    // destinations going to a stale address now
}

// WithDrops adds to the listeners under pressure those that dropped SYNs
// during the trace (package listeners), and their drops: a listener the
// dump shows full is the one that dropped.
func WithDrops(ls []Listener, dropping []listeners.State) []Listener {
	for i := range dropping {
		d := &dropping[i]
		found := false
		for j := range ls {
			l := &ls[j]
			if l.Netns == d.Netns && l.Port == d.Port && l.Addr == d.Addr {
				l.Drops += d.Total
				l.Overflowing = l.Overflowing || d.Overflowing
				if !l.OwnerKnown && d.Owner.Known {
					l.OwnerKnown, l.PID, l.Comm, l.Owner = true, d.Owner.PID, d.Owner.Comm, d.Owner.ID
				}
				found = true
				break
			}
		}
		if found {
			continue
		}
		ls = append(ls, Listener{Netns: d.Netns, Addr: d.Addr, Port: d.Port,
			OwnerKnown: d.Owner.Known, PID: d.Owner.PID, Comm: d.Owner.Comm, Owner: d.Owner.ID,
			AcceptQ: d.Queue, Backlog: d.Backlog, Full: !d.Closed && d.Queue > 0 && d.Queue >= d.Backlog,
			Drops: d.Total, Overflowing: d.Overflowing})
	}
	return ls
}
