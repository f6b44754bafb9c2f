package nat

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// flow is a TCP conntrack entry from src to dst whose replies come from
// backend (a DNAT when it is not dst).
func flow(src, dst, backend netip.AddrPort) conntrack.Flow {
	f := conntrack.NewFlow(unix.IPPROTO_TCP, conntrack.StatusConfirmed, src.Addr(), dst.Addr(), src.Port(), dst.Port(), 120, 0)
	f.TupleReply.IP.SourceAddress, f.TupleReply.Proto.SourcePort = backend.Addr(), backend.Port()
	f.ProtoInfo.TCP = &conntrack.ProtoInfoTCP{State: 1} // SYN_SENT
	return f
}

// TestLookup: in a namespace of its own, entries made through ctnetlink
// (as a DNAT rule would make them): a translated connection gives its
// backend; one nothing translated, and the reply side of a connection
// made to us, give none; a pod's connection translated on the node (the
// namespace asked second) gives the node's backend; a destination found
// untranslated is not asked again for PlainFor, and a namespace whose
// table is empty at most once per QuietFor.
func TestLookup(t *testing.T) {
	ns := testnet.New(t)
	var c *conntrack.Conn
	err := ns.Do(func() (err error) {
		if c, err = conntrack.Dial(nil); err == nil {
			_, err = c.StatsGlobal()
		}
		return err
	})
	if c != nil {
		defer c.Close()
	}
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		// A kernel without ctnetlink (the kernel matrix's VMs load no
		// netfilter module): socktrace shows no backends there.
		t.Skipf("this kernel has no ctnetlink (nfnetlink, nf_conntrack_netlink not loaded): %v", err)
	}
	if err != nil {
		t.Fatalf("ctnetlink: %v", err)
	}
	vip, dead := netip.MustParseAddrPort("10.96.0.10:9092"), netip.MustParseAddrPort("10.4.1.81:9092")
	self := netip.MustParseAddr("10.4.0.2")
	plainDst := netip.MustParseAddrPort("10.4.2.1:443")
	client := netip.AddrPortFrom(netip.MustParseAddr("10.4.3.3"), 40000)

	// The node: where a pod's connections are translated.
	node := testnet.New(t)
	var nc *conntrack.Conn
	node.Run(t, func() (err error) {
		nc, err = conntrack.Dial(nil)
		return err
	})
	defer nc.Close()

	r := New(Options{Paths: []string{ns.Path()}, Host: node.Path()})
	defer r.Close()
	now := time.Unix(1e9, 0)
	r.now = func() time.Time { return now }
	conn := func(sport uint16, dst netip.AddrPort) Conn {
		return Conn{Netns: ns.Inode, Src: self, SPort: sport, Dst: dst.Addr(), DPort: dst.Port()}
	}

	// Empty table: nothing, and asked once per QuietFor.
	for range 3 {
		if b, ok := r.Lookup(conn(41000, vip)); ok {
			t.Fatalf("empty table: backend %v", b)
		}
		if b, ok := r.Lookup(conn(41001, plainDst)); ok {
			t.Fatalf("empty table: backend %v", b)
		}
	}
	if st := r.Stats(); st.Lookups != 2 {
		t.Errorf("empty tables: %d lookups in a second, want 2 (the namespace's, the node's)", st.Lookups)
	}

	for _, f := range []conntrack.Flow{
		flow(netip.AddrPortFrom(self, 41000), vip, dead),
		flow(netip.AddrPortFrom(self, 41001), plainDst, plainDst),
		flow(client, netip.AddrPortFrom(self, 8080), netip.AddrPortFrom(self, 8080)), // made to us
	} {
		if err := c.Create(f); err != nil {
			t.Fatalf("create conntrack entry: %v", err)
		}
	}
	// A pod's connection, translated on the node.
	live := netip.MustParseAddrPort("10.4.1.82:9092")
	if err := nc.Create(flow(netip.AddrPortFrom(self, 41003), vip, live)); err != nil {
		t.Fatalf("create conntrack entry: %v", err)
	}
	now = now.Add(PlainFor + time.Second)
	tests := []struct {
		name string
		c    Conn
		want netip.AddrPort
	}{
		{"translated", conn(41000, vip), dead},
		{"not translated", conn(41001, plainDst), netip.AddrPort{}},
		{"no entry", conn(41002, netip.MustParseAddrPort("10.4.2.2:443")), netip.AddrPort{}},
		{"the accepted side", Conn{Netns: ns.Inode, Src: self, SPort: 8080, Dst: client.Addr(), DPort: client.Port()}, netip.AddrPort{}},
		{"translated on the node", conn(41003, vip), live},
		{"v4-mapped", Conn{Netns: ns.Inode, Src: netip.AddrFrom16(self.As16()), SPort: 41000, Dst: netip.AddrFrom16(vip.Addr().As16()), DPort: 9092}, dead},
	}
	for _, tc := range tests {
		got, ok := r.Lookup(tc.c)
		if got != tc.want || ok != tc.want.IsValid() {
			t.Errorf("%s: %v %v, want %v", tc.name, got, ok, tc.want)
		}
	}
	// Untranslated: not asked again for PlainFor (then of both
	// namespaces, the node's table now holding an entry).
	before := r.Stats().Lookups
	r.Lookup(conn(41001, plainDst))
	if st := r.Stats(); st.Lookups != before {
		t.Errorf("an untranslated destination was asked again at once")
	}
	now = now.Add(PlainFor)
	r.Lookup(conn(41001, plainDst))
	if st := r.Stats(); st.Lookups != before+2 {
		t.Errorf("an untranslated destination was asked %d times after %v, want 2 (the namespace's, the node's)", st.Lookups-before, PlainFor)
	}

	// A table in use that has no entry for MaxMisses connections in a
	// row (a flood of them to new destinations): asked again after
	// QuietFor only, whatever comes.
	now = now.Add(PlainFor)
	for i := range MaxMisses {
		r.Lookup(conn(42000, netip.AddrPortFrom(netip.MustParseAddr("10.5.0.1"), uint16(1000+i))))
	}
	before = r.Stats().Lookups
	if b, ok := r.Lookup(conn(41000, vip)); ok || r.Stats().Lookups != before {
		t.Errorf("after %d misses in a row: %v %v, %d lookups; want the namespaces quiet", MaxMisses, b, ok, r.Stats().Lookups-before)
	}
	now = now.Add(QuietFor)
	if b, _ := r.Lookup(conn(41000, vip)); b != dead {
		t.Errorf("after %v: %v, want %v", QuietFor, b, dead)
	}
}
