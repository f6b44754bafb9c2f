package filter

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

func TestParsePorts(t *testing.T) {
	type pr = events.PortRange
	tests := []struct {
		in   string
		want []events.PortRange
	}{
		{"80", []pr{fltRange(80, 80)}},
		{":9092", []pr{fltRange(9092, 9092)}},
		{" :9092 ", []pr{fltRange(9092, 9092)}},
		{": 9092", []pr{fltRange(9092, 9092)}},
		{"0", []pr{fltRange(0, 0)}},
		{"65535", []pr{fltRange(65535, 65535)}},
		{"08080", []pr{fltRange(8080, 8080)}},
		{"8000-8100", []pr{fltRange(8000, 8100)}},
		{":8000-8100", []pr{fltRange(8000, 8100)}},
		{"5-5", []pr{fltRange(5, 5)}},
		{"0-65535", []pr{fltRange(0, 65535)}},
		{"80,443,8000-8100", []pr{fltRange(80, 80), fltRange(443, 443), fltRange(8000, 8100)}},
		{"443, 80", []pr{fltRange(443, 443), fltRange(80, 80)}},
		{"80,80", []pr{fltRange(80, 80), fltRange(80, 80)}},
		// Service names; these are in Go's built-in table as well as in
		// /etc/services, so the test does not depend on the file.
		{"https", []pr{fltRange(443, 443)}},
		{":https", []pr{fltRange(443, 443)}},
		{"ssh", []pr{fltRange(22, 22)}},
		{"http,https", []pr{fltRange(80, 80), fltRange(443, 443)}},
		{"https,8000-8100,22", []pr{fltRange(443, 443), fltRange(8000, 8100), fltRange(22, 22)}},
	}
	for _, c := range tests {
		got, err := ParsePorts(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParsePortsErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string // substrings of the error
	}{
		{"70000", []string{`port "70000" out of range`, "0-65535"}},
		{"65536", []string{`"65536"`, "0-65535"}},
		{"99999999999999999999", []string{`"99999999999999999999"`, "0-65535"}},
		{":70000", []string{`"70000"`, "0-65535"}},
		{"80,70000", []string{`"70000"`, "0-65535"}},
		{"8000-70000", []string{`"70000"`, "0-65535"}},
		{"70000-80000", []string{`"70000"`, "0-65535"}},
		{"8100-8000", []string{`port range "8100-8000" runs backwards`, "low-high"}},
		{"443-80", []string{`"443-80"`, "backwards"}},
		{"", []string{`empty port in ""`}},
		{" ", []string{`empty port in " "`}},
		{":", []string{`empty port in ":"`}},
		{"80,", []string{`empty port in "80,"`}},
		{",80", []string{`empty port in ",80"`}},
		{"80,,443", []string{`empty port in "80,,443"`}},
		{"no-such-service-xyz", []string{`"no-such-service-xyz"`, "0-65535", "service name"}},
		{"8000-", []string{`"8000-"`, "0-65535"}},
		{"-8000", []string{`"-8000"`, "0-65535"}},
		{"80 443", []string{`"80 443"`}},
		{"0x50", []string{`"0x50"`}},
	}
	for _, c := range tests {
		got, err := ParsePorts(c.in)
		if err == nil {
			t.Errorf("ParsePorts(%q) = %v, want an error", c.in, got)
			continue
		}
		if got != nil {
			t.Errorf("ParsePorts(%q) returned %v with its error", c.in, got)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParsePorts(%q) error %q lacks %q", c.in, err, w)
			}
		}
	}
}

