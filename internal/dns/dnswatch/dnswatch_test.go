package dnswatch

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/socktrace/socktrace/internal/owner/cgroups"
	"github.com/socktrace/socktrace/internal/testkit/testdns"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// resolver asks srv from inside ns, over network ("udp" or "tcp").
func resolver(ns *testnet.NS, network string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:53")
			return err
		})
		return c, err
	}}
}

func open(t *testing.T) *Watch {
	t.Helper()
	testnet.RequireRoot(t)
	w, err := Open(cgroups.New("/").Mount())
	if err != nil {
		testnet.Skip(t, err.Error())
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// collect reads the answers to port want.Port of the test's server until
// one names name, or fails after a while.
func collect(t *testing.T, w *Watch, name string) Answer {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var a Answer
		ok, err := w.Read(&a)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		var p dnsmessage.Parser
		if _, err := p.Start(a.Data); err != nil {
			continue
		}
		q, err := p.Question()
		if err == nil && strings.EqualFold(q.Name.String(), name) {
			a.Data = append([]byte(nil), a.Data...)
			return a
		}
	}
	t.Fatalf("no answer for %s seen", name)
	return Answer{}
}

func TestAnswersWithAsker(t *testing.T) {
	w := open(t)
	ns := testnet.New(t)
	srv := testdns.Start(t, ns.Do)
	srv.Set("kafka.example.com", "10.4.1.80")
	srv.CNAME("broker.example.com", "kafka.example.com")

	for _, tc := range []struct{ network, name string }{
		{"udp", "kafka.example.com."},
		{"tcp", "broker.example.com."},
	} {
		t.Run(tc.network, func(t *testing.T) {
			addrs, err := resolver(ns, tc.network).LookupHost(context.Background(), strings.TrimSuffix(tc.name, "."))
			if err != nil || len(addrs) != 1 || addrs[0] != "10.4.1.80" {
				t.Fatalf("lookup: %v %v", addrs, err)
			}
			a := collect(t, w, tc.name)
			if a.TCP != (tc.network == "tcp") {
				t.Errorf("TCP = %v", a.TCP)
			}
			if a.Server.String() != "127.0.0.1:53" || a.Client.Addr().String() != "127.0.0.1" {
				t.Errorf("server %v client %v", a.Server, a.Client)
			}
			if !a.OwnerKnown || a.PID != uint32(os.Getpid()) || a.OwnerCgroup == 0 || a.Cgroup == 0 || a.Cookie == 0 {
				t.Errorf("asker: known %v pid %d (want %d) comm %q cgroup %d/%d cookie %d", a.OwnerKnown, a.PID, os.Getpid(), a.Comm, a.OwnerCgroup, a.Cgroup, a.Cookie)
			}
			if a.Len != len(a.Data) {
				t.Errorf("len %d, %d bytes", a.Len, len(a.Data))
			}
		})
	}
	sent, lost, err := w.Counts()
	if err != nil || sent < 2 || lost != 0 {
		t.Errorf("counts: sent %d lost %d err %v", sent, lost, err)
	}
}

// TestFloodBounded: thousands of answers while nobody reads: the ring
// buffer holds what it can, the kernel counts the rest as lost, and
// every answer is one or the other.
func TestFloodBounded(t *testing.T) {
	w := open(t)
	ns := testnet.New(t)
	srv := testdns.Start(t, ns.Do)
	srv.Set("flood.example", "10.0.0.1")
	sent0, lost0, _ := w.Counts()
	const n = 3000
	ns.Run(t, func() error {
		return testdns.Exchange(n, func(int) string { return "flood.example" })
	})
	sent, lost, err := w.Counts()
	if err != nil {
		t.Fatal(err)
	}
	sent, lost = sent-sent0, lost-lost0
	capacity := w.objs.DnsEvents.MaxEntries() / uint32(recordSize)
	if sent+lost < n || lost == 0 || sent > uint64(capacity)+16 {
		t.Fatalf("%d answers: %d sent, %d lost (ring holds about %d)", n, sent, lost, capacity)
	}
	read := 0
	var a Answer
	for {
		ok, err := w.Read(&a)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		read++
	}
	if uint64(read) < sent || read > int(capacity)+16 {
		t.Errorf("read %d answers back, the kernel sent %d", read, sent)
	}
	t.Logf("%d answers: %d kept in the ring (%d read back), %d counted lost", n, sent, read, lost)
}
