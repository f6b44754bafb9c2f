package pipeline

import (
	"net/netip"
	"testing"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// TestHeldDrops: drops of no socket go to the attempt of their 4-tuple
// when it leaves syn-sent: a SYN's as sent, a SYN-ACK's (its addresses
// the other way round) as received; the kernel's own keep their reason.
func TestHeldDrops(t *testing.T) {
	client, server := netip.MustParseAddr("10.200.0.1"), netip.MustParseAddr("10.200.0.2")
	drop := func(src, dst netip.Addr, sport, dport uint16, dir events.DropDir, reason string) *record.Packet {
		return &record.Packet{Transition: events.Transition{Kind: events.KindDrop, Src: src, Dst: dst, SPort: sport, DPort: dport,
			Drops: 1, DropReason: 12, DropDir: dir}, DropReasonName: reason}
	}
	end := func(sport uint16, drops uint32, reason string) *record.Transition {
		return &record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Close, Src: client, Dst: server,
			SPort: sport, DPort: 9092, Drops: drops, DropDir: events.DropSent}, DropReasonName: reason}
	}
	for _, tc := range []struct {
		name       string
		drops      []*record.Packet
		end        *record.Transition
		wantDrops  uint32
		wantReason string
		wantDir    events.DropDir
	}{
		{"SYNs dropped on a server's input", []*record.Packet{
			drop(client, server, 40000, 9092, events.DropSent, "NETFILTER_DROP"),
			drop(client, server, 40000, 9092, events.DropSent, "NETFILTER_DROP")},
			end(40000, 0, ""), 2, "NETFILTER_DROP", events.DropSent},
		{"SYN-ACK dropped on the way back", []*record.Packet{drop(server, client, 9092, 40001, events.DropReceived, "NETFILTER_DROP")},
			end(40001, 0, ""), 1, "NETFILTER_DROP", events.DropReceived},
		{"another attempt's", []*record.Packet{drop(client, server, 40002, 9092, events.DropSent, "NETFILTER_DROP")},
			end(40003, 0, ""), 0, "", events.DropSent},
		{"the kernel's keep their reason", []*record.Packet{drop(client, server, 40004, 9092, events.DropSent, "NETFILTER_DROP")},
			end(40004, 2, "QDISC_DROP"), 3, "QDISC_DROP", events.DropSent},
	} {
		p := &pipeline{}
		for _, d := range tc.drops {
			p.holdDrop(d)
		}
		p.takeHeldDrops(tc.end)
		if tc.end.Drops != tc.wantDrops || tc.end.DropReasonName != tc.wantReason || tc.end.DropDir != tc.wantDir {
			t.Errorf("%s: drops %d %q %v, want %d %q %v", tc.name, tc.end.Drops, tc.end.DropReasonName, tc.end.DropDir,
				tc.wantDrops, tc.wantReason, tc.wantDir)
		}
	}
}
