package tcpstate

import (
	"reflect"
	"strings"
	"testing"
)

// ssNames are the state names of ss(8)'s TCP-STATES, in kernel order.
var ssNames = []struct {
	name  string
	state State
	value uint8 // include/net/tcp_states.h
}{
	{"established", Established, 1},
	{"syn-sent", SynSent, 2},
	{"syn-recv", SynRecv, 3},
	{"fin-wait-1", FinWait1, 4},
	{"fin-wait-2", FinWait2, 5},
	{"time-wait", TimeWait, 6},
	{"close", Close, 7},
	{"close-wait", CloseWait, 8},
	{"last-ack", LastAck, 9},
	{"listening", Listen, 10},
	{"closing", Closing, 11},
	{"new-syn-recv", NewSynRecv, 12},
}

func TestStateValues(t *testing.T) {
	for _, c := range ssNames {
		if uint8(c.state) != c.value {
			t.Errorf("%s = %d, kernel has %d", c.name, uint8(c.state), c.value)
		}
	}
	if First != Established || Last != NewSynRecv {
		t.Errorf("First, Last = %v, %v; want established, new-syn-recv", First, Last)
	}
}

func TestStateString(t *testing.T) {
	for _, c := range ssNames {
		if got := c.state.String(); got != c.name {
			t.Errorf("State(%d).String() = %q, want %q", c.value, got, c.name)
		}
	}
	for _, c := range []struct {
		s    State
		want string
	}{
		{0, "unknown-0"},
		{13, "unknown-13"},
		{255, "unknown-255"},
	} {
		if got := c.s.String(); got != c.want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(c.s), got, c.want)
		}
	}
}

func TestStateValid(t *testing.T) {
	for s := 0; s < 256; s++ {
		want := s >= 1 && s <= 12
		if got := State(s).Valid(); got != want {
			t.Errorf("State(%d).Valid() = %v, want %v", s, got, want)
		}
	}
}

func TestParseNames(t *testing.T) {
	for _, c := range ssNames {
		got, err := Parse(c.name)
		if err != nil || got != c.state {
			t.Errorf("Parse(%q) = %v, %v; want %v, nil", c.name, got, err, c.state)
		}
		// Round trip through String.
		if back, err := Parse(c.state.String()); err != nil || back != c.state {
			t.Errorf("Parse(%v.String()) = %v, %v", c.state, back, err)
		}
	}
}

func TestParseAliases(t *testing.T) {
	tests := []struct {
		in   string
		want State
	}{
		// ss's State column.
		{"ESTAB", Established},
		{"estab", Established},
		{"SYN-SENT", SynSent},
		{"SYN-RECV", SynRecv},
		{"FIN-WAIT-1", FinWait1},
		{"FIN-WAIT-2", FinWait2},
		{"TIME-WAIT", TimeWait},
		{"CLOSE-WAIT", CloseWait},
		{"LAST-ACK", LastAck},
		{"LISTEN", Listen},
		{"listen", Listen},
		{"CLOSING", Closing},
		// tcpstates (bcc) and the kernel's TCP_ names.
		{"ESTABLISHED", Established},
		{"SYN_SENT", SynSent},
		{"SYN_RECV", SynRecv},
		{"FIN_WAIT1", FinWait1},
		{"FIN_WAIT2", FinWait2},
		{"FIN_WAIT_1", FinWait1},
		{"TIME_WAIT", TimeWait},
		{"CLOSE", Close},
		{"CLOSE_WAIT", CloseWait},
		{"LAST_ACK", LastAck},
		{"NEW_SYN_RECV", NewSynRecv},
		// Other spellings.
		{"closed", Close},
		{"CLOSED", Close},
		{"fin-wait1", FinWait1},
		{"fin-wait2", FinWait2},
		{"finwait1", FinWait1},
		{"finwait2", FinWait2},
		{"syn-recv-n", NewSynRecv},
		{"Listening", Listen},
		{"  established  ", Established},
		{"\tsyn-sent\n", SynSent},
	}
	for _, c := range tests {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, nil", c.in, got, err, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	bad := []string{
		"synsent",
		"",
		" ",
		"established,",
		"syn sent",
		"syn--sent",
		"all", // a group, not a state
		"connected",
		"unknown-0",
		"unknown",
		"12",
		"estab-lished",
		"timewait",
	}
	for _, in := range bad {
		got, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, got)
			continue
		}
		if got != 0 {
			t.Errorf("Parse(%q) returned state %v with its error", in, got)
		}
		msg := err.Error()
		if !strings.Contains(msg, `"`+in+`"`) {
			t.Errorf("Parse(%q) error %q does not quote the bad value", in, msg)
		}
		for _, c := range ssNames {
			if !strings.Contains(msg, c.name) {
				t.Errorf("Parse(%q) error %q does not list %q", in, msg, c.name)
			}
		}
		for _, g := range []string{"all", "big", "bucket", "connected", "synchronized"} {
			if !strings.Contains(msg, g) {
				t.Errorf("Parse(%q) error %q does not list group %q", in, msg, g)
			}
		}
	}
}

