package filter

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// benchSubject is a transition's subject: an accepted connection moving
// to established, owner known.
func benchSubject() Subject {
	return Subject{
		State: tcpstate.Established, Family: unix.AF_INET,
		Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.9.8.7"),
		SPort: 9092, DPort: 43512, OwnerKnown: true, PID: 7355, Comm: "kafka", Netns: 4026531840,
	}
}

// BenchmarkMatch measures the user-space filter on one transition: no
// filter, flags (states, ports, CIDRs, comm), and an ss expression.
func BenchmarkMatch(b *testing.B) {
	s := benchSubject()
	ports := func(list string) []events.PortRange {
		p, err := ParsePorts(list)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	prefixes := func(list string) []netip.Prefix {
		p, err := ParsePrefixes(list)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	states, err := tcpstate.ParseList("established,syn-sent,close")
	if err != nil {
		b.Fatal(err)
	}
	flags := &Filter{
		States: states, IPv4: true,
		SPorts: ports("80,443,9092"), DPorts: ports("1024-65535"),
		Src: prefixes("192.168.0.0/16,10.0.0.0/8"), Dst: prefixes("10.9.0.0/16"),
		Comms: []string{"java", "kafka"},
	}
	expr, err := ParseExpr([]string{"sport = :9092 and ( state established or state syn-sent ) and dst 10.0.0.0/8 and not comm java"})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    *Filter
		e    Expr
	}{
		{"none", &Filter{}, nil},
		{"flags", flags, nil},
		{"expr", &Filter{}, expr},
	} {
		if !c.f.Match(&s) || (c.e != nil && !c.e.Match(&s)) {
			b.Fatalf("%s: the subject does not match; the benchmark would measure an early exit", c.name)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if !c.f.Match(&s) || (c.e != nil && !c.e.Match(&s)) {
					b.Fatal("no match")
				}
			}
		})
	}
}
