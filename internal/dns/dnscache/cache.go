package dnscache

import (
	"container/list"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Origin says where an address came from: the name a process asked for
// and got it in answer.
type Origin struct {
	Name   string // lower case, no final dot
	At     time.Time
	K      uint64 // CLOCK_MONOTONIC of At: orders answers
	TTL    uint32 // seconds
	PID    uint32 // who asked; 0 unknown
	Comm   string
	Netns  uint32
	Cgroup uint64
	Server netip.AddrPort
}

// Resolution is the latest answer seen for a name (of one family).
type Resolution struct {
	Name  string
	Addrs []netip.Addr // empty: the name does not exist (NXDOMAIN)
	At    time.Time
	K     uint64
	TTL   uint32
	PID   uint32
	Comm  string
	Self  bool // from socktrace's own lookup
	v6    bool
}

// Options bound the cache.
type Options struct {
	MaxAddrs int // addresses remembered (DefaultMaxAddrs if 0)
	MaxNames int // names remembered (DefaultMaxNames if 0)
}

// Defaults of Options: about 30 MiB at most for both.
const (
	DefaultMaxAddrs = 65536
	DefaultMaxNames = 16384
)

// originsPerAddr: how many askers of one address are remembered.
const originsPerAddr = 4

// Stats count what the cache was fed and what it let go to stay bounded.
type Stats struct {
	Answers      uint64 // answers to A/AAAA questions taken in
	Malformed    uint64 // messages that did not parse (or were no such answer)
	Cut          uint64 // answers cut short (the records after the cut are lost)
	AddrsEvicted uint64 // addresses forgotten for room
	NamesEvicted uint64 // names forgotten for room
	Addrs, Names int    // remembered now
}

type addrEntry struct {
	addr    netip.Addr
	origins []*Origin // most recent first
}

type nameKey struct {
	name string
	v6   bool
}

// Cache is the map address -> names and name -> current addresses.
// Not safe for concurrent use: the pipeline feeds and asks it from one
// goroutine, in record order, live and in a replay alike.
type Cache struct {
	opt     Options
	addrs   map[netip.Addr]*list.Element // of *addrEntry
	addrLRU *list.List
	names   map[nameKey]*list.Element // of *Resolution
	nameLRU *list.List
	st      Stats
}

// New returns an empty cache.
func New(o Options) *Cache {
	if o.MaxAddrs <= 0 {
		o.MaxAddrs = DefaultMaxAddrs
	}
	if o.MaxNames <= 0 {
		o.MaxNames = DefaultMaxNames
	}
	return &Cache{opt: o, addrs: map[netip.Addr]*list.Element{}, addrLRU: list.New(),
		names: map[nameKey]*list.Element{}, nameLRU: list.New()}
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := c.st
	s.Addrs, s.Names = len(c.addrs), len(c.names)
	return s
}

// Add takes in one observed answer and returns what it said (ok false
// when it was not an answer to an A or AAAA question).
func (c *Cache) Add(o *Observation) (Answer, bool) {
	a, err := Parse(o.Msg)
	if err != nil {
		c.st.Malformed++
		return a, false
	}
	c.st.Answers++
	if a.Cut {
		c.st.Cut++
	}
	if len(a.Addrs) == 0 && a.RCode != dnsmessage.RCodeNameError {
		return a, true // nothing learnt (e.g. no AAAA for an IPv4-only name)
	}
	c.setName(&Resolution{Name: a.Name, Addrs: a.Addrs, At: o.At, K: o.K, TTL: a.TTL, PID: o.PID, Comm: o.Comm, Self: o.Self,
		v6: a.Type == dnsmessage.TypeAAAA})
	if o.Self {
		return a, true // says where the name points now; it is nobody's origin
	}
	for _, addr := range a.Addrs {
		c.addOrigin(addr, &Origin{Name: a.Name, At: o.At, K: o.K, TTL: a.TTL, PID: o.PID, Comm: o.Comm,
			Netns: o.Netns, Cgroup: o.Cgroup, Server: o.Server})
	}
	return a, true
}

func (c *Cache) setName(r *Resolution) {
	k := nameKey{r.Name, r.v6}
	if e, ok := c.names[k]; ok {
		if old := e.Value.(*Resolution); older(r.K, r.At, old.K, old.At) {
			return
		}
		e.Value = r
		c.nameLRU.MoveToFront(e)
		return
	}
	for len(c.names) >= c.opt.MaxNames {
		e := c.nameLRU.Back()
		old := e.Value.(*Resolution)
		delete(c.names, nameKey{old.Name, old.v6})
		c.nameLRU.Remove(e)
		c.st.NamesEvicted++
	}
	c.names[k] = c.nameLRU.PushFront(r)
}

// older says whether answer a came before answer b.
func older(ak uint64, at time.Time, bk uint64, bt time.Time) bool {
	if ak != 0 && bk != 0 {
		return ak < bk
	}
	return at.Before(bt)
}

func (c *Cache) addOrigin(addr netip.Addr, o *Origin) {
	var ae *addrEntry
	if e, ok := c.addrs[addr]; ok {
		ae = e.Value.(*addrEntry)
		c.addrLRU.MoveToFront(e)
	} else {
		for len(c.addrs) >= c.opt.MaxAddrs {
			e := c.addrLRU.Back()
			delete(c.addrs, e.Value.(*addrEntry).addr)
			c.addrLRU.Remove(e)
			c.st.AddrsEvicted++
		}
		ae = &addrEntry{addr: addr}
		c.addrs[addr] = c.addrLRU.PushFront(ae)
	}
	// The same asker asking again replaces its entry; else the oldest goes.
	i := slices.IndexFunc(ae.origins, func(x *Origin) bool {
		return x.PID == o.PID && x.Netns == o.Netns && x.Cgroup == o.Cgroup && x.Name == o.Name
	})
	switch {
	case i >= 0:
		ae.origins = slices.Delete(ae.origins, i, i+1)
	case len(ae.origins) >= originsPerAddr:
		ae.origins = ae.origins[:originsPerAddr-1]
	}
	ae.origins = slices.Insert(ae.origins, 0, o)
}

// Lookup names addr for a connect by process pid (0 unknown) in network
// namespace netns with cgroup cgroup: the latest answer that process got
// with addr in it; failing that, the latest anyone in the same namespace
// got (or, when the namespace of an asker is unknown, anyone in the same
// cgroup). Nil when no answer seen holds addr: socktrace never guesses.
func (c *Cache) Lookup(addr netip.Addr, pid, netns uint32, cgroup uint64) *Origin {
	e, ok := c.addrs[addr.Unmap()]
	if !ok {
		return nil
	}
	os := e.Value.(*addrEntry).origins
	if pid != 0 {
		for _, o := range os {
			if o.PID == pid && (o.Netns == netns || o.Netns == 0 || netns == 0) {
				return o
			}
		}
	}
	for _, o := range os {
		if netns != 0 && o.Netns == netns {
			return o
		}
	}
	for _, o := range os {
		if o.Netns == 0 && cgroup != 0 && o.Cgroup == cgroup {
			return o
		}
	}
	return nil
}

// Current is the latest answer seen for name, for addresses of addr's
// family; nil if none.
func (c *Cache) Current(name string, addr netip.Addr) *Resolution {
	if e, ok := c.names[nameKey{name, addr.Unmap().Is6()}]; ok {
		return e.Value.(*Resolution)
	}
	return nil
}

// Stale says whether addr, which its owner got from o, is no longer what
// o.Name resolves to: a later answer for the name (seen by anyone on the
// host, or asked by socktrace itself) does not hold it. It returns that
// later answer.
func (c *Cache) Stale(o *Origin, addr netip.Addr) (*Resolution, bool) {
	if o == nil {
		return nil, false
	}
	r := c.Current(o.Name, addr)
	if r == nil || !older(o.K, o.At, r.K, r.At) {
		return nil, false
	}
	if slices.Contains(r.Addrs, addr.Unmap()) {
		return nil, false
	}
	return r, true
}
