package events_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestNestedTransitions: under a churn that makes the kernel nest the
// tracepoint (a softirq's transition while the primary program runs on
// that CPU, which the kernel then skips), the backup program sends the
// nested transitions: every connection's ten transitions are there, none
// twice, and the kernel's misses of the primary are those the backup
// sent (bar a miss of both, counted as skipped).
func TestNestedTransitions(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}, RingSize: 64 << 20})
	if ok, why := c.tr.Backup(); !ok {
		// A kernel without the recursion guard runs nested transitions
		// itself (before 6.1): nothing is skipped, no backup is needed.
		t.Skipf("not supported: no backup program: %v", why)
	}
	var ln net.Listener
	ns.Run(t, func() (err error) {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	})
	var accepted atomic.Int64
	go func() {
		for {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			s.Close()
			accepted.Add(1)
		}
	}()
	// Churn until the kernel has nested at least once (it does now and
	// then at full churn), for 30 s at most.
	made := 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ns.Do(func() error {
					for i := 0; i < 2000; i++ {
						if conn, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
							conn.Close()
						}
					}
					return nil
				})
			}()
		}
		wg.Wait()
		made += 4000
		if primary, _ := c.tr.RecursionMisses(); primary > 0 || time.Now().After(deadline) {
			break
		}
	}
	// Every connection accepted before the listener closes (closing it
	// would abort those still queued: other transitions). Slow VMs lag.
	for end := time.Now().Add(60 * time.Second); accepted.Load() < int64(made) && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	ln.Close()
	want := made*10 + 2
	// Until all are in, or none has come for 3 s (30 s at most).
	last, lastAt := -1, time.Now()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		c.mu.Lock()
		n := len(c.recs)
		c.mu.Unlock()
		if n >= want || n == last && time.Since(lastAt) > 3*time.Second {
			break
		}
		if n != last {
			last, lastAt = n, time.Now()
		}
	}
	time.Sleep(200 * time.Millisecond) // anything more (a duplicate) comes now
	recs := c.stop(t)
	primary, backup := c.tr.RecursionMisses()
	rescued := c.tr.Rescued()
	fromBackup := 0
	type key struct {
		sk       uint64
		cookie   uint64
		old, new tcpstate.State
	}
	seen := map[key]int{}
	for _, r := range recs {
		if r.FromBackup {
			fromBackup++
		}
		seen[key{r.SkAddr, r.Cookie, r.Old, r.New}]++
	}
	t.Logf("%d connections, %d transitions: the kernel skipped the primary %d times, the backup %d; the backup sent %d (counted %d); %d reported skipped",
		made, len(recs), primary, backup, fromBackup, rescued, c.skipped)
	if primary == 0 {
		t.Skipf("the kernel never nested the tracepoint in %d connections: nothing to prove here", made)
	}
	// The kernel's counts are of every namespace (other tests run beside
	// this one); what the backup sent, of this test's only.
	for k, n := range seen {
		if n > 1 {
			t.Errorf("socket %x (cookie %d): %v -> %v sent %d times", k.sk, k.cookie, k.old, k.new, n)
		}
	}
	if uint64(fromBackup) > rescued || rescued > primary {
		t.Errorf("the kernel skipped the primary %d times, the backup counted %d and sent %d", primary, rescued, fromBackup)
	}
	if c.lost != 0 {
		t.Fatalf("%d lost in the ring buffer: the test needs none", c.lost)
	}
	// All there, but for those both programs missed (nested twice), and
	// the rare closing pair the kernel makes without running any program
	// on its tracepoint nor counting a miss (README, "Lost transitions":
	// tcpstates misses it too).
	if c.skipped > primary-rescued {
		t.Errorf("%d transitions reported skipped, more than the %d the primary missed less the %d the backup sent", c.skipped, primary, rescued)
	}
	if missing := want - len(recs); missing < 0 || uint64(missing) > primary-rescued+2 {
		t.Errorf("%d transitions made, %d sent: %d missing, but only %d runs missed by both programs", want, len(recs), missing, primary-rescued)
	}
	if fromBackup == 0 {
		t.Skipf("no nested transition was of this test's namespace (the kernel's %d were of others): all there and none twice, but nothing nested to prove it on", primary)
	}
}
