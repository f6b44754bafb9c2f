package events_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/testkit/testcgroup"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestOwnerCgroup: the owner's cgroup v2 id is taken where the owner is
// learned (connect, listen; an accepted socket gets its listener's), and
// a socket keeps the cgroup of its birth when its process moves to
// another cgroup while holding it (as the kernel's own socket cgroup
// does).
func TestOwnerCgroup(t *testing.T) {
	ns := testnet.New(t)
	id := strings.Repeat("c0ffee", 10) + "abcd"
	birth := testcgroup.New(t, "/socktrace-test-owner/cri-containerd-"+id+".scope")
	later := testcgroup.New(t, "/socktrace-test-owner/later.scope")
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})

	birth.Join(t)
	var client, server net.Conn
	var ln net.Listener
	ns.Run(t, func() (err error) {
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if client, err = net.Dial("tcp4", ln.Addr().String()); err != nil {
			return err
		}
		server, err = ln.Accept()
		return err
	})
	// Moved while holding all three; they close from the new cgroup.
	later.Join(t)
	client.Close()
	if _, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read: want EOF, got %v", err)
	}
	server.Close()
	ln.Close()
	c.waitFor(t, "three sockets closed", closedCount(3))
	recs := c.stop(t)

	n := 0
	for _, r := range recs {
		where := fmt.Sprintf("%v -> %v of socket %x", r.Old, r.New, r.SkAddr)
		if !r.OwnerKnown {
			t.Errorf("%s: owner unknown", where)
			continue
		}
		if r.OwnerCgroup != birth.ID {
			t.Errorf("%s: owner cgroup %d, want %d (%s, where it was made; %s is %d)", where, r.OwnerCgroup, birth.ID, birth.Path, later.Path, later.ID)
		}
		if r.Old == tcpstate.Close || r.New == tcpstate.Close || r.New == tcpstate.SynRecv {
			n++ // the births and deaths of the three sockets
		}
	}
	if n < 6 {
		t.Errorf("saw %d births and closes, want 6:\n%s", n, dump(recs))
	}
}
