package pipeline

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/dns/dnslookup"
	"github.com/socktrace/socktrace/internal/dns/dnswatch"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// dnsNames puts names on addresses from the DNS answers seen, and
// raises stale-dns alerts. Live, answers come from passive DNS
// (dnswatch); in a replay, from the capture; either way in the order
// they came among the transitions, so both reach the same alerts.
type dnsNames struct {
	cache  *dnscache.Cache
	watch  *dnswatch.Watch   // live; nil in a replay
	lookup *dnslookup.Client // live own lookups; nil: none
	clock  *events.Clock     // live: the answers' time
	root   string            // the host's / for /proc ("" ours)
	self   uint32            // our pid: answers to our own lookups
	// alerted: the latest answer each (destination, process, name) was
	// alerted on, so an alert is raised once per move of the name.
	alerted map[staleKey]uint64
	// stale: destinations whose last attempt went to a stale address.
	stale map[analysis.DestKey]bool
	ans   dnswatch.Answer
	obs   dnscache.Observation
}

type staleKey struct {
	dest analysis.DestKey
	pid  uint32
	name string
}

// maxStale bounds the alerted and stale maps.
const maxStale = 4096

func newDNSNames(o dnscache.Options) *dnsNames {
	return &dnsNames{cache: dnscache.New(o), alerted: map[staleKey]uint64{}, stale: map[analysis.DestKey]bool{},
		self: uint32(os.Getpid())}
}

// drainDNS takes in the answers passive DNS has seen so far. The reading
// loop calls it when woken and before the transitions that use answers
// (into and out of syn-sent), so that a connect to an address finds the
// answer that gave it (which came first), and an attempt's end the
// latest answers for its name.
func (p *pipeline) drainDNS() error {
	d := p.dns
	if d == nil || d.watch == nil || !d.watch.Pending() {
		return nil
	}
	for {
		ok, err := d.watch.Read(&d.ans)
		if err != nil || !ok {
			return err
		}
		a := &d.ans
		o := &d.obs
		*o = dnscache.Observation{K: a.Ktime, At: d.clock.Wall(a.Ktime), Server: a.Server, TCP: a.TCP,
			Cgroup: a.Cgroup, Msg: a.Data}
		if a.OwnerKnown {
			o.PID, o.Comm, o.Cgroup = a.PID, a.Comm, a.OwnerCgroup
			o.Self = a.PID == d.self
			o.Netns = netnsOf(d.root, a.PID, a.TID)
		}
		if err := p.observeDNS(o); err != nil {
			return err
		}
	}
}

// netnsOf is the network namespace of thread tid of process pid (of the
// process if the thread is gone); 0 if both are gone.
func netnsOf(root string, pid, tid uint32) uint32 {
	base := root + "/proc/" + strconv.FormatUint(uint64(pid), 10)
	if tid != 0 {
		if ino, err := snapshot.NetnsInode(base + "/task/" + strconv.FormatUint(uint64(tid), 10) + "/ns/net"); err == nil {
			return ino
		}
	}
	ino, _ := snapshot.NetnsInode(base + "/ns/net")
	return ino
}

// observeDNS takes in one answer, live or replayed, and records it.
func (p *pipeline) observeDNS(o *dnscache.Observation) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dns.cache.Add(o)
	if p.hooks.DNS != nil {
		p.hooks.DNS(o)
	}
	if p.flight != nil {
		p.flight.DNS(o)
	}
	if p.recorder != nil {
		return p.recorder.DNS(o)
	}
	return nil
}

// expiredFor: an address is used "long after" its TTL ran out when the
// TTL ran out this long ago, or TTL seconds ago if longer.
const expiredFor = time.Minute

