package analysis

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/tcpstate"
)

// TestBackends: a VIP whose NAT alternates between a dead backend and a
// live one never fails three times in a row, yet it is failing: through
// the dead backend. The alert names both, with their counts; the
// destination recovers when the dead backend answers.
func TestBackends(t *testing.T) {
	dead, live := netip.MustParseAddrPort("10.4.1.81:9092"), netip.MustParseAddrPort("10.4.1.82:9092")
	s := time.Second
	g := newRig(Options{FailAfter: 3})
	for i := range 6 {
		at := time.Duration(i) * 4 * s
		if i%2 == 0 {
			g.runVia(try{9092, at, 3 * s, tcpstate.Close, unix.ETIMEDOUT}, dead)
		} else {
			g.runVia(try{9092, at, time.Millisecond, tcpstate.Established, 0}, live)
		}
		if i < 4 && len(g.alerts) != 0 {
			t.Fatalf("alert after %d attempts: %+v", i+1, g.alerts[0])
		}
	}
	if len(g.alerts) != 1 || g.alerts[0].Kind != TurnedFailing {
		t.Fatalf("after 3 timeouts through %v: alerts %+v, want one 'failing'", dead, g.alerts)
	}
	d := g.alerts[0].Dest
	addr := func(a netip.AddrPort) string { return a.String() }
	want := "fails through 10.4.1.81:9092: 3 of 3 timed out; 10.4.1.82:9092 answered 2 of 2"
	if got := d.BackendsText(addr); got != want || !d.Failing || d.Streak != 1 || !d.FailingSince.Equal(t0) {
		t.Errorf("alert: %q, failing %v, streak %d since %v; want %q, failing since %v", got, d.Failing, d.Streak, d.FailingSince, want, t0)
	}
	// The live backend answers: the destination still fails.
	g.runVia(try{9092, 30 * s, time.Millisecond, tcpstate.Established, 0}, live)
	got, _ := g.c.Lookup(DestKey{1, broker, 9092})
	if len(g.alerts) != 1 || !got.Failing || !got.FailingSince.Equal(t0) {
		t.Errorf("after the live backend answered: alerts %d, failing %v since %v", len(g.alerts), got.Failing, got.FailingSince)
	}
	// The alert's copy is its own.
	if d.Backends[1].Successes != 2 {
		t.Errorf("the alert's backends changed after it was raised: %+v", d.Backends)
	}
	// The dead backend answers: recovered.
	g.runVia(try{9092, 34 * s, time.Millisecond, tcpstate.Established, 0}, dead)
	if len(g.alerts) != 2 || g.alerts[1].Kind != Recovered || g.alerts[1].Failed != 3 {
		t.Fatalf("after the dead backend answered: alerts %+v, want 'recovered' after 3", g.alerts)
	}
	if got := g.alerts[1].Dest.BackendsText(addr); got != "through 10.4.1.81:9092 answered 1 of 4, 3 timed out; 10.4.1.82:9092 answered 4 of 4" {
		t.Errorf("recovered: %q", got)
	}
	// No NAT: no backends, the text says nothing.
	g.run(try{9093, 40 * s, time.Millisecond, tcpstate.Established, 0})
	if got, _ := g.c.Lookup(DestKey{1, broker, 9093}); got.Backends != nil || got.BackendsText(addr) != "" {
		t.Errorf("a destination nothing translated has backends %+v", got.Backends)
	}
}

// TestBackendsBounded: a destination keeps at most MaxBackends.
func TestBackendsBounded(t *testing.T) {
	g := newRig(Options{FailAfter: 3})
	for i := range MaxBackends + 5 {
		b := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 4, 1, byte(i)}), 9092)
		g.runVia(try{9092, time.Duration(i) * time.Second, time.Millisecond, tcpstate.Established, 0}, b)
	}
	got, _ := g.c.Lookup(DestKey{1, broker, 9092})
	if len(got.Backends) != MaxBackends || got.Attempts != MaxBackends+5 {
		t.Errorf("%d backends, %d attempts; want %d, %d", len(got.Backends), got.Attempts, MaxBackends, MaxBackends+5)
	}
}