func TestParsePortsErrorText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"70000", `port "70000" out of range: ports are 0-65535`},
		{"8100-8000", `port range "8100-8000" runs backwards: write it low-high`},
		{"1,,2", `empty port in "1,,2"`},
	}
	for _, c := range tests {
		_, err := ParsePorts(c.in)
		if err == nil || err.Error() != c.want {
			t.Errorf("ParsePorts(%q) error = %v, want %s", c.in, err, c.want)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		in   string
		want []netip.Prefix
	}{
		{"10.0.0.1", []netip.Prefix{p("10.0.0.1/32")}},
		{"::1", []netip.Prefix{p("::1/128")}},
		{"fd00::1", []netip.Prefix{p("fd00::1/128")}},
		{"10.0.0.0/8", []netip.Prefix{p("10.0.0.0/8")}},
		{"0.0.0.0/0", []netip.Prefix{p("0.0.0.0/0")}},
		{"::/0", []netip.Prefix{p("::/0")}},
		{"fd00::/8", []netip.Prefix{p("fd00::/8")}},
		{"192.168.1.77/32", []netip.Prefix{p("192.168.1.77/32")}},
		// Masked.
		{"10.1.2.3/8", []netip.Prefix{p("10.0.0.0/8")}},
		{"192.168.1.77/24", []netip.Prefix{p("192.168.1.0/24")}},
		{"fd00::1234/64", []netip.Prefix{p("fd00::/64")}},
		{"2001:db8:1:2:3:4:5:6/48", []netip.Prefix{p("2001:db8:1::/48")}},
		// Brackets.
		{"[fd00::1]", []netip.Prefix{p("fd00::1/128")}},
		{"[::1]", []netip.Prefix{p("::1/128")}},
		{" [2001:db8::5] ", []netip.Prefix{p("2001:db8::5/128")}},
		// IPv4-mapped IPv6 is IPv4.
		{"::ffff:10.0.0.1", []netip.Prefix{p("10.0.0.1/32")}},
		{"::ffff:127.0.0.1", []netip.Prefix{p("127.0.0.1/32")}},
		{"[::ffff:192.0.2.1]", []netip.Prefix{p("192.0.2.1/32")}},
		{"::ffff:10.0.0.0/104", []netip.Prefix{p("10.0.0.0/8")}},
		{"::ffff:10.1.2.3/120", []netip.Prefix{p("10.1.2.0/24")}},
		{"::ffff:192.0.2.9/128", []netip.Prefix{p("192.0.2.9/32")}},
		{"::ffff:0.0.0.0/96", []netip.Prefix{p("0.0.0.0/0")}},
		// Shorter than the mapped prefix: stays IPv6.
		{"::ffff:0.0.0.0/80", []netip.Prefix{p("::/80")}},
		// A zone is dropped.
		{"fe80::1%eth0", []netip.Prefix{p("fe80::1/128")}},
		// Lists.
		{"10.0.0.0/8,::1", []netip.Prefix{p("10.0.0.0/8"), p("::1/128")}},
		{"192.0.2.1, 198.51.100.0/24 , [2001:db8::1]", []netip.Prefix{p("192.0.2.1/32"), p("198.51.100.0/24"), p("2001:db8::1/128")}},
	}
	for _, c := range tests {
		got, err := ParsePrefixes(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParsePrefixes(%q) = %v, %v; want %v", c.in, got, err, c.want)
			continue
		}
		for _, x := range got {
			if x.Addr().Zone() != "" || x.Addr().Is4In6() || x != x.Masked() {
				t.Errorf("ParsePrefixes(%q) gave %v: zoned, mapped or not masked", c.in, x)
			}
		}
	}
}

func TestParsePrefixesErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{`empty address in ""`}},
		{"10.0.0.1,", []string{`empty address in "10.0.0.1,"`}},
		{",10.0.0.1", []string{`empty address in ",10.0.0.1"`}},
		{"[]", []string{`empty address in "[]"`}},
		{"10.0.0", []string{`bad address "10.0.0"`, "CIDR"}},
		{"10.0.0.256", []string{`bad address "10.0.0.256"`}},
		{"host.example", []string{`bad address "host.example"`}},
		{"10.0.0.1:80", []string{`bad address "10.0.0.1:80"`}},
		{"fd00::1::2", []string{`bad address "fd00::1::2"`}},
		{"10.0.0.0/33", []string{`bad address prefix "10.0.0.0/33"`, "10.0.0.0/8"}},
		{"fd00::/129", []string{`bad address prefix "fd00::/129"`}},
		{"10.0.0.0/", []string{`bad address prefix "10.0.0.0/"`}},
		{"10.0.0.0/8/8", []string{`bad address prefix "10.0.0.0/8/8"`}},
		{"10.0.0.0/-1", []string{`bad address prefix "10.0.0.0/-1"`}},
		{"10.0.0.1,nope", []string{`bad address "nope"`}},
	}
	for _, c := range tests {
		got, err := ParsePrefixes(c.in)
		if err == nil {
			t.Errorf("ParsePrefixes(%q) = %v, want an error", c.in, got)
			continue
		}
		if got != nil {
			t.Errorf("ParsePrefixes(%q) returned %v with its error", c.in, got)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParsePrefixes(%q) error %q lacks %q", c.in, err, w)
			}
		}
	}
}

