package pipeline

import (
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/dns/dnslookup"
	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// View gives other goroutines (a metrics scrape) a consistent view of
// a running trace.
type View struct{ p *pipeline }

// State is a running trace at one moment.
type State struct {
	Time    time.Time
	Started time.Time
	// Transitions received from the kernel, lost (ring buffer full) and
	// skipped (the kernel did not run the program), since start.
	Transitions, Lost, Skipped uint64
	// LastRecord: when the latest record was read.
	LastRecord time.Time
	// Dests: connect attempts by destination (analysis), failing first.
	Dests        []analysis.Dest
	DestsEvicted uint64
	// Sockets: live sockets that pass the filter, by state: the table's,
	// plus the time-wait and request sockets of the last dump.
	Sockets [tcpstate.Last + 1]int
	// Pressure: as of the last reconciliation.
	Pressure analysis.Pressure
	// Reconciliations since start, and what they changed.
	Reconciles                   uint64
	LastReconcile                time.Time
	Closed, Added, Changed       uint64
	History                      timeline.Stats
	ReconcileEvery, ForgetUnused time.Duration
	// DNS: what passive DNS saw and kept; nil without it (--no-dns).
	DNS *DNSState
	// CgroupsUncached: cgroups the last walk of the cgroup2 tree found
	// but did not cache (too many, or too many bytes of paths).
	CgroupsUncached uint64
	// Recording: the recording's state (-w); nil without one.
	Recording *RecordingState
	// Flight: the flight recorder's figures; nil without one.
	Flight *FlightState
	// Listeners that dropped SYNs during the trace (accept queue full),
	// most drops first.
	Listeners []listeners.State
}

// RecordingState is the recording's (-w) state as of its last pause or
// resumption.
type RecordingState struct {
	File   string    // the file written, or the one that failed
	Paused bool      // by a write error: tracing goes on, recording does not
	Since  time.Time // paused since
	Err    string    // why
	Errors uint64    // write errors that paused it, since start
}

// DNSState is what passive DNS did since start.
type DNSState struct {
	// StaleDestinations: destinations whose last attempt went to an
	// address its name no longer resolves to (stale-dns raised, no
	// success since).
	StaleDestinations int
	Cache             dnscache.Stats
	// Sent and Lost by the kernel (ring buffer full); Watching: passive
	// DNS is attached (else names come from nowhere).
	Sent, Lost uint64
	Watching   bool
	Lookups    dnslookup.Stats // socktrace's own lookups
}

// State returns the trace's state now.
func (x *View) State() *State {
	p := x.p
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &State{
		Time: time.Now(), Started: p.started,
		Transitions: p.transitions, Lost: p.lost, Skipped: p.skipped, LastRecord: p.lastWall,
		Dests: p.conns.Dests(), DestsEvicted: p.conns.Evicted(),
		Pressure:   p.pressure,
		Reconciles: p.reconciles, LastReconcile: p.lastReconcile,
		Closed: p.reconciledClosed, Added: p.reconciledAdded, Changed: p.reconciledChanged,
		History: p.table.Stats(), ReconcileEvery: p.o.ReconcileEvery,
	}
	p.table.Live(func(r *timeline.Row) {
		subj := subjectOfRow(r)
		if p.o.Match(&subj) && r.State <= tcpstate.Last {
			s.Sockets[r.State]++
		}
	})
	for st, n := range p.minis {
		s.Sockets[st] += n
	}
	s.DNS = p.dnsState()
	if p.ids != nil {
		s.CgroupsUncached = p.ids.Cgroups().Dropped()
	}
	s.Recording = p.recording()
	if p.flight != nil {
		fs := p.flight.Stats()
		s.Flight = &fs
	}
	s.Listeners = p.listen.Dropping()
	return s
}

// Recording is the recording's state (-w), nil without one.
func (x *View) Recording() *RecordingState {
	x.p.mu.Lock()
	defer x.p.mu.Unlock()
	return x.p.recording()
}

func (p *pipeline) recording() *RecordingState {
	if p.o.Write == "" || p.recState.File == "" {
		return nil
	}
	r := p.recState
	return &r
}

// Heartbeat is when the reading goroutine last came round its loop (it
// does at least once a second while it runs).
func (x *View) Heartbeat() time.Time { return time.Unix(0, x.p.beat.Load()) }

// Identify is the identity of cgroup v2 id cgroup (nil if unknown).
func (x *View) Identify(cgroup uint64) *identity.Identity {
	if x.p.ids == nil {
		return nil
	}
	return x.p.ids.ByID(cgroup, 0)
}

// NetnsName is how the trace names network namespace ino, as netns_name
// does (pod:NAMESPACE/POD, netns:NAME, host, COMM/PID); "" for a
// namespace no process lives in any more.
func (x *View) NetnsName(ino uint32) string {
	if x.p.netnsName == nil {
		return ""
	}
	return x.p.netnsName(ino)
}
