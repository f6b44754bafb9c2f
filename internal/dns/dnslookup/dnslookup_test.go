package dnslookup

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testdns"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// asker is a thread of this process living in ns, as the process whose
// namespace a lookup is made from.
func asker(t *testing.T, ns *testnet.NS) uint32 {
	t.Helper()
	tid, stop := make(chan int), make(chan struct{})
	go ns.Do(func() error { tid <- unix.Gettid(); <-stop; return nil })
	t.Cleanup(func() { close(stop) })
	return uint32(<-tid)
}

// TestAskAgainAfterTTL: a name is asked again once the last lookup's
// answer is older than its TTL, at least MinEvery and at most Every
// apart; after lookups that got no answer, FailedEvery doubling with each
// in a row; and lookups of
// all names stay within PerSecond.
func TestAskAgainAfterTTL(t *testing.T) {
	ns := testnet.New(t)
	srv := testdns.Start(t, ns.Do)
	tid := asker(t, ns)
	pid := uint32(os.Getpid())
	var now time.Time
	newClient := func() *Client {
		c := New(Options{})
		c.now = func() time.Time { return now }
		return c
	}
	// ask asks name at server at time at (from the start), waits for the
	// lookup to end, and says whether it was sent.
	ask := func(t *testing.T, c *Client, name string, server netip.AddrPort, at time.Duration) bool {
		t.Helper()
		now = time.Unix(1e9, 0).Add(at)
		done := make(chan error, 1)
		if !c.Ask(name, false, server, ns.Inode, pid, tid, func(err error) { done <- err }) {
			return false
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("lookup of %s did not end", name)
		}
		return true
	}
	dead := netip.MustParseAddrPort("127.0.0.1:54") // nothing listens: refused
	for _, tc := range []struct {
		name   string
		ttl    uint32
		server netip.AddrPort
		asks   []time.Duration // since the first
		sent   []bool
	}{
		{"TTL 1s", 1, srv.Addr, []time.Duration{0, 0, 999 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2 * time.Second}, []bool{true, false, false, true, false, true}},
		{"TTL 0: 1s apart at least", 0, srv.Addr, []time.Duration{0, 500 * time.Millisecond, time.Second}, []bool{true, false, true}},
		{"TTL 10s", 10, srv.Addr, []time.Duration{0, time.Second, 9 * time.Second, 10 * time.Second}, []bool{true, false, false, true}},
		{"TTL 1h: 30s apart at most", 3600, srv.Addr, []time.Duration{0, 29 * time.Second, 30 * time.Second}, []bool{true, false, true}},
		{"no answer: 1s, then 2s, then 4s", 1, dead,
			[]time.Duration{0, 999 * time.Millisecond, time.Second, 2999 * time.Millisecond, 3 * time.Second, 6999 * time.Millisecond, 7 * time.Second},
			[]bool{true, false, true, false, true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetTTL(tc.ttl)
			srv.Set("kafka.example", "10.4.1.80")
			c := newClient()
			for i, at := range tc.asks {
				if got := ask(t, c, "kafka.example", tc.server, at); got != tc.sent[i] {
					t.Errorf("ask at +%v: sent %v, want %v", at, got, tc.sent[i])
				}
			}
			st := c.Stats()
			if tc.server == dead && st.Failed == 0 {
				t.Errorf("lookups at a dead server: %+v, none failed", st)
			}
		})
	}
	t.Run("all names", func(t *testing.T) {
		srv.SetTTL(1)
		c := newClient()
		for i := 0; i < 20; i++ {
			name := fmt.Sprintf("n%d.example", i)
			srv.Set(name, "10.4.1.80")
			if got, want := ask(t, c, name, srv.Addr, 0), i < DefaultPerSecond; got != want {
				t.Errorf("name %d at once: sent %v, want %v", i, got, want)
			}
		}
		if !ask(t, c, "n19.example", srv.Addr, time.Second/DefaultPerSecond) {
			t.Errorf("no budget for a lookup 1/%ds later", DefaultPerSecond)
		}
		if st := c.Stats(); st.Sent != DefaultPerSecond+1 || st.Limited != 20-DefaultPerSecond || st.Failed != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}