func TestParseErrorText(t *testing.T) {
	_, err := Parse("synsent")
	want := `unknown TCP state "synsent": use one of established, syn-sent, syn-recv, ` +
		`fin-wait-1, fin-wait-2, time-wait, close, close-wait, last-ack, listening, ` +
		`closing, new-syn-recv, or a group: all, big, bucket, connected, synchronized`
	if err == nil || err.Error() != want {
		t.Errorf("Parse(synsent) error:\n got %v\nwant %s", err, want)
	}
}

func TestParseList(t *testing.T) {
	tests := []struct {
		in   string
		want Mask
	}{
		{"established", MaskOf(Established)},
		{"syn-sent,close-wait", MaskOf(SynSent, CloseWait)},
		{"close-wait,syn-sent", MaskOf(SynSent, CloseWait)},
		{"SYN_SENT, CLOSE_WAIT", MaskOf(SynSent, CloseWait)},
		{" estab , listen ", MaskOf(Established, Listen)},
		{"time-wait,time-wait", MaskOf(TimeWait)},
		{"closed,close", MaskOf(Close)},
		{"new-syn-recv,syn-recv", MaskOf(SynRecv, NewSynRecv)},
		{"all", All},
		{"ALL", All},
		{"bucket", MaskOf(SynRecv, TimeWait)},
		{"Bucket", MaskOf(SynRecv, TimeWait)},
		{"big", MaskOf(Established, SynSent, FinWait1, FinWait2, Close, CloseWait, LastAck, Listen, Closing, NewSynRecv)},
		{"bucket,big", All},
		{"bucket,listening", MaskOf(SynRecv, TimeWait, Listen)},
		{"all,established", All},
		{"established,syn-sent,syn-recv,fin-wait-1,fin-wait-2,time-wait,close,close-wait,last-ack,listening,closing,new-syn-recv", All},
	}
	for _, c := range tests {
		got, err := ParseList(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseList(%q) = %v (%#x), %v; want %v (%#x)", c.in, got, uint32(got), err, c.want, uint32(c.want))
		}
	}
}

// TestParseListGroupBounds checks the members of connected and
// synchronized that ss(8) and this package agree on: neither holds
// listening or close, both hold the data-transfer and closing states,
// and synchronized leaves out syn-sent.
func TestParseListGroupBounds(t *testing.T) {
	for _, g := range []string{"connected", "synchronized"} {
		m, err := ParseList(g)
		if err != nil {
			t.Fatalf("ParseList(%q): %v", g, err)
		}
		for _, s := range []State{Listen, Close} {
			if m.Has(s) {
				t.Errorf("%s holds %v", g, s)
			}
		}
		for _, s := range []State{Established, FinWait1, FinWait2, CloseWait, LastAck, Closing} {
			if !m.Has(s) {
				t.Errorf("%s lacks %v", g, s)
			}
		}
		if m&^All != 0 {
			t.Errorf("%s has bits outside All: %#x", g, uint32(m))
		}
	}
	conn, _ := ParseList("connected")
	sync, _ := ParseList("synchronized")
	if !conn.Has(SynSent) {
		t.Errorf("connected lacks syn-sent")
	}
	if sync.Has(SynSent) {
		t.Errorf("synchronized holds syn-sent")
	}
	if sync|MaskOf(SynSent) != conn {
		t.Errorf("synchronized (%v) plus syn-sent is not connected (%v)", sync, conn)
	}
}

func TestGroupsBucketBig(t *testing.T) {
	if Groups["bucket"]|Groups["big"] != All || Groups["bucket"]&Groups["big"] != 0 {
		t.Errorf("big (%v) is not the complement of bucket (%v)", Groups["big"], Groups["bucket"])
	}
	if Groups["all"] != All {
		t.Errorf("Groups[all] = %v", Groups["all"])
	}
}

func TestGroupNames(t *testing.T) {
	want := []string{"all", "big", "bucket", "connected", "synchronized"}
	if got := GroupNames(); !reflect.DeepEqual(got, want) {
		t.Errorf("GroupNames() = %q, want %q", got, want)
	}
}

func TestParseListErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantSub []string
	}{
		{"", []string{`empty state name in ""`}},
		{",", []string{`empty state name in ","`}},
		{"established,", []string{`empty state name in "established,"`}},
		{",established", []string{`empty state name in ",established"`}},
		{"syn-sent,,close-wait", []string{`empty state name in "syn-sent,,close-wait"`}},
		{"syn-sent, ,close-wait", []string{`empty state name in "syn-sent, ,close-wait"`}},
		{"synsent", []string{`unknown TCP state "synsent"`, "syn-sent", "connected"}},
		{"established,synsent", []string{`unknown TCP state "synsent"`}},
		{"connected,bogus", []string{`unknown TCP state "bogus"`}},
		{"established;syn-sent", []string{`unknown TCP state "established;syn-sent"`}},
	}
	for _, c := range tests {
		m, err := ParseList(c.in)
		if err == nil {
			t.Errorf("ParseList(%q) = %v, want an error", c.in, m)
			continue
		}
		if m != 0 {
			t.Errorf("ParseList(%q) returned %v with its error", c.in, m)
		}
		for _, sub := range c.wantSub {
			if !strings.Contains(err.Error(), sub) {
				t.Errorf("ParseList(%q) error %q lacks %q", c.in, err, sub)
			}
		}
	}
}

