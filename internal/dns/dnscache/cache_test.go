package dnscache

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

type rec struct {
	name, typ, value string // typ: A, AAAA, CNAME, TXT
	ttl              uint32
}

// msg builds an answer to question q (type A unless qtype says AAAA).
func msg(t testing.TB, q string, qtype dnsmessage.Type, rcode dnsmessage.RCode, rs ...rec) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, Response: true, RCode: rcode})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(q + "."), Type: qtype, Class: dnsmessage.ClassINET})
	b.StartAnswers()
	for _, r := range rs {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(r.name + "."), Class: dnsmessage.ClassINET, TTL: r.ttl}
		var err error
		switch r.typ {
		case "A":
			err = b.AResource(h, dnsmessage.AResource{A: netip.MustParseAddr(r.value).As4()})
		case "AAAA":
			err = b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(r.value).As16()})
		case "CNAME":
			err = b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(r.value + ".")})
		case "TXT":
			err = b.TXTResource(h, dnsmessage.TXTResource{TXT: []string{r.value}})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParse(t *testing.T) {
	A, AAAA, OK, NX := dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError
	tests := []struct {
		name    string
		msg     []byte
		want    string // Name Chain Addrs TTL
		wantErr bool
	}{
		{"plain A", msg(t, "Kafka.Example.com", A, OK, rec{"kafka.example.com", "A", "10.4.1.80", 60}),
			"kafka.example.com [] [10.4.1.80] 60", false},
		{"two addresses, smallest TTL", msg(t, "k.example", A, OK, rec{"k.example", "A", "10.0.0.1", 60}, rec{"k.example", "A", "10.0.0.2", 30}),
			"k.example [] [10.0.0.1 10.0.0.2] 30", false},
		{"CNAME chain in order", msg(t, "broker.example", A, OK,
			rec{"broker.example", "CNAME", "mid.example", 300}, rec{"mid.example", "CNAME", "kafka.example", 20},
			rec{"kafka.example", "A", "10.4.1.80", 60}),
			"broker.example [mid.example kafka.example] [10.4.1.80] 20", false},
		{"CNAME chain out of order", msg(t, "broker.example", A, OK,
			rec{"kafka.example", "A", "10.4.1.80", 60}, rec{"mid.example", "CNAME", "kafka.example", 300},
			rec{"broker.example", "CNAME", "mid.example", 300}),
			"broker.example [mid.example kafka.example] [10.4.1.80] 60", false},
		{"records of other names are not the answer", msg(t, "a.example", A, OK,
			rec{"b.example", "A", "10.9.9.9", 60}, rec{"a.example", "A", "10.0.0.1", 60}),
			"a.example [] [10.0.0.1] 60", false},
		{"CNAME loop ends", msg(t, "a.example", A, OK, rec{"a.example", "CNAME", "b.example", 60}, rec{"b.example", "CNAME", "a.example", 60}),
			"a.example [b.example a.example b.example a.example b.example a.example b.example a.example b.example a.example b.example a.example b.example a.example b.example a.example] [] 60", false},
		{"AAAA", msg(t, "v6.example", AAAA, OK, rec{"v6.example", "AAAA", "2001:db8::1", 10}),
			"v6.example [] [2001:db8::1] 10", false},
		{"other records skipped", msg(t, "t.example", A, OK, rec{"t.example", "TXT", "hello", 5}, rec{"t.example", "A", "10.0.0.3", 7}),
			"t.example [] [10.0.0.3] 7", false},
		{"NXDOMAIN", msg(t, "gone.example", A, NX), "gone.example [] [] 0", false},
		{"a query is not an answer", func() []byte {
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1})
			b.StartQuestions()
			b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("q.example."), Type: A, Class: dnsmessage.ClassINET})
			m, _ := b.Finish()
			return m
		}(), "", true},
		{"MX question", msg(t, "mx.example", dnsmessage.TypeMX, OK), "", true},
		{"garbage", []byte("not dns at all"), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Parse(tc.msg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			got := fmt.Sprintf("%s %v %v %d", a.Name, a.Chain, a.Addrs, a.TTL)
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestParseCut(t *testing.T) {
	m := msg(t, "k.example", dnsmessage.TypeA, dnsmessage.RCodeSuccess,
		rec{"k.example", "A", "10.0.0.1", 60}, rec{"k.example", "A", "10.0.0.2", 60})
	a, err := Parse(m[:len(m)-3])
	if err != nil || !a.Cut || !slices.Equal(a.Addrs, []netip.Addr{netip.MustParseAddr("10.0.0.1")}) {
		t.Fatalf("cut answer: %+v %v", a, err)
	}
}

func obs(t testing.TB, k uint64, pid, netns uint32, m []byte) *Observation {
	return &Observation{At: time.Unix(1000+int64(k), 0), K: k, PID: pid, Netns: netns, Cgroup: uint64(pid) * 10, Comm: fmt.Sprint("p", pid), Msg: m}
}

func TestLookupAndStale(t *testing.T) {
	A, OK := dnsmessage.TypeA, dnsmessage.RCodeSuccess
	old, moved := netip.MustParseAddr("10.4.1.80"), netip.MustParseAddr("10.4.1.81")
	c := New(Options{})
	c.Add(obs(t, 1, 100, 7, msg(t, "kafka.example.com", A, OK, rec{"kafka.example.com", "A", "10.4.1.80", 60})))

	// The asker, someone else in its namespace, nobody elsewhere.
	if o := c.Lookup(old, 100, 7, 0); o == nil || o.Name != "kafka.example.com" || o.PID != 100 || o.TTL != 60 {
		t.Fatalf("asker: %+v", o)
	}
	if o := c.Lookup(old, 200, 7, 0); o == nil || o.PID != 100 {
		t.Fatalf("same netns: %+v", o)
	}
	if o := c.Lookup(old, 300, 8, 0); o != nil {
		t.Fatalf("other netns: %+v", o)
	}
	if o := c.Lookup(moved, 100, 7, 0); o != nil {
		t.Fatalf("never seen: %+v", o)
	}
	o := c.Lookup(old, 100, 7, 0)
	if _, stale := c.Stale(o, old); stale {
		t.Fatal("stale with no later answer")
	}
	// The same answer again later: not stale.
	c.Add(obs(t, 2, 200, 7, msg(t, "kafka.example.com", A, OK, rec{"kafka.example.com", "A", "10.4.1.80", 60})))
	if _, stale := c.Stale(o, old); stale {
		t.Fatal("stale though the name still resolves to it")
	}
	// socktrace's own lookup finds the name moved: stale, and the own
	// lookup is nobody's origin.
	self := obs(t, 3, 999, 7, msg(t, "kafka.example.com", A, OK, rec{"kafka.example.com", "A", "10.4.1.81", 60}))
	self.Self = true
	c.Add(self)
	r, stale := c.Stale(o, old)
	if !stale || !slices.Equal(r.Addrs, []netip.Addr{moved}) || r.K != 3 || !r.Self {
		t.Fatalf("stale = %v %+v", stale, r)
	}
	if o := c.Lookup(moved, 999, 7, 0); o != nil {
		t.Fatalf("own lookup became an origin: %+v", o)
	}
	// Someone who re-resolved and uses the new address: not stale.
	c.Add(obs(t, 4, 300, 7, msg(t, "kafka.example.com", A, OK, rec{"kafka.example.com", "A", "10.4.1.81", 60})))
	if o2 := c.Lookup(moved, 300, 7, 0); o2 == nil {
		t.Fatal("new address unnamed")
	} else if _, stale := c.Stale(o2, moved); stale {
		t.Fatal("the new address is stale")
	}
	// An AAAA answer says nothing of IPv4 addresses.
	c.Add(obs(t, 5, 300, 7, msg(t, "kafka.example.com", dnsmessage.TypeAAAA, OK, rec{"kafka.example.com", "AAAA", "2001:db8::9", 60})))
	if r := c.Current("kafka.example.com", old); r == nil || r.K != 4 {
		t.Fatalf("current A after an AAAA answer: %+v", r)
	}
	// NXDOMAIN: the name is gone, so the address is stale.
	c.Add(obs(t, 6, 300, 7, msg(t, "kafka.example.com", A, dnsmessage.RCodeNameError)))
	if r, stale := c.Stale(o, old); !stale || len(r.Addrs) != 0 {
		t.Fatalf("after NXDOMAIN: %v %+v", stale, r)
	}
}

func TestAskerUnknownMatchesByCgroup(t *testing.T) {
	c := New(Options{})
	o := obs(t, 1, 0, 0, msg(t, "x.example", dnsmessage.TypeA, dnsmessage.RCodeSuccess, rec{"x.example", "A", "10.0.0.9", 5}))
	o.Cgroup = 42
	c.Add(o)
	a := netip.MustParseAddr("10.0.0.9")
	if got := c.Lookup(a, 55, 7, 42); got == nil {
		t.Fatal("same cgroup: nil")
	}
	if got := c.Lookup(a, 55, 7, 43); got != nil {
		t.Fatalf("other cgroup: %+v", got)
	}
}

// A flood of answers for distinct names and addresses stays within the
// caps, counting what it let go.
func TestBounded(t *testing.T) {
	c := New(Options{MaxAddrs: 100, MaxNames: 50})
	for i := 0; i < 10000; i++ {
		name := fmt.Sprintf("n%d.example", i)
		c.Add(obs(t, uint64(i+1), uint32(i%7+1), 7, msg(t, name, dnsmessage.TypeA, dnsmessage.RCodeSuccess,
			rec{name, "A", netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String(), 5},
			rec{name, "A", netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}).String(), 5})))
	}
	s := c.Stats()
	if s.Addrs != 100 || s.Names != 50 || s.AddrsEvicted != 20000-100 || s.NamesEvicted != 10000-50 || s.Answers != 10000 {
		t.Fatalf("stats: %+v", s)
	}
	// The latest are kept.
	if c.Lookup(netip.MustParseAddr("10.0.39.15"), 0, 7, 0) == nil {
		t.Error("latest address forgotten")
	}
	// One address asked by many: a few askers kept.
	c = New(Options{})
	for pid := uint32(1); pid <= 100; pid++ {
		c.Add(obs(t, uint64(pid), pid, 7, msg(t, "a.example", dnsmessage.TypeA, dnsmessage.RCodeSuccess, rec{"a.example", "A", "10.0.0.1", 5})))
	}
	if n := len(c.addrs[netip.MustParseAddr("10.0.0.1")].Value.(*addrEntry).origins); n != originsPerAddr {
		t.Errorf("%d askers kept", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(msg(f, "broker.example", dnsmessage.TypeA, dnsmessage.RCodeSuccess,
		rec{"broker.example", "CNAME", "kafka.example", 300}, rec{"kafka.example", "A", "10.4.1.80", 60}))
	f.Add(msg(f, "v6.example", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, rec{"v6.example", "AAAA", "2001:db8::1", 10}))
	c := New(Options{MaxAddrs: 64, MaxNames: 64})
	f.Fuzz(func(t *testing.T, m []byte) {
		a, ok := c.Add(&Observation{K: 1, PID: 1, Netns: 1, Msg: m})
		if ok && (len(a.Chain) > maxChain || len(a.Addrs) > maxAddrs) {
			t.Fatalf("unbounded: %d CNAMEs, %d addresses", len(a.Chain), len(a.Addrs))
		}
		if s := c.Stats(); s.Addrs > 64 || s.Names > 64 {
			t.Fatalf("over the caps: %+v", s)
		}
	})
}
