package output

import (
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// TestJSONWire: the wire fields are on the transitions they explain, and
// only there.
func TestJSONWire(t *testing.T) {
	stats := func(tr *record.Transition) {
		tr.TCPStats = true
		tr.BytesAcked, tr.BytesReceived, tr.SegsOut, tr.SegsIn, tr.TotalRetrans = 1200000, 3400, 900, 40, 3
		tr.SRTT = 12 * time.Millisecond
	}
	tests := []struct {
		name     string
		old, new tcpstate.State
		change   func(*record.Transition)
		want     map[string]any // fields that must be there, with values
		absent   []string
	}{
		{"timed-out attempt", tcpstate.SynSent, tcpstate.Close, func(tr *record.Transition) {
			tr.SynRetrans, tr.SkErr = 2, uint16(unix.ETIMEDOUT)
			stats(tr)
			tr.BytesAcked, tr.BytesReceived = 0, 0
		}, map[string]any{"syn_retransmits": num("2"), "rst_received": false, "bytes_acked": num("0"), "lifetime_ns": nil}, nil},
		{"connected", tcpstate.SynSent, tcpstate.Established, stats,
			map[string]any{"syn_retransmits": num("0"), "srtt_us": num("12000")}, []string{"bytes_acked", "rst_received", "lifetime_ns"}},
		{"closed after a life", tcpstate.LastAck, tcpstate.Close, func(tr *record.Transition) {
			stats(tr)
			tr.RstReceived, tr.Lifetime, tr.LifetimeKnown = true, 2500*time.Millisecond, true
		}, map[string]any{"bytes_acked": num("1200000"), "bytes_received": num("3400"), "segs_out": num("900"), "segs_in": num("40"),
			"total_retrans": num("3"), "srtt_us": num("12000"), "rst_received": true, "rst_sent": false, "lifetime_ns": num("2500000000")},
			[]string{"syn_retransmits"}},
		{"closed, counters not read", tcpstate.FinWait2, tcpstate.Close, nil,
			map[string]any{"bytes_acked": nil, "srtt_us": nil, "rst_sent": false}, nil},
		{"mid-life", tcpstate.Established, tcpstate.CloseWait, stats, nil,
			[]string{"syn_retransmits", "srtt_us", "bytes_acked", "rst_received", "lifetime_ns", "drops"}},
		{"SYNs dropped on this host", tcpstate.SynSent, tcpstate.Close, func(tr *record.Transition) {
			tr.SynRetrans, tr.SkErr = 5, uint16(unix.ETIMEDOUT)
			tr.Drops, tr.DropReasonName, tr.DropDir = 6, "NETFILTER_DROP", events.DropSent
		}, map[string]any{"drops": num("6"), "drop_reason": "NETFILTER_DROP", "drop_direction": "sent"}, nil},
		{"nothing dropped", tcpstate.SynSent, tcpstate.Close, nil,
			map[string]any{"drops": num("0"), "drop_reason": nil, "drop_direction": nil}, nil},
	}
	for _, c := range tests {
		tr := otTransition()
		tr.Old, tr.New = c.old, c.new
		if c.change != nil {
			c.change(&tr)
		}
		var buf otBuffer
		if err := NewJSON(&buf).Transition(&tr); err != nil {
			t.Fatal(err)
		}
		m := otRecord(t, buf.Bytes())
		for k, v := range c.want {
			if got, ok := m[k]; !ok || !reflect.DeepEqual(got, v) {
				t.Errorf("%s: %q = %#v (present %v), want %#v", c.name, k, got, ok, v)
			}
		}
		for _, k := range c.absent {
			if _, ok := m[k]; ok {
				t.Errorf("%s: %q present, want absent: %s", c.name, k, buf.Bytes())
			}
		}
	}
}

func TestDetail(t *testing.T) {
	tests := []struct {
		name string
		tr   record.Transition
		info bool
		want string
	}{
		{"SYN retransmits", record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Close, SynRetrans: 2, SkErr: uint16(unix.ETIMEDOUT)}}, false, "2 SYN rexmit no reply"},
		{"unreachable", record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Close, SynRetrans: 1, SkErr: uint16(unix.EHOSTUNREACH)}}, false, "1 SYN rexmit"},
		{"given up at once", record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Close}}, false, "no reply"},
		{"refused", record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Close, RstReceived: true}}, false, "RST rcvd"},
		{"quiet close", record.Transition{Transition: events.Transition{Old: tcpstate.LastAck, New: tcpstate.Close, TCPStats: true, BytesAcked: 5}}, false, ""},
		{"close with -i", record.Transition{Transition: events.Transition{Old: tcpstate.LastAck, New: tcpstate.Close, TCPStats: true,
			BytesAcked: 1200000, BytesReceived: 3400, SRTT: 12 * time.Millisecond, TotalRetrans: 3}, Lifetime: 2500 * time.Millisecond, LifetimeKnown: true}, true, "1.2MB/3.4KB 12ms rtt 3 rexmit lived 2.5s"},
		{"connected with -i", record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Established, TCPStats: true, SRTT: 45 * time.Microsecond}}, true, "45us rtt"},
		{"reset sent", record.Transition{Transition: events.Transition{Old: tcpstate.Established, New: tcpstate.Close, RstSent: true}}, false, "RST sent"},
		{"SYNs dropped on this host", record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Close, SynRetrans: 5, SkErr: uint16(unix.ETIMEDOUT),
			Drops: 6, DropDir: events.DropSent}, DropReasonName: "NETFILTER_DROP"}, false, "5 SYN rexmit 6 SYNs dropped on this host (NETFILTER_DROP, sent)"},
		{"SYN-ACKs dropped on this host", record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Close, SynRetrans: 1, SkErr: uint16(unix.ETIMEDOUT),
			Drops: 2, DropDir: events.DropReceived}, DropReasonName: "nf_hook_slow"}, false, "1 SYN rexmit 2 SYN-ACKs dropped on this host (nf_hook_slow, received)"},
		{"one SYN of two dropped", record.Transition{Transition: events.Transition{Old: tcpstate.SynSent, New: tcpstate.Close, SynRetrans: 1, SkErr: uint16(unix.ETIMEDOUT),
			Drops: 1, DropDir: events.DropSent}, DropReasonName: "QDISC_DROP"}, false, "1 SYN rexmit no reply 1 SYN dropped on this host (QDISC_DROP, sent)"},
	}
	for _, c := range tests {
		if got := Detail(&c.tr, c.info); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestJSONPacket(t *testing.T) {
	for _, c := range []struct {
		kind events.Kind
		typ  string
		dir  any
	}{{events.KindRetransmit, "retransmit", nil}, {events.KindResetSent, "reset", "sent"},
		{events.KindResetReceived, "reset", "received"}, {events.KindError, "error", nil}} {
		tr := otTransition()
		tr.Kind, tr.Old, tr.New = c.kind, tcpstate.SynSent, tcpstate.SynSent
		var buf otBuffer
		if err := NewJSON(&buf).Packet((*record.Packet)(&tr)); err != nil {
			t.Fatal(err)
		}
		m := otRecord(t, buf.Bytes())
		if m["type"] != c.typ || m["direction"] != c.dir || m["state"] != "syn-sent" || m["cookie"] == nil {
			t.Errorf("%v: %s", c.kind, buf.Bytes())
		}
	}
}