func TestMaskOf(t *testing.T) {
	if m := MaskOf(); m != 0 {
		t.Errorf("MaskOf() = %#x", uint32(m))
	}
	if m := MaskOf(Established); m != 1<<1 {
		t.Errorf("MaskOf(established) = %#x, want 0x2", uint32(m))
	}
	if m := MaskOf(SynSent, Listen); m != 1<<2|1<<10 {
		t.Errorf("MaskOf(syn-sent, listening) = %#x, want 0x404", uint32(m))
	}
	if All != 0x1ffe {
		t.Errorf("All = %#x, want 0x1ffe", uint32(All))
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		m      Mask
		states []State
		str    string
	}{
		{0, nil, ""},
		{MaskOf(Established), []State{Established}, "established"},
		{MaskOf(CloseWait, SynSent), []State{SynSent, CloseWait}, "syn-sent,close-wait"},
		{MaskOf(NewSynRecv, Established), []State{Established, NewSynRecv}, "established,new-syn-recv"},
		{MaskOf(SynRecv, TimeWait), []State{SynRecv, TimeWait}, "syn-recv,time-wait"},
		{All, []State{Established, SynSent, SynRecv, FinWait1, FinWait2, TimeWait, Close, CloseWait, LastAck, Listen, Closing, NewSynRecv},
			"established,syn-sent,syn-recv,fin-wait-1,fin-wait-2,time-wait,close,close-wait,last-ack,listening,closing,new-syn-recv"},
		// Bits outside the kernel's states are ignored.
		{1 | MaskOf(Listen), []State{Listen}, "listening"},
		{1<<13 | 1<<31 | MaskOf(Closing), []State{Closing}, "closing"},
		{^Mask(0), []State{Established, SynSent, SynRecv, FinWait1, FinWait2, TimeWait, Close, CloseWait, LastAck, Listen, Closing, NewSynRecv},
			"established,syn-sent,syn-recv,fin-wait-1,fin-wait-2,time-wait,close,close-wait,last-ack,listening,closing,new-syn-recv"},
	}
	for _, c := range tests {
		if got := c.m.States(); !reflect.DeepEqual(got, c.states) {
			t.Errorf("%#x.States() = %v, want %v", uint32(c.m), got, c.states)
		}
		if got := c.m.Len(); got != len(c.states) {
			t.Errorf("%#x.Len() = %d, want %d", uint32(c.m), got, len(c.states))
		}
		if got := c.m.String(); got != c.str {
			t.Errorf("%#x.String() = %q, want %q", uint32(c.m), got, c.str)
		}
		// State 0 is not a state; bit 0 is covered by the cases above
		// only through States, Len and String.
		for s := 1; s < 256; s++ {
			want := false
			for _, x := range c.states {
				if State(s) == x {
					want = true
				}
			}
			if got := c.m.Has(State(s)); got != want {
				t.Errorf("%#x.Has(%d) = %v, want %v", uint32(c.m), s, got, want)
			}
		}
		// String reads back through ParseList to the kernel states of m.
		if c.str != "" {
			back, err := ParseList(c.str)
			if err != nil || back != c.m&All {
				t.Errorf("ParseList(%q) = %#x, %v; want %#x", c.str, uint32(back), err, uint32(c.m&All))
			}
		}
	}
}

// TestMaskRoundTrip checks every subset of the states.
func TestMaskRoundTrip(t *testing.T) {
	for bitsSet := Mask(0); bitsSet < 1<<12; bitsSet++ {
		m := bitsSet << 1
		if m.Len() != len(m.States()) {
			t.Fatalf("%#x: Len %d, States %v", uint32(m), m.Len(), m.States())
		}
		if MaskOf(m.States()...) != m {
			t.Fatalf("MaskOf(%#x.States()) = %#x", uint32(m), uint32(MaskOf(m.States()...)))
		}
		if m == 0 {
			continue
		}
		back, err := ParseList(m.String())
		if err != nil || back != m {
			t.Fatalf("ParseList(%q) = %#x, %v; want %#x", m.String(), uint32(back), err, uint32(m))
		}
	}
}
