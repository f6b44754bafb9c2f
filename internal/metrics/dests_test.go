package metrics

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
)

// fakeKernel is the kernel's destination map: counters by key.
type fakeKernel struct {
	n       map[string]*events.DestCount
	deleted int
}

func newFakeKernel() *fakeKernel { return &fakeKernel{n: map[string]*events.DestCount{}} }

func (f *fakeKernel) add(daddr string, port uint16, comm string, counter int, n uint64) {
	f.addIn(0, daddr, port, comm, counter, n)
}

// addIn counts n in namespace netns.
func (f *fakeKernel) addIn(netns uint32, daddr string, port uint16, comm string, counter int, n uint64) {
	k := fmt.Sprintf("%d|%s|%d|%s", netns, daddr, port, comm)
	c := f.n[k]
	if c == nil {
		c = &events.DestCount{Key: events.NewDestKeyIn(netns, netip.MustParseAddr(daddr), port, comm)}
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
		{"10.0.0.3", "9092", "app", "", workload{}}: 3, {"10.0.0.4", "9092", "app", "", workload{}}: 4, {"10.0.0.5", "9092", "app", "", workload{}}: 5,
		{Other, "9092", "app", "", workload{}}: 1 + 2,
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

// TestConnectCountersNetns: a loopback destination is a different place
// in each network namespace, so each namespace's has series of its own,
// labelled with the namespace's name (or netns:INODE when it has none);
// any other destination's attempts from every namespace stay merged.
// Folded destinations lose the label.
func TestConnectCountersNetns(t *testing.T) {
	names := map[uint32]string{1: "netns:blue", 2: "pod:shop/checkout-1", 4: "netns:blue-again"}
	col := New(Options{})
	col.nsNames = func(ino uint32) string { return names[ino] }
	k := newFakeKernel()
	c := newConnectCounters(k, 100, 0)
	c.netns = col.netnsLabel
	for ns := uint32(1); ns <= 3; ns++ {
		k.addIn(ns, "127.0.0.1", 9093, "app", events.OutcomeRefused, uint64(ns))
		k.addIn(ns, "::1", 9093, "app", events.OutcomeEstablished, 10*uint64(ns))
		k.addIn(ns, "10.0.0.1", 9093, "app", events.OutcomeRefused, 100*uint64(ns))
	}
	c.update(time.Unix(1, 0))
	// A name that changes later (the process it came from ended) does
	// not move the namespace's series.
	names[1] = "netns:renamed"
	k.addIn(1, "127.0.0.2", 9093, "app", events.OutcomeRefused, 1000)
	c.update(time.Unix(2, 0))
	got := series(c)
	want := map[destLabels]uint64{
		{"127.0.0.1", "9093", "app", "netns:blue", workload{}}:          1,
		{"127.0.0.1", "9093", "app", "pod:shop/checkout-1", workload{}}: 2,
		{"127.0.0.1", "9093", "app", "netns:3", workload{}}:             3,
		{"::1", "9093", "app", "netns:blue", workload{}}:                10,
		{"::1", "9093", "app", "pod:shop/checkout-1", workload{}}:       20,
		{"::1", "9093", "app", "netns:3", workload{}}:                   30,
		{"10.0.0.1", "9093", "app", "", workload{}}:                     100 + 200 + 300,
		{"127.0.0.2", "9093", "app", "netns:blue", workload{}}:          1000,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series\n%v\nwant\n%v", got, want)
	}

	// Beyond the cap, loopback destinations fold into daddr="other"
	// without a namespace.
	k = newFakeKernel()
	c = newConnectCounters(k, 2, 0)
	c.netns = col.netnsLabel
	for ns := uint32(1); ns <= 3; ns++ {
		k.addIn(ns, "127.0.0.1", 9093, "app", events.OutcomeRefused, 1)
		c.update(time.Unix(int64(ns), 0))
	}
	got = series(c)
	if got[destLabels{daddr: Other, dport: "9093", comm: "app"}] != 1 || len(got) != 3 || total(got) != 3 {
		t.Errorf("folded series %v, want the oldest folded into daddr=other without a namespace", got)
	}
}

// TestHandshakeHistogramsBounded: past MaxDestinations, a new
// destination's handshake times join the "other" histogram (and the
// reading goroutine goes on: it used to wait on a lock it held).
func TestHandshakeHistogramsBounded(t *testing.T) {
	c := New(Options{MaxDestinations: 2})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 5; i++ {
			tr := &record.Transition{Transition: events.Transition{Dst: netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", i+1)), DPort: 443}}
			c.connected(tr, time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connected() did not return: it deadlocked folding a histogram")
	}
	var n uint64
	for _, h := range c.hists {
		n += h.n
	}
	if len(c.hists) > 3 || c.hists[histKey{Other, 0, ""}] == nil || n != 5 {
		t.Errorf("%d histograms holding %d handshakes, want at most 2 destinations and other, 5 handshakes", len(c.hists), n)
	}
}