func TestParsePIDs(t *testing.T) {
	tests := []struct {
		in   string
		want []uint32
	}{
		{"1", []uint32{1}},
		{"42", []uint32{42}},
		{"42,7", []uint32{42, 7}},
		{" 42 , 7 ", []uint32{42, 7}},
		{"007", []uint32{7}},
		{"4294967295", []uint32{4294967295}},
		{"5,5", []uint32{5, 5}},
	}
	for _, c := range tests {
		got, err := ParsePIDs(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParsePIDs(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, bad string }{
		{"0", "0"},
		{"-1", "-1"},
		{"abc", "abc"},
		{"", ""},
		{"1,", ""},
		{"1,,2", ""},
		{"4294967296", "4294967296"},
		{"1.5", "1.5"},
		{"12,x", "x"},
	}
	for _, c := range bad {
		got, err := ParsePIDs(c.in)
		if err == nil {
			t.Errorf("ParsePIDs(%q) = %v, want an error", c.in, got)
			continue
		}
		if got != nil {
			t.Errorf("ParsePIDs(%q) returned %v with its error", c.in, got)
		}
		want := `bad process id "` + c.bad + `": want a positive number`
		if err.Error() != want {
			t.Errorf("ParsePIDs(%q) error = %q, want %q", c.in, err, want)
		}
	}
}

func TestParseComms(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"nginx", []string{"nginx"}},
		{"java,nginx", []string{"java", "nginx"}},
		{" java , python3 ", []string{"java", "python3"}},
		{"abcdefghijklmno", []string{"abcdefghijklmno"}},                // 15 bytes: kept
		{"abcdefghijklmnop", []string{"abcdefghijklmno"}},               // 16: cut to 15
		{"kafka-server-start", []string{"kafka-server-st"}},             // as /proc/PID/comm shows it
		{"systemd-resolved,sshd", []string{"systemd-resolve", "sshd"}},  // cut per item
		{"swapper/0", []string{"swapper/0"}},                            // kernel threads' names
		{"ééééééééé", []string{"ééééééé\xc3"}},                          // bytes, not runes, as the kernel cuts
		{"a b", []string{"a b"}},                                        // spaces inside are kept
		{"node,node", []string{"node", "node"}},                         // duplicates kept
		{"123456789012345678901234567890", []string{"123456789012345"}}, // digits are names too
	}
	for _, c := range tests {
		got, err := ParseComms(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseComms(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		for _, s := range got {
			if len(s) > 15 {
				t.Errorf("ParseComms(%q) kept %q, longer than 15 bytes", c.in, s)
			}
		}
	}
	for _, in := range []string{"", " ", "java,", ",java", "java,,nginx", "java, ,nginx"} {
		got, err := ParseComms(in)
		if err == nil {
			t.Errorf("ParseComms(%q) = %q, want an error", in, got)
			continue
		}
		if want := `empty process name in "` + in + `"`; err.Error() != want {
			t.Errorf("ParseComms(%q) error = %q, want %q", in, err, want)
		}
	}
}

// Subjects for the Match tests (names distinct from expr_test.go's).
var (
	fltV4Client = Subject{State: tcpstate.SynSent, Family: unix.AF_INET,
		Src: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("198.51.100.7"),
		SPort: 40000, DPort: 9092, OwnerKnown: true, PID: 42, Comm: "java", Netns: 4026531840}
	fltV6Server = Subject{State: tcpstate.Established, Family: unix.AF_INET6,
		Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8:ffff::2"),
		SPort: 443, DPort: 51000, OwnerKnown: true, PID: 7, Comm: "nginx", Netns: 4026531840}
	fltOrphan = Subject{State: tcpstate.TimeWait, Family: unix.AF_INET,
		Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"),
		SPort: 8080, DPort: 9092, OwnerKnown: false, PID: 42, Comm: "java", Netns: 4026532000}
	// A v6 socket talking to a v4 peer: the addresses are given as IPv4.
	fltMapped = Subject{State: tcpstate.CloseWait, Family: unix.AF_INET6,
		Src: netip.MustParseAddr("10.0.0.5"), Dst: netip.MustParseAddr("10.9.9.9"),
		SPort: 8100, DPort: 33000, OwnerKnown: true, PID: 1000, Comm: "python3", Netns: 4026532000}
)

func TestFilterMatch(t *testing.T) {
	all := []*Subject{&fltV4Client, &fltV6Server, &fltOrphan, &fltMapped}
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	tests := []struct {
		name string
		f    Filter
		want []*Subject
	}{
		{"zero filter keeps all", Filter{}, all},
		{"state one", Filter{States: tcpstate.MaskOf(tcpstate.SynSent)}, []*Subject{&fltV4Client}},
		{"state two", Filter{States: tcpstate.MaskOf(tcpstate.TimeWait, tcpstate.Established)}, []*Subject{&fltV6Server, &fltOrphan}},
		{"state all", Filter{States: tcpstate.All}, all},
		{"state none matching", Filter{States: tcpstate.MaskOf(tcpstate.Listen)}, nil},
		{"-4", Filter{IPv4: true}, []*Subject{&fltV4Client, &fltOrphan}},
		{"-6", Filter{IPv6: true}, []*Subject{&fltV6Server, &fltMapped}},
		{"-4 -6", Filter{IPv4: true, IPv6: true}, all},
		{"netns", Filter{Netns: 4026532000}, []*Subject{&fltOrphan, &fltMapped}},
		{"netns other", Filter{Netns: 1}, nil},
		{"sport one", Filter{SPorts: []events.PortRange{fltRange(443, 443)}}, []*Subject{&fltV6Server}},
		{"sport range", Filter{SPorts: []events.PortRange{fltRange(8000, 8100)}}, []*Subject{&fltOrphan, &fltMapped}},
		{"sport range edge low", Filter{SPorts: []events.PortRange{fltRange(8080, 8090)}}, []*Subject{&fltOrphan}},
		{"sport range edge high", Filter{SPorts: []events.PortRange{fltRange(8081, 8100)}}, []*Subject{&fltMapped}},
		{"sport list", Filter{SPorts: []events.PortRange{fltRange(443, 443), fltRange(40000, 40000)}}, []*Subject{&fltV4Client, &fltV6Server}},
		{"dport", Filter{DPorts: []events.PortRange{fltRange(9092, 9092)}}, []*Subject{&fltV4Client, &fltOrphan}},
		{"dport is not sport", Filter{DPorts: []events.PortRange{fltRange(443, 443)}}, nil},
		{"dport range", Filter{DPorts: []events.PortRange{fltRange(32768, 60999)}}, []*Subject{&fltV6Server, &fltMapped}},
		{"src v4 prefix", Filter{Src: pfx("192.0.2.0/24")}, []*Subject{&fltV4Client}},
		{"src v6 prefix", Filter{Src: pfx("2001:db8::/32")}, []*Subject{&fltV6Server}},
		{"src v4 on v6 socket", Filter{Src: pfx("10.0.0.0/8")}, []*Subject{&fltMapped}},
		{"src loopback", Filter{Src: pfx("127.0.0.0/8")}, []*Subject{&fltOrphan}},
		{"src list", Filter{Src: pfx("127.0.0.1/32", "2001:db8::1/128")}, []*Subject{&fltV6Server, &fltOrphan}},
		{"src is not dst", Filter{Src: pfx("198.51.100.7/32")}, nil},
		{"dst v4", Filter{Dst: pfx("198.51.100.7/32")}, []*Subject{&fltV4Client}},
		{"dst v6", Filter{Dst: pfx("2001:db8:ffff::/48")}, []*Subject{&fltV6Server}},
		{"dst everything v4", Filter{Dst: pfx("0.0.0.0/0")}, []*Subject{&fltV4Client, &fltOrphan, &fltMapped}},
		{"dst everything v6", Filter{Dst: pfx("::/0")}, []*Subject{&fltV6Server}},
		{"pid", Filter{PIDs: []uint32{42}}, []*Subject{&fltV4Client}}, // fltOrphan's 42 is not known
		{"pid list", Filter{PIDs: []uint32{7, 1000}}, []*Subject{&fltV6Server, &fltMapped}},
		{"pid none", Filter{PIDs: []uint32{99}}, nil},
		{"comm", Filter{Comms: []string{"java"}}, []*Subject{&fltV4Client}}, // nor its comm
		{"comm list", Filter{Comms: []string{"nginx", "python3"}}, []*Subject{&fltV6Server, &fltMapped}},
		{"comm is exact", Filter{Comms: []string{"jav"}}, nil},
		{"comm is case sensitive", Filter{Comms: []string{"Java"}}, nil},
		// Combined: every criterion must hold.
		{"state and dport", Filter{States: tcpstate.MaskOf(tcpstate.SynSent, tcpstate.TimeWait), DPorts: []events.PortRange{fltRange(9092, 9092)}},
			[]*Subject{&fltV4Client, &fltOrphan}},
		{"state and dport and -4 and src", Filter{States: tcpstate.MaskOf(tcpstate.SynSent, tcpstate.TimeWait), IPv4: true,
			DPorts: []events.PortRange{fltRange(9092, 9092)}, Src: pfx("127.0.0.0/8")}, []*Subject{&fltOrphan}},
		{"state and dport and pid", Filter{States: tcpstate.MaskOf(tcpstate.SynSent, tcpstate.TimeWait),
			DPorts: []events.PortRange{fltRange(9092, 9092)}, PIDs: []uint32{42}}, []*Subject{&fltV4Client}},
		{"dport and comm", Filter{DPorts: []events.PortRange{fltRange(9092, 9092)}, Comms: []string{"java"}}, []*Subject{&fltV4Client}},
		{"pid and comm agree", Filter{PIDs: []uint32{7}, Comms: []string{"nginx"}}, []*Subject{&fltV6Server}},
		{"pid and comm disagree", Filter{PIDs: []uint32{7}, Comms: []string{"java"}}, nil},
		{"-6 and src v4 prefix", Filter{IPv6: true, Src: pfx("10.0.0.0/8")}, []*Subject{&fltMapped}},
		{"-4 and src v4 prefix", Filter{IPv4: true, Src: pfx("10.0.0.0/8")}, nil},
		{"-6 and state", Filter{IPv6: true, States: tcpstate.MaskOf(tcpstate.Established)}, []*Subject{&fltV6Server}},
		{"sport and dport", Filter{SPorts: []events.PortRange{fltRange(8000, 9000)}, DPorts: []events.PortRange{fltRange(9092, 9092)}}, []*Subject{&fltOrphan}},
		{"src and dst", Filter{Src: pfx("127.0.0.1/32"), Dst: pfx("127.0.0.1/32")}, []*Subject{&fltOrphan}},
		{"netns and state", Filter{Netns: 4026531840, States: tcpstate.MaskOf(tcpstate.Established)}, []*Subject{&fltV6Server}},
		{"all criteria", Filter{States: tcpstate.MaskOf(tcpstate.CloseWait), IPv6: true, Netns: 4026532000,
			SPorts: []events.PortRange{fltRange(8100, 8100)}, DPorts: []events.PortRange{fltRange(30000, 40000)},
			Src: pfx("10.0.0.0/24"), Dst: pfx("10.9.0.0/16"), PIDs: []uint32{1000}, Comms: []string{"python3"}},
			[]*Subject{&fltMapped}},
		{"all criteria but one", Filter{States: tcpstate.MaskOf(tcpstate.CloseWait), IPv6: true, Netns: 4026532000,
			SPorts: []events.PortRange{fltRange(8100, 8100)}, DPorts: []events.PortRange{fltRange(30000, 40000)},
			Src: pfx("10.0.0.0/24"), Dst: pfx("10.9.0.0/16"), PIDs: []uint32{1000}, Comms: []string{"python"}},
			nil},
	}
	for _, c := range tests {
		var got []*Subject
		for _, s := range all {
			if c.f.Match(s) {
				got = append(got, s)
			}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: matched %v, want %v", c.name, fltNames(got), fltNames(c.want))
		}
	}
}

// TestFilterMatchUnknownOwner: with pid or comm set, a subject whose owner
// is not known never matches, whatever its PID and Comm fields hold.
func TestFilterMatchUnknownOwner(t *testing.T) {
	s := Subject{State: tcpstate.Established, Family: unix.AF_INET, PID: 0, Comm: ""}
	for _, f := range []Filter{
		{PIDs: []uint32{0}},
		{Comms: []string{""}},
		{PIDs: []uint32{0}, Comms: []string{""}},
	} {
		if f.Match(&s) {
			t.Errorf("%+v matched a subject with no known owner", f)
		}
		s.OwnerKnown = true
		if !f.Match(&s) {
			t.Errorf("%+v did not match the same subject with a known owner", f)
		}
		s.OwnerKnown = false
	}
	// Without pid or comm criteria the owner does not matter.
	if f := (Filter{States: tcpstate.MaskOf(tcpstate.Established)}); !f.Match(&s) {
		t.Errorf("state filter rejected a subject with no known owner")
	}
}

func fltRange(lo, hi uint16) events.PortRange { return events.PortRange{Lo: lo, Hi: hi} }

func fltNames(ss []*Subject) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Comm+"/"+s.State.String())
	}
	return out
}

