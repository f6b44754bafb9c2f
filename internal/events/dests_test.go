package events_test

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestConnectCountersExactUnderOverflow counts connect outcomes in the
// kernel with a one-page ring buffer that nobody reads: transitions are
// lost, the counts are not.
func TestConnectCountersExactUnderOverflow(t *testing.T) {
	ns := testnet.New(t)
	tr, err := events.Open(events.Options{Filter: events.KernelFilter{Netns: ns.Inode}, RingSize: os.Getpagesize()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	// A closed port, and a listener.
	var ln net.Listener
	ns.Run(t, func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return })
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	okPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	const refused, established = 150, 60
	for i := 0; i < refused; i++ {
		refuse(t, ns, "127.0.0.1:9")
	}
	ns.Run(t, func() error {
		for i := 0; i < established; i++ {
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
	if lost, _ := tr.LostTotal(); lost == 0 {
		t.Fatalf("no transitions lost with a %d-byte ring: the test proves nothing", os.Getpagesize())
	}
	counts, overflow, err := tr.DestCounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]uint16]uint64{}
	lo := netip.MustParseAddr("127.0.0.1")
	comm := ""
	for _, c := range counts {
		if c.Key.Netns != ns.Inode || c.Key.Daddr != lo {
			t.Errorf("counter for %v in netns %d: want only 127.0.0.1 in %d", c.Key.Daddr, c.Key.Netns, ns.Inode)
		}
		for o := 0; o < events.NumOutcomes; o++ {
			if c.N[o] > 0 {
				got[[2]uint16{c.Key.DPort, uint16(o)}] += c.N[o]
			}
		}
		if c.Key.OwnerKnown {
			comm = c.Key.Comm
		}
	}
	want := map[[2]uint16]uint64{{9, events.OutcomeRefused}: refused, {okPort, events.OutcomeEstablished}: established}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("port %d outcome %d: counted %d, want %d (all: %v)", k[0], k[1], got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("counters %v, want only %v", got, want)
	}
	// One kernel entry per destination: nothing else (such as bytes after
	// the process name) may split a key.
	if len(counts) != len(want) {
		t.Errorf("%d kernel counters, want %d: %+v", len(counts), len(want), counts)
	}
	if self := processName(t); comm != self {
		t.Errorf("owner %q, want this test %q", comm, self)
	}
	if overflow != [events.NumDestCounters]uint64{} {
		t.Errorf("overflow %v with two destinations", overflow)
	}

	// Deleting a destination returns its values and removes it.
	for i := range counts {
		if counts[i].Key.DPort == 9 {
			n, err := tr.DeleteDest(&counts[i].Key)
			if err != nil || n[events.OutcomeRefused] != refused {
				t.Fatalf("DeleteDest = %v, %v; want %d refused", n, err, refused)
			}
		}
	}
	refuse(t, ns, "127.0.0.1:9")
	time.Sleep(10 * time.Millisecond)
	counts, _, _ = tr.DestCounts(counts)
	for _, c := range counts {
		if c.Key.DPort == 9 && c.N[events.OutcomeRefused] != 1 {
			t.Errorf("after delete and one more refused connect: %d, want 1", c.N[events.OutcomeRefused])
		}
	}
}

// processName is the kernel's comm of this process (15 bytes at most).
func processName(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:len(b)-1])
}
