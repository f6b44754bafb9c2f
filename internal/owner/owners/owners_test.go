package owners

import (
	"fmt"
	"net"
	"reflect"
	"testing"

	"github.com/socktrace/socktrace/internal/kernelver"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestSameAsProc: the iterator finds the holders /proc finds, for this
// process's sockets, with the same comm, pid and fds; a kernel that
// cannot run it falls back to /proc.
func TestSameAsProc(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	var keep []net.Conn
	var ln net.Listener
	ns.Run(t, func() (err error) {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		for i := 0; i < 3; i++ {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			keep = append(keep, c, s)
		}
		return nil
	})
	defer ln.Close()
	for _, c := range keep {
		defer c.Close()
	}
	// The namespace's TCP sockets (all ours), and their holders as
	// /proc says.
	socks, err := snapshot.Dump(snapshot.Options{Netns: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[uint32]bool{}
	for _, s := range socks {
		inodes[s.Inode] = true
	}
	want := procs.Scan(inodes)
	got, method, err := Scan(inodes)
	if method != MethodIter {
		if kernelver.AtLeast(5, 11) {
			t.Fatalf("Linux 5.11+ has the iterator, but: %v", err)
		}
		// A feature the kernel lacks: skipped, whatever SOCKTRACE_REQUIRE_ROOT.
		t.Skipf("not supported: the socket owners iterator needs Linux 5.11 (bpf_sock_from_file); /proc was used: %v", err)
	}
	if len(want) < 7 {
		t.Fatalf("/proc lists %d TCP sockets of ours, want at least 7 (a listener, 3 pairs)", len(want))
	}
	for ino, w := range want {
		if g := got[ino]; !reflect.DeepEqual(g, w) {
			st := ""
			for _, s := range socks {
				if s.Inode == ino {
					st = fmt.Sprintf("%v %v:%d", s.State, s.Src, s.SPort)
				}
			}
			t.Errorf("socket inode %d (%s): iterator %+v, /proc %+v", ino, st, g, w)
		}
	}
	for ino := range got {
		if !inodes[ino] {
			t.Errorf("inode %d was not asked for", ino)
		}
	}
}
