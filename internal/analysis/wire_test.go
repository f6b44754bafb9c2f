package analysis

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

func TestCause(t *testing.T) {
	s := time.Second
	tests := []struct {
		a    Attempt
		want string
	}{
		{Attempt{Outcome: Timeout, SYNs: 3, Span: 7 * s, SpanKnown: true}, "3 SYNs over 7.0s, no reply"},
		{Attempt{Outcome: Refused, SYNs: 1, Span: 200 * time.Microsecond, SpanKnown: true, RstReceived: true}, "RST received after 0.20ms"},
		{Attempt{Outcome: Aborted, SYNs: 1, Span: 56400 * time.Microsecond, SpanKnown: true}, "closed by the application after 56.4ms, no reply"},
		{Attempt{Outcome: Aborted, SYNs: 2, Span: 3 * s, SpanKnown: true}, "closed by the application after 3.0s, no reply to 2 SYNs"},
		{Attempt{Outcome: Aborted, SYNs: 1, Span: 3 * s, SpanKnown: true, Err: uint16(unix.EPROTO)}, "EPROTO after 1 SYN over 3.0s"},
		{Attempt{Outcome: Aborted, SYNs: 1, Span: 10 * time.Millisecond, SpanKnown: true, RstReceived: true}, "RST received after 1 SYN over 10.0ms"},
		{Attempt{Outcome: Unreachable, SYNs: 2, Span: 3 * s, SpanKnown: true, Err: uint16(unix.EHOSTUNREACH)}, "EHOSTUNREACH (ICMP or no route) after 2 SYNs over 3.0s"},
		{Attempt{Outcome: Established, SYNs: 2, Span: 1 * s, SpanKnown: true}, "connected after 2 SYNs over 1.0s"},
		{Attempt{Outcome: Established, SYNs: 1}, "connected"},
		{Attempt{Outcome: Aborted, SYNs: 1}, "closed by the application before a reply"},
		// Dropped on this host.
		{Attempt{Outcome: Timeout, SYNs: 6, Span: 7 * s, SpanKnown: true, Drops: 6, DropReason: "NETFILTER_DROP", DropDir: events.DropSent},
			"6 SYNs dropped on this host (NETFILTER_DROP, sent)"},
		{Attempt{Outcome: Timeout, SYNs: 3, Span: 7 * s, SpanKnown: true, Drops: 1, DropReason: "nf_hook_slow", DropDir: events.DropSent},
			"3 SYNs over 7.0s, 1 SYN dropped on this host (nf_hook_slow, sent)"},
		{Attempt{Outcome: Timeout, SYNs: 3, Span: 7 * s, SpanKnown: true, Drops: 3, DropReason: "NETFILTER_DROP", DropDir: events.DropReceived},
			"3 SYNs over 7.0s, 3 SYN-ACKs dropped on this host (NETFILTER_DROP, received)"},
		{Attempt{Outcome: Established, SYNs: 2, Span: 1 * s, SpanKnown: true, Drops: 1, DropReason: "QDISC_DROP", DropDir: events.DropSent},
			"connected after 2 SYNs over 1.0s, 1 SYN dropped on this host (QDISC_DROP, sent)"},
		{Attempt{Outcome: Aborted, SYNs: 3, Span: 2500 * time.Millisecond, SpanKnown: true, Drops: 3, DropReason: "NETFILTER_DROP", DropDir: events.DropSent},
			"closed by the application after 2.5s, 3 SYNs dropped on this host (NETFILTER_DROP, sent)"},
		{Attempt{Outcome: Aborted, SYNs: 3, Span: 2500 * time.Millisecond, SpanKnown: true, Drops: 1, DropReason: "NETFILTER_DROP", DropDir: events.DropSent},
			"closed by the application after 2.5s, no reply to 3 SYNs, 1 SYN dropped on this host (NETFILTER_DROP, sent)"},
	}
	for _, tt := range tests {
		if got := tt.a.Cause(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.a, got, tt.want)
		}
	}
}

// TestWirePerDestination: SYN retransmits, resets, bytes and handshake
// percentiles add up per destination, and the last attempt's cause is
// in the alert.
func TestWirePerDestination(t *testing.T) {
	g := newRig(Options{FailAfter: 2})
	for i := 0; i < 100; i++ { // handshakes of 1..100 ms
		g.cookie++
		start := time.Duration(i) * time.Second
		syn := &record.Transition{Transition: events.Transition{Time: t0.Add(start), Ktime: uint64(start) + 1, Cookie: g.cookie, Netns: 1,
			Family: unix.AF_INET, Src: local, Dst: broker, DPort: 443, Old: tcpstate.Close, New: tcpstate.SynSent,
			OwnerKnown: true, OwnerPID: 42, OwnerComm: "curl"}}
		g.apply(syn)
		took := time.Duration(i+1) * time.Millisecond
		est := *syn
		est.Old, est.New, est.Ktime, est.Time = tcpstate.SynSent, tcpstate.Established, syn.Ktime+uint64(took), syn.Time.Add(took)
		est.InOld, est.InOldKnown = took, true
		g.apply(&est)
		cl := est
		cl.Old, cl.New, cl.Ktime = tcpstate.LastAck, tcpstate.Close, est.Ktime+1000
		cl.TCPStats, cl.BytesAcked, cl.BytesReceived, cl.TotalRetrans = true, 1000, 50, 2
		cl.RstSent = i == 0
		g.apply(&cl)
	}
	// Two attempts that time out after 2 retransmitted SYNs.
	for i := 0; i < 2; i++ {
		g.cookie++
		start := time.Duration(200+10*i) * time.Second
		syn := &record.Transition{Transition: events.Transition{Time: t0.Add(start), Ktime: uint64(start) + 1, Cookie: g.cookie, Netns: 1,
			Family: unix.AF_INET, Src: local, Dst: broker, DPort: 443, Old: tcpstate.Close, New: tcpstate.SynSent,
			OwnerKnown: true, OwnerPID: 42, OwnerComm: "curl"}}
		g.apply(syn)
		end := *syn
		end.Old, end.New, end.SkErr, end.SynRetrans = tcpstate.SynSent, tcpstate.Close, uint16(unix.ETIMEDOUT), 2
		end.InOld, end.InOldKnown, end.Ktime = 7*time.Second, true, syn.Ktime+uint64(7*time.Second)
		g.apply(&end)
	}
	d, ok := g.c.Lookup(DestKey{1, broker, 443})
	if !ok {
		t.Fatal("no destination")
	}
	p50, n := d.HandshakePercentile(50)
	p99, _ := d.HandshakePercentile(99)
	if n != 100 || p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("handshakes %d, p50 %s, p99 %s; want 100, 50ms, 99ms", n, p50, p99)
	}
	if d.SynRetrans != 4 || d.BytesAcked != 100000 || d.BytesReceived != 5000 || d.Retrans != 200 || d.ResetsSent != 1 {
		t.Errorf("totals: %d SYN retransmits, %d/%d bytes, %d retransmits, %d resets sent", d.SynRetrans, d.BytesAcked, d.BytesReceived, d.Retrans, d.ResetsSent)
	}
	if len(g.alerts) != 1 || g.alerts[0].Dest.Last.Cause() != "3 SYNs over 7.0s, no reply" {
		t.Errorf("alerts %+v", g.alerts)
	}
}