func TestFilterKernel(t *testing.T) {
	f := Filter{
		States: tcpstate.MaskOf(tcpstate.SynSent, tcpstate.CloseWait),
		IPv4:   true,
		IPv6:   false,
		SPorts: []events.PortRange{fltRange(80, 80), fltRange(8000, 8100)},
		DPorts: []events.PortRange{fltRange(9092, 9092)},
		Src:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Dst:    []netip.Prefix{netip.MustParsePrefix("::1/128")},
		PIDs:   []uint32{42},
		Comms:  []string{"java"},
		Netns:  4026531840,
	}
	want := events.KernelFilter{
		States: tcpstate.MaskOf(tcpstate.SynSent, tcpstate.CloseWait),
		Netns:  4026531840,
		IPv4:   true,
		IPv6:   false,
		SPorts: []events.PortRange{fltRange(80, 80), fltRange(8000, 8100)},
		DPorts: []events.PortRange{fltRange(9092, 9092)},
	}
	if got := f.Kernel(); !reflect.DeepEqual(got, want) {
		t.Errorf("Kernel() = %+v, want %+v", got, want)
	}
	f6 := Filter{IPv6: true}
	if got := f6.Kernel(); !reflect.DeepEqual(got, events.KernelFilter{IPv6: true}) {
		t.Errorf("Kernel() of -6 = %+v", got)
	}
	if got := (&Filter{}).Kernel(); !reflect.DeepEqual(got, events.KernelFilter{}) {
		t.Errorf("Kernel() of the zero Filter = %+v, want the zero KernelFilter", got)
	}
}

