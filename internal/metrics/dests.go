package metrics

import (
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/identity"
)

// Other is the label value destinations are folded into beyond the cap.
const Other = "other"

// UnknownComm labels attempts whose owning process is not known (a
// connect under way before socktrace started).
const UnknownComm = "unknown"

// destLabels is one destination label set: daddr, dport, comm, the
// network namespace of a loopback destination (netns, "" for the others),
// and with --workload-labels who the owner is.
type destLabels struct {
	daddr, dport, comm, netns string
	who                       workload
}

// workload is the identity labels: namespace, pod, container, unit (all
// "" without --workload-labels, or when not known).
type workload struct{ namespace, pod, container, unit string }

func workloadOf(id *identity.Identity) workload {
	if id == nil {
		return workload{}
	}
	c := id.Container
	if c == "" && id.ContainerID != "" && id.Pod == "" {
		c = id.ContainerID // a container outside Kubernetes: its id names it
	}
	return workload{id.Namespace, id.Pod, c, id.Unit}
}

func (w workload) values() []string { return []string{w.namespace, w.pod, w.container, w.unit} }

// counts are one destination's counters (events.OutcomeEstablished...).
type counts = [events.NumDestCounters]uint64

// destSeries is the counters of one label set: what its kernel counters
// hold now, plus what was folded in from counters deleted.
type destSeries struct {
	labels destLabels
	keys   map[any]counts // kernel counter -> its last values
	folded counts
	last   time.Time // last change
}

func (s *destSeries) counts() counts {
	c := s.folded
	for _, v := range s.keys {
		for i := range v {
			c[i] += v[i]
		}
	}
	return c
}

// counterSource is what the counters are read from: the tracer.
type counterSource interface {
	DestCounts(dst []events.DestCount) ([]events.DestCount, counts, error)
	DeleteDest(k *events.DestKey) (counts, error)
}

// connectCounters turns the kernel's destination counters, keyed by
// namespace, family, address, port and owner, into bounded
// label sets: at most max destinations (the most recently active); the
// rest fold into daddr="other" (same port and process), and those, at
// most max again, into daddr, dport and comm "other". A label set quiet
// for forget disappears.
type connectCounters struct {
	src      counterSource
	max      int
	forget   time.Duration
	sets     map[destLabels]*destSeries
	byKey    map[any]*destSeries
	keyOf    map[any]events.DestKey
	overflow counts // map full: counted without a destination
	folded   uint64 // label sets folded so far
	buf      []events.DestCount
	// identify: the identity of a cgroup id, for the workload labels;
	// nil: no such labels.
	identify func(cgroup uint64) *identity.Identity
	// netns: the netns label of a destination reached from a namespace
	// (see Collector.netnsLabel); nil: none.
	netns func(ino uint32, daddr netip.Addr) string
}

func newConnectCounters(src counterSource, max int, forget time.Duration) *connectCounters {
	return &connectCounters{src: src, max: max, forget: forget,
		sets: map[destLabels]*destSeries{}, byKey: map[any]*destSeries{}, keyOf: map[any]events.DestKey{}}
}

func (c *connectCounters) labelsOf(k *events.DestKey) destLabels {
	comm := UnknownComm
	if k.OwnerKnown {
		comm = k.Comm
	}
	l := destLabels{daddr: k.Daddr.String(), dport: strconv.Itoa(int(k.DPort)), comm: comm}
	if c.netns != nil {
		l.netns = c.netns(k.Netns, k.Daddr)
	}
	if c.identify != nil && k.OwnerKnown {
		l.who = workloadOf(c.identify(k.Cgroup))
	}
	return l
}

// update reads the kernel's counters, then folds and forgets.
func (c *connectCounters) update(now time.Time) error {
	got, overflow, err := c.src.DestCounts(c.buf)
	c.buf = got
	if err != nil {
		return err
	}
	c.overflow = overflow
	for i := range got {
		k := &got[i].Key
		id := k.ID()
		s := c.byKey[id]
		if s == nil {
			l := c.labelsOf(k)
			if s = c.sets[l]; s == nil {
				s = &destSeries{labels: l, keys: map[any]counts{}, last: now}
				c.sets[l] = s
			}
			c.byKey[id] = s
			c.keyOf[id] = *k
		}
		if old, ok := s.keys[id]; !ok || old != got[i].N {
			s.keys[id] = got[i].N
			s.last = now
		}
	}
	c.forgetQuiet(now)
	c.fold(now)
	return nil
}

// forgetQuiet drops the label sets quiet for longer than forget.
func (c *connectCounters) forgetQuiet(now time.Time) {
	if c.forget <= 0 {
		return
	}
	for l, s := range c.sets {
		if now.Sub(s.last) > c.forget {
			c.drop(s)
			delete(c.sets, l)
		}
	}
}

// drop deletes a label set's kernel counters and returns what they held.
func (c *connectCounters) drop(s *destSeries) counts {
	got := s.folded
	for id, v := range s.keys {
		k := c.keyOf[id]
		n, err := c.src.DeleteDest(&k)
		for i := range n {
			if err != nil || n[i] < v[i] {
				n[i] = v[i] // never less than what was shown
			}
			got[i] += n[i]
		}
		delete(c.byKey, id)
		delete(c.keyOf, id)
	}
	return got
}

// fold keeps at most max label sets of real destinations, and at most
// max of those folded by address.
func (c *connectCounters) fold(now time.Time) {
	var real, byAddr []*destSeries
	for _, s := range c.sets {
		switch {
		case s.labels.daddr != Other:
			real = append(real, s)
		case s.labels.dport != Other:
			byAddr = append(byAddr, s)
		}
	}
	into := func(victims []*destSeries, to func(destLabels) destLabels) {
		sort.Slice(victims, func(i, j int) bool { return victims[i].last.Before(victims[j].last) })
		for _, s := range victims[:len(victims)-c.max] {
			got := c.drop(s)
			delete(c.sets, s.labels)
			l := to(s.labels)
			o := c.sets[l]
			if o == nil {
				o = &destSeries{labels: l, keys: map[any]counts{}}
				c.sets[l] = o
			}
			for i, v := range got {
				o.folded[i] += v
			}
			if s.last.After(o.last) {
				o.last = s.last
			}
			c.folded++
		}
	}
	if len(real) > c.max {
		into(real, func(l destLabels) destLabels { return destLabels{Other, l.dport, l.comm, "", l.who} })
		byAddr = byAddr[:0]
		for _, s := range c.sets {
			if s.labels.daddr == Other && s.labels.dport != Other {
				byAddr = append(byAddr, s)
			}
		}
	}
	if len(byAddr) > c.max {
		into(byAddr, func(destLabels) destLabels { return destLabels{Other, Other, Other, "", workload{}} })
	}
}

// each calls fn for every label set with its counts, the kernel's
// overflow included in the all-"other" set.
func (c *connectCounters) each(fn func(l destLabels, n counts)) {
	overflowed := false
	for _, v := range c.overflow {
		overflowed = overflowed || v > 0
	}
	all := destLabels{Other, Other, Other, "", workload{}}
	for l, s := range c.sets {
		n := s.counts()
		if l == all {
			for i, v := range c.overflow {
				n[i] += v
			}
			overflowed = false
		}
		fn(l, n)
	}
	if overflowed {
		fn(all, c.overflow)
	}
}

// active reports whether a label set is one of the real destinations
// kept (not folded, not forgotten).
func (c *connectCounters) active(l destLabels) bool { return c.sets[l] != nil }
