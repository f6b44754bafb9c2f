package events_test

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// bpfMapRSS is the resident memory, in bytes, of this process's mappings
// of BPF maps (ring buffers are the only ones a tracer maps).
func bpfMapRSS(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sum int64
	inMap := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			inMap = len(fields) >= 6 && fields[5] == "anon_inode:bpf-map"
		case inMap && len(fields) == 3 && fields[0] == "Rss:":
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatalf("smaps: %q: %v", sc.Text(), err)
			}
			sum += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestRingResident: the ring buffer costs its size in resident memory,
// not twice that. The kernel lets a reader map the data pages twice (so
// that a record that wraps reads straight), and all of that mapping is
// resident at once: an 8 MiB ring was 16 MiB of VmRSS.
func TestRingResident(t *testing.T) {
	testnet.RequireRoot(t)
	const size = 1 << 20
	before := bpfMapRSS(t)
	tr, err := events.Open(events.Options{RingSize: size, Filter: events.KernelFilter{Netns: testnet.New(t).Inode}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	page := int64(os.Getpagesize())
	got := bpfMapRSS(t) - before
	if got > size+2*page {
		t.Errorf("a %d-byte ring buffer adds %d bytes of resident memory, want at most %d (its size, a consumer and a producer page)", size, got, size+2*page)
	}
	t.Logf("%d-byte ring: %d bytes resident", size, got)
}

// TestRingWraps reads a one-page ring buffer as the kernel fills it, so
// that records run past its end again and again: each one read must be
// one a second tracer with a large ring saw, and what the small one
// delivered plus what it said it lost is exactly that.
func TestRingWraps(t *testing.T) {
	ns := testnet.New(t)
	f := events.KernelFilter{Netns: ns.Inode}
	ref := startCollector(t, events.Options{Filter: f})
	small := startCollector(t, events.Options{Filter: f, RingSize: os.Getpagesize()})
	const conns = 60
	for i := 0; i < conns; i++ {
		exchange(t, ns, "tcp4", "127.0.0.1:0")
	}
	ref.waitFor(t, "every socket closed", closedCount(3*conns))
	want := ref.stop(t)
	got := small.stop(t)
	type key struct {
		sk       uint64
		old, new string
	}
	refs := map[key]int{}
	for _, r := range want {
		refs[key{r.SkAddr, r.Old.String(), r.New.String()}]++
	}
	for _, r := range got {
		k := key{r.SkAddr, r.Old.String(), r.New.String()}
		if refs[k] == 0 {
			t.Errorf("the one-page ring delivered a transition the reference did not see (a record read wrong across the ring's end?): %+v", r)
			continue
		}
		refs[k]--
	}
	small.mu.Lock()
	lost := small.lost
	small.mu.Unlock()
	if uint64(len(got))+lost != uint64(len(want)) {
		t.Errorf("one-page ring: delivered %d + lost %d, want exactly %d", len(got), lost, len(want))
	}
	if len(got) < 3*conns {
		t.Errorf("one-page ring delivered %d of %d transitions: too few for its records to have wrapped often", len(got), len(want))
	}
	t.Logf("%d transitions: the one-page ring delivered %d, lost %d", len(want), len(got), lost)
}