func TestOfTransition(t *testing.T) {
	tr := record.Transition{Transition: events.Transition{
		Time: time.Unix(1700000000, 0), Ktime: 123, Cookie: 99, Netns: 4026531840,
		Family: unix.AF_INET6,
		Src:    netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
		SPort: 443, DPort: 51000,
		Old: tcpstate.SynRecv, New: tcpstate.Established,
		TaskPID: 1, TaskTID: 2, TaskComm: "swapper/0",
		OwnerKnown: true, OwnerPID: 7, OwnerTID: 8, OwnerComm: "nginx"}}
	want := Subject{State: tcpstate.Established, Family: unix.AF_INET6,
		Src: tr.Src, Dst: tr.Dst, SPort: 443, DPort: 51000,
		OwnerKnown: true, PID: 7, Comm: "nginx", Netns: 4026531840}
	if got := OfTransition(&tr); got != want {
		t.Errorf("OfTransition = %+v, want %+v", got, want)
	}
	tr.OwnerKnown, tr.OwnerPID, tr.OwnerComm = false, 0, ""
	got := OfTransition(&tr)
	if got.OwnerKnown || got.PID != 0 || got.Comm != "" {
		t.Errorf("OfTransition with no owner = %+v", got)
	}
}

// TestParsedFilter runs the parsers and Match together, as the command
// line does.
func TestParsedFilter(t *testing.T) {
	var f Filter
	var err error
	if f.States, err = tcpstate.ParseList("syn-sent,time-wait"); err != nil {
		t.Fatal(err)
	}
	if f.DPorts, err = ParsePorts(":9092"); err != nil {
		t.Fatal(err)
	}
	if f.Src, err = ParsePrefixes("::ffff:127.0.0.0/104"); err != nil {
		t.Fatal(err)
	}
	all := []*Subject{&fltV4Client, &fltV6Server, &fltOrphan, &fltMapped}
	var got []*Subject
	for _, s := range all {
		if f.Match(s) {
			got = append(got, s)
		}
	}
	if want := []*Subject{&fltOrphan}; !reflect.DeepEqual(got, want) {
		t.Errorf("matched %v, want %v", fltNames(got), fltNames(want))
	}
}