// staleAlert raises stale-dns when an attempt goes to an address that
// the name it came from no longer resolves to: an attempt that failed,
// or a new one long after the answer's TTL ran out. When the name's
// latest answer still holds the address, a failed attempt asks the
// server again (live; again once its last answer is older than its TTL,
// see dnslookup.Options): the next attempt may then tell.
func (p *pipeline) staleAlert(t *record.Transition) *analysis.Alert {
	d := p.dns
	if d == nil || t.DNS == nil {
		return nil
	}
	var reason string
	switch {
	case t.Old == tcpstate.SynSent && t.New == tcpstate.Close:
		reason = "failing"
	case t.Old == tcpstate.Close && t.New == tcpstate.SynSent:
		ttl := time.Duration(t.DNS.TTL) * time.Second
		if t.Time.Sub(t.DNS.At) < ttl+max(ttl, expiredFor) {
			return nil
		}
		reason = "expired"
	default:
		return nil
	}
	cur, stale := d.cache.Stale(t.DNS, t.Dst)
	if !stale {
		if reason == "failing" && d.lookup != nil && t.DNS.Server.IsValid() && t.OwnerKnown {
			d.lookup.Ask(t.DNS.Name, t.Dst.Is6(), t.DNS.Server, t.Netns, t.OwnerPID, t.OwnerTID, nil)
		}
		return nil
	}
	k := staleKey{analysis.DestKey{Netns: t.Netns, Addr: t.Dst, Port: t.DPort}, t.OwnerPID, t.DNS.Name}
	if d.alerted[k] == cur.K && cur.K != 0 {
		return nil
	}
	if len(d.alerted) >= maxStale {
		clear(d.alerted)
	}
	d.alerted[k] = cur.K
	if len(d.stale) < maxStale {
		d.stale[k.dest] = true
	}
	dest, ok := p.conns.Lookup(k.dest)
	if !ok {
		dest = analysis.Dest{DestKey: k.dest, OwnerKnown: t.OwnerKnown, PID: t.OwnerPID, Comm: t.OwnerComm, Owner: t.OwnerID, DNS: t.DNS}
	}
	return &analysis.Alert{Kind: analysis.StaleDNS, Time: t.Time, Dest: dest,
		Stale: &analysis.Stale{Origin: t.DNS, Current: cur, Reason: reason}}
}

// staleCleared: a destination that connects again is no longer stale.
func (p *pipeline) staleCleared(t *record.Transition) {
	if p.dns != nil && t.Old == tcpstate.SynSent && t.New == tcpstate.Established {
		delete(p.dns.stale, analysis.DestKey{Netns: t.Netns, Addr: t.Dst, Port: t.DPort})
	}
}

// openDNS starts passive DNS for a live trace; without it (an old
// kernel, no cgroup2), names are not shown and the user is told why.
func openDNS(o *Options, cgroupMount string, clock *events.Clock) *dnsNames {
	if o.NoDNS {
		return nil
	}
	d := newDNSNames(dnscache.Options{})
	w, err := dnswatch.Open(cgroupMount)
	if err != nil {
		fmt.Fprintf(os.Stderr, "socktrace: %v: no DNS names on destinations (--no-dns hides this)\n", err)
		return d // names from nowhere: every dns_name is null
	}
	d.watch, d.clock, d.root = w, clock, o.HostRoot
	if d.root == "/" {
		d.root = ""
	}
	if !o.NoDNSLookup {
		d.lookup = dnslookup.New(dnslookup.Options{Root: o.HostRoot})
	}
	return d
}

func (d *dnsNames) close() {
	if d != nil && d.watch != nil {
		d.watch.Close()
	}
}

// dnsState is the DNS part of State (nil without passive DNS); p.mu held.
func (p *pipeline) dnsState() *DNSState {
	d := p.dns
	if d == nil {
		return nil
	}
	s := &DNSState{StaleDestinations: len(d.stale), Cache: d.cache.Stats(), Watching: d.watch != nil}
	if d.watch != nil {
		s.Sent, s.Lost, _ = d.watch.Counts()
	}
	if d.lookup != nil {
		s.Lookups = d.lookup.Stats()
	}
	return s
}

// dnsSummary is the DNS part of a summary; p.mu held.
func (p *pipeline) dnsSummary() *analysis.DNSSummary {
	st := p.dnsState()
	if st == nil {
		return nil
	}
	c := st.Cache
	return &analysis.DNSSummary{Answers: c.Answers, Malformed: c.Malformed, Cut: c.Cut, Lost: st.Lost,
		Addrs: c.Addrs, Names: c.Names, AddrsEvicted: c.AddrsEvicted, NamesEvicted: c.NamesEvicted, Stale: st.StaleDestinations}
}
