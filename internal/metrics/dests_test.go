package metrics

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/events"
)

// fakeKernel is the kernel's destination map: counters by key.
type fakeKernel struct {
	n       map[string]*events.DestCount
	deleted int
}

func newFakeKernel() *fakeKernel { return &fakeKernel{n: map[string]*events.DestCount{}} }

func (f *fakeKernel) add(daddr string, port uint16, comm string, counter int, n uint64) {
	k := fmt.Sprintf("%s|%d|%s", daddr, port, comm)
	c := f.n[k]
	if c == nil {
		c = &events.DestCount{Key: events.NewDestKey(netip.MustParseAddr(daddr), port, comm)}
		f.n[k] = c
	}
	c.N[counter] += n
}

func (f *fakeKernel) DestCounts(dst []events.DestCount) ([]events.DestCount, counts, error) {
	dst = dst[:0]
	for _, c := range f.n {
		dst = append(dst, *c)
	}
	return dst, counts{}, nil
}

func (f *fakeKernel) DeleteDest(k *events.DestKey) (counts, error) {
	for s, c := range f.n {
		if c.Key.ID() == k.ID() {
			delete(f.n, s)
			f.deleted++
			return c.N, nil
		}
	}
	return counts{}, nil
}

// series returns the label sets and their total attempts.
func series(c *connectCounters) map[destLabels]uint64 {
	out := map[destLabels]uint64{}
	c.each(func(l destLabels, n counts) {
		var sum uint64
		for _, v := range n[:events.NumOutcomes] {
			sum += v
		}
		out[l] = sum
	})
	return out
}

func total(m map[destLabels]uint64) uint64 {
	var t uint64
	for _, v := range m {
		t += v
	}
	return t
}

func TestConnectCountersFold(t *testing.T) {
	k := newFakeKernel()
	c := newConnectCounters(k, 3, 0)
	t0 := time.Unix(1000, 0)
	// Five destinations, the first the least recently active.
	for i := 0; i < 5; i++ {
		k.add(fmt.Sprintf("10.0.0.%d", i+1), 9092, "app", events.OutcomeRefused, uint64(i+1))
		if err := c.update(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got := series(c)
	want := map[destLabels]uint64{
		{"10.0.0.3", "9092", "app", workload{}}: 3, {"10.0.0.4", "9092", "app", workload{}}: 4, {"10.0.0.5", "9092", "app", workload{}}: 5,
		{Other, "9092", "app", workload{}}: 1 + 2,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	if c.folded != 2 || k.deleted != 2 {
		t.Errorf("folded %d, deleted %d kernel counters; want 2, 2", c.folded, k.deleted)
	}
	// A folded destination that comes back starts a series of its own;
	// the totals never go down.
	k.add("10.0.0.1", 9092, "app", events.OutcomeRefused, 7)
	c.update(t0.Add(10 * time.Second))
	got = series(c)
	if got[destLabels{daddr: "10.0.0.1", dport: "9092", comm: "app"}] != 7 || total(got) != 1+2+3+4+5+7 {
		t.Errorf("after 10.0.0.1 came back: %v", got)
	}
	if len(got) != 4 { // three real, one folded
		t.Errorf("%d label sets, want at most 3 real and the folded one: %v", len(got), got)
	}
}

func TestConnectCountersBounded(t *testing.T) {
	// A scan of many ports of many addresses: label sets stay bounded,
	// and every attempt is still counted somewhere.
	k := newFakeKernel()
	const max = 10
	c := newConnectCounters(k, max, 0)
	now := time.Unix(1000, 0)
	var made uint64
	for i := 0; i < 500; i++ {
		k.add(fmt.Sprintf("10.1.%d.%d", i/250, i%250), uint16(1000+i), fmt.Sprintf("scan%d", i%40), events.OutcomeTimeout, 1)
		made++
		now = now.Add(time.Millisecond)
		c.update(now)
	}
	got := series(c)
	if len(got) > 2*max+1 {
		t.Errorf("%d label sets, want at most %d", len(got), 2*max+1)
	}
	if total(got) != made {
		t.Errorf("counted %d attempts, made %d", total(got), made)
	}
	if got[destLabels{daddr: Other, dport: Other, comm: Other}] == 0 {
		t.Errorf("nothing folded all the way: %v", got)
	}
}

func TestConnectCountersForget(t *testing.T) {
	k := newFakeKernel()
	c := newConnectCounters(k, 100, 15*time.Minute)
	t0 := time.Unix(1000, 0)
	k.add("10.0.0.1", 443, "curl", events.OutcomeEstablished, 2)
	k.add("10.0.0.2", 443, "curl", events.OutcomeEstablished, 1)
	c.update(t0)
	k.add("10.0.0.2", 443, "curl", events.OutcomeEstablished, 1)
	c.update(t0.Add(10 * time.Minute))
	c.update(t0.Add(16 * time.Minute)) // 10.0.0.1 quiet for 16m, 10.0.0.2 for 6m
	got := series(c)
	if _, ok := got[destLabels{daddr: "10.0.0.1", dport: "443", comm: "curl"}]; ok {
		t.Errorf("10.0.0.1 not forgotten after 16 minutes of quiet: %v", got)
	}
	if got[destLabels{daddr: "10.0.0.2", dport: "443", comm: "curl"}] != 2 {
		t.Errorf("10.0.0.2: %v, want 2", got)
	}
	if len(k.n) != 1 {
		t.Errorf("kernel counters left %d, want 1 (the forgotten one deleted)", len(k.n))
	}
}

func TestUnknownOwner(t *testing.T) {
	k := newFakeKernel()
	c := newConnectCounters(k, 10, 0)
	k.add("::1", 80, "", events.OutcomeRefused, 1)
	c.update(time.Unix(1, 0))
	if got := series(c); got[destLabels{daddr: "::1", dport: "80", comm: UnknownComm}] != 1 {
		t.Errorf("series %v, want comm %q for an unknown owner", got, UnknownComm)
	}
}
