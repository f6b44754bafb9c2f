package analysis

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

var (
	t0     = time.Date(2026, 11, 25, 3, 12, 0, 0, time.UTC)
	broker = netip.MustParseAddr("10.1.2.3")
	local  = netip.MustParseAddr("10.0.0.5")
)

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		err  unix.Errno
		want Outcome
	}{
		{unix.ECONNREFUSED, Refused},
		{unix.ETIMEDOUT, Timeout},
		{unix.EHOSTUNREACH, Unreachable},
		{unix.ENETUNREACH, Unreachable},
		{unix.EHOSTDOWN, Unreachable},
		{0, Aborted}, // the application closed it
		{unix.ECONNRESET, Aborted},
		{unix.EPERM, Aborted},
	}
	for _, tt := range tests {
		if got := OutcomeOf(uint16(tt.err)); got != tt.want {
			t.Errorf("OutcomeOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// try drives one connect through a timeline and the tracker:
// close -> syn-sent at start, and syn-sent -> end after took.
type try struct {
	port  uint16
	start time.Duration // from t0
	took  time.Duration
	end   tcpstate.State
	err   unix.Errno
}

type rig struct {
	tb     *timeline.Table
	c      *Connects
	cookie uint64
	alerts []*Alert
}

func newRig(o Options) *rig { return &rig{tb: timeline.New(), c: NewConnects(o)} }

func (g *rig) apply(tr *record.Transition) {
	r := g.tb.Apply(tr)
	if a := g.c.Observe(tr, r); a != nil {
		g.alerts = append(g.alerts, a)
	}
}

func (g *rig) run(a try) { g.runVia(a, netip.AddrPort{}) }

// runVia is run for an attempt NAT sent to the backend actual.
func (g *rig) runVia(a try, actual netip.AddrPort) {
	g.cookie++
	mk := func(at time.Duration, old, new tcpstate.State) *record.Transition {
		return &record.Transition{Transition: events.Transition{Time: t0.Add(at), Ktime: uint64(at) + 1, Cookie: g.cookie, Netns: 1,
			Family: unix.AF_INET, Src: local, Dst: broker, DPort: a.port, Old: old, New: new,
			OwnerKnown: true, OwnerPID: 42, OwnerComm: "java"}}
	}
	g.apply(mk(a.start, tcpstate.Close, tcpstate.SynSent))
	end := mk(a.start+a.took, tcpstate.SynSent, a.end)
	end.InOld, end.InOldKnown, end.SkErr = a.took, true, uint16(a.err)
	end.OwnerKnown = false // softirq: the timeline fills the owner in
	end.Actual = actual
	g.apply(end)
}

func TestConnectsStreakAndAlerts(t *testing.T) {
	g := newRig(Options{FailAfter: 3})
	s := time.Second
	g.run(try{9092, 0, 2 * time.Millisecond, tcpstate.Established, 0})
	g.run(try{9092, 10 * s, 3 * s, tcpstate.Close, unix.ETIMEDOUT})
	g.run(try{9092, 14 * s, 3 * s, tcpstate.Close, unix.ETIMEDOUT})
	if len(g.alerts) != 0 {
		t.Fatalf("alert after 2 failures: %+v", g.alerts[0])
	}
	g.run(try{9092, 18 * s, 1 * time.Millisecond, tcpstate.Close, unix.ECONNREFUSED})
	if len(g.alerts) != 1 || g.alerts[0].Kind != TurnedFailing {
		t.Fatalf("after 3 failures: alerts %+v, want one 'failing'", g.alerts)
	}
	a := g.alerts[0]
	d := a.Dest
	if d.Streak != 3 || d.Attempts != 4 || d.Successes != 1 || d.Failures[Timeout] != 2 || d.Failures[Refused] != 1 || d.Failed() != 3 {
		t.Errorf("failing alert dest %+v", d)
	}
	if !d.FailingSince.Equal(t0.Add(10*s)) || !d.LastSuccess.Equal(t0.Add(2*time.Millisecond)) || !a.Time.Equal(t0.Add(18*s+time.Millisecond)) {
		t.Errorf("failing since %v, last success %v, alert at %v", d.FailingSince, d.LastSuccess, a.Time)
	}
	if !d.OwnerKnown || d.PID != 42 || d.Comm != "java" || d.LastOutcome != Refused || !d.Failing {
		t.Errorf("owner/outcome %+v", d)
	}
	// More failures raise no more alerts; a success recovers.
	g.run(try{9092, 20 * s, 3 * s, tcpstate.Close, unix.ETIMEDOUT})
	g.run(try{9092, 30 * s, 5 * time.Millisecond, tcpstate.Established, 0})
	if len(g.alerts) != 2 || g.alerts[1].Kind != Recovered {
		t.Fatalf("alerts %+v, want failing then recovered", g.alerts)
	}
	r := g.alerts[1]
	if r.Failed != 4 || r.FailedFor != 20*s+5*time.Millisecond || r.Dest.Streak != 0 || r.Dest.Failing || r.Dest.LastConnect != 5*time.Millisecond {
		t.Errorf("recovered alert %+v", r)
	}
	// Another destination is unaffected.
	g.run(try{9093, 40 * s, time.Millisecond, tcpstate.Established, 0})
	ds := g.c.Dests()
	if len(ds) != 2 || ds[0].Port != 9092 || ds[0].Attempts != 6 || ds[1].Port != 9093 || ds[1].Attempts != 1 || ds[1].Failed() != 0 {
		t.Errorf("dests %+v", ds)
	}
	for _, d := range ds {
		if d.InFlight != 0 {
			t.Errorf("%d in flight after every try ended: %+v", d.InFlight, d)
		}
	}
}

// A socket the snapshot found in syn-sent is an try in flight; its
// end counts once.
func TestConnectsPending(t *testing.T) {
	g := newRig(Options{FailAfter: 1})
	g.tb.AddSnapshot([]snapshot.Socket{{Cookie: 500, State: tcpstate.SynSent, Netns: 1, Family: unix.AF_INET,
		Src: local, Dst: broker, SPort: 40000, DPort: 9092, Inode: 7}},
		procs.Table{7: {{PID: 42, Comm: "java", FD: 3}}}, 10, 20)
	g.c.Pending(g.tb.Lookup(500), t0)
	g.c.Pending(g.tb.Lookup(500), t0) // twice is once
	d, _ := g.c.Lookup(DestKey{1, broker, 9092})
	if d.Attempts != 1 || d.InFlight != 1 || d.PID != 42 {
		t.Fatalf("pending: %+v", d)
	}
	end := &record.Transition{Transition: events.Transition{Time: t0.Add(time.Second), Ktime: 100, Cookie: 500, Netns: 1, Family: unix.AF_INET,
		Src: local, Dst: broker, SPort: 40000, DPort: 9092, Old: tcpstate.SynSent, New: tcpstate.Close, SkErr: uint16(unix.ETIMEDOUT)}}
	g.apply(end)
	d, _ = g.c.Lookup(DestKey{1, broker, 9092})
	if !d.FailingSince.Equal(t0) || !d.FailingSinceAtLeast {
		t.Errorf("failing since %v (at least: %v), want before the trace began at %v", d.FailingSince, d.FailingSinceAtLeast, t0)
	}
	if d.Attempts != 1 || d.InFlight != 0 || d.Failures[Timeout] != 1 || !d.Failing || len(g.alerts) != 1 || g.alerts[0].Dest.PID != 42 {
		t.Errorf("after it timed out: %+v, alerts %+v", d, g.alerts)
	}
}

// Without a snapshot, an try seen only at its end still counts, once.
func TestConnectsEndOnly(t *testing.T) {
	g := newRig(Options{})
	g.apply(&record.Transition{Transition: events.Transition{Time: t0, Ktime: 100, Cookie: 9, Netns: 1, Family: unix.AF_INET,
		Dst: broker, DPort: 80, Old: tcpstate.SynSent, New: tcpstate.Close, SkErr: uint16(unix.ECONNREFUSED)}})
	d, ok := g.c.Lookup(DestKey{1, broker, 80})
	if !ok || d.Attempts != 1 || d.Failures[Refused] != 1 || d.InFlight != 0 {
		t.Errorf("%+v", d)
	}
}

func TestConnectsEviction(t *testing.T) {
	g := newRig(Options{FailAfter: 1, MaxDests: 3})
	g.run(try{1, 0, time.Millisecond, tcpstate.Close, unix.ECONNREFUSED}) // failing: kept
	for p := uint16(2); p <= 6; p++ {
		g.run(try{p, time.Duration(p) * time.Second, time.Millisecond, tcpstate.Established, 0})
	}
	ds := g.c.Dests()
	var ports []uint16
	for _, d := range ds {
		ports = append(ports, d.Port)
	}
	if len(ds) != 3 || ds[0].Port != 1 || g.c.Evicted() != 3 {
		t.Errorf("kept ports %v (evicted %d), want the failing 1 and the 2 most recent, 3 evicted", ports, g.c.Evicted())
	}
}

func TestMeasure(t *testing.T) {
	tb := timeline.New()
	peer := netip.MustParseAddr("10.9.9.9")
	sock := func(cookie uint64, st tcpstate.State, sport, dport uint16, inode uint32) snapshot.Socket {
		return snapshot.Socket{Cookie: cookie, State: st, Netns: 1, Family: unix.AF_INET, Src: local, Dst: peer, SPort: sport, DPort: dport, Inode: inode}
	}
	sec := uint64(time.Second)
	// Snapshot at 10s: cookie 1 already in close-wait; cookie 2 established.
	tb.AddSnapshot([]snapshot.Socket{sock(1, tcpstate.CloseWait, 80, 5001, 11), sock(2, tcpstate.Established, 80, 5002, 12)}, nil, 10*sec, 10*sec)
	// Cookie 2 enters close-wait at 50s, cookie 3 (new) at 58s.
	tb.Apply(&record.Transition{Transition: events.Transition{Ktime: 50 * sec, Cookie: 2, Netns: 1, Family: unix.AF_INET, Src: local, Dst: peer, SPort: 80, DPort: 5002, Old: tcpstate.Established, New: tcpstate.CloseWait}})
	tb.Apply(&record.Transition{Transition: events.Transition{Ktime: 57 * sec, Cookie: 3, Netns: 1, Family: unix.AF_INET, Src: local, Dst: peer, SPort: 80, DPort: 5003, Old: tcpstate.Listen, New: tcpstate.SynRecv}})
	tb.Apply(&record.Transition{Transition: events.Transition{Ktime: 58 * sec, Cookie: 3, Netns: 1, Family: unix.AF_INET, Src: local, Dst: peer, SPort: 80, DPort: 5003, Old: tcpstate.SynRecv, New: tcpstate.Established}})
	tb.Apply(&record.Transition{Transition: events.Transition{Ktime: 58 * sec, Cookie: 3, Netns: 1, Family: unix.AF_INET, Src: local, Dst: peer, SPort: 80, DPort: 5003, Old: tcpstate.Established, New: tcpstate.CloseWait}})

	listener := sock(10, tcpstate.Listen, 80, 0, 20)
	listener.Dst = netip.IPv4Unspecified()
	listener.RecvQ, listener.SendQ = 5, 5
	quiet := sock(11, tcpstate.Listen, 81, 0, 21)
	quiet.Dst = netip.IPv4Unspecified()
	quiet.SendQ = 128
	socks := []snapshot.Socket{
		sock(1, tcpstate.CloseWait, 80, 5001, 11),
		sock(2, tcpstate.CloseWait, 80, 5002, 12),
		sock(3, tcpstate.CloseWait, 80, 5003, 13),
		sock(4, tcpstate.TimeWait, 33000, 443, 0),
		sock(5, tcpstate.TimeWait, 33001, 443, 0),
		sock(6, tcpstate.TimeWait, 33002, 8443, 0),
		sock(7, tcpstate.SynRecv, 81, 6000, 0),
		listener, quiet,
	}
	owners := procs.Table{11: {{PID: 100, Comm: "app"}}, 12: {{PID: 100, Comm: "app"}}, 13: {{PID: 200, Comm: "other"}}, 20: {{PID: 300, Comm: "nginx"}}}
	p := Measure(PressureInput{Sockets: socks, Owners: owners, Table: tb, Now: 60 * sec, Start: 10 * sec, CloseWaitAfter: 5 * time.Second})

	// cookie 3 has been in close-wait 2s: under the threshold.
	if len(p.CloseWait) != 1 {
		t.Fatalf("close-wait leaks %+v, want only app's", p.CloseWait)
	}
	l := p.CloseWait[0]
	if l.PID != 100 || l.Comm != "app" || l.Count != 2 || l.Oldest != 50*time.Second || !l.OldestAtLeast || len(l.Peers) != 2 {
		t.Errorf("app's leak %+v, want 2 sockets, oldest at least 50s (in close-wait since before the trace)", l)
	}
	if len(p.TimeWait) != 2 || p.TimeWait[0].Port != 443 || p.TimeWait[0].N != 2 || p.TimeWait[1].N != 1 {
		t.Errorf("time-wait %+v", p.TimeWait)
	}
	if len(p.Listeners) != 2 || !p.Listeners[0].Full || p.Listeners[0].PID != 300 || p.Listeners[0].AcceptQ != 5 ||
		p.Listeners[1].Port != 81 || p.Listeners[1].SynRecv != 1 || p.Listeners[1].Full {
		t.Errorf("listeners %+v", p.Listeners)
	}
	// The user's filter applies.
	p = Measure(PressureInput{Sockets: socks, Owners: owners, Table: tb, Now: 60 * sec, Start: 10 * sec,
		Keep: func(s *snapshot.Socket) bool { return s.DPort != 5001 }})
	if len(p.CloseWait) != 2 || p.CloseWait[0].Count != 1 || p.CloseWait[0].OldestAtLeast {
		t.Errorf("filtered close-wait %+v", p.CloseWait)
	}
}

// TestTopCountsKeepsOnlyTheTop: the top n of many counts (one per
// time-wait peer: tens of thousands on a busy host) does not keep the
// slice of all of them alive until the next measure.
func TestTopCountsKeepsOnlyTheTop(t *testing.T) {
	m := map[Count]int{}
	for i := 0; i < 10000; i++ {
		m[Count{Port: uint16(i)}] = i % 7
	}
	got := topCounts(m, 5)
	if len(got) != 5 || cap(got) != 5 {
		t.Errorf("top 5 of 10,000: len %d, cap %d; want both 5", len(got), cap(got))
	}
	for _, c := range got {
		if c.N != 6 {
			t.Errorf("top counts %v: want the count 6 each", got)
			break
		}
	}
}
