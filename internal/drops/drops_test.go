package drops

import (
	"testing"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/kallsyms"
)

func TestCause(t *testing.T) {
	for _, tc := range []struct {
		n         uint32
		handshake bool
		reason    string
		dir       events.DropDir
		want      string
	}{
		{6, true, "NETFILTER_DROP", events.DropSent, "6 SYNs dropped on this host (NETFILTER_DROP, sent)"},
		{1, true, "NETFILTER_DROP", events.DropSent, "1 SYN dropped on this host (NETFILTER_DROP, sent)"},
		{2, true, "nf_hook_slow", events.DropReceived, "2 SYN-ACKs dropped on this host (nf_hook_slow, received)"},
		{3, false, "TCP_LISTEN_OVERFLOW", events.DropReceived, "3 packets dropped on this host (TCP_LISTEN_OVERFLOW, received)"},
		{1, false, "", events.DropNone, "1 packet dropped on this host"},
	} {
		if got := Cause(tc.n, tc.handshake, tc.reason, tc.dir); got != tc.want {
			t.Errorf("Cause(%d, %v, %q, %v) = %q, want %q", tc.n, tc.handshake, tc.reason, tc.dir, got, tc.want)
		}
	}
}

// TestNamerLocations names a location in the running kernel as the drop
// hook gives it on kernels before 5.17: an address inside a function.
func TestNamerLocations(t *testing.T) {
	syms, err := kallsyms.Read()
	if err != nil {
		t.Skipf("cannot read kernel symbols (needs root): %v", err)
	}
	a := syms.Addr("kfree_skb_list_reason")
	name := "kfree_skb_list_reason"
	if a == 0 {
		a, name = syms.Addr("tcp_v4_rcv"), "tcp_v4_rcv"
	}
	if a == 0 {
		t.Fatal("neither kfree_skb_list_reason nor tcp_v4_rcv in /proc/kallsyms")
	}
	n, err := NewNamer(events.DropsByLocation, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Name(a + 3); got != name {
		t.Errorf("Name(%s+3) = %q", name, got)
	}
	if got := n.Name(1); got != "0x1" {
		t.Errorf("Name(1) = %q, want 0x1", got)
	}
}

// TestNamerReasons names the running kernel's reasons, where it has them.
func TestNamerReasons(t *testing.T) {
	names, err := events.DropReasonNames(nil)
	if err != nil {
		t.Fatal(err)
	}
	if names == nil {
		t.Skip("this kernel has no enum skb_drop_reason (before 5.17): drops are named by function")
	}
	n, err := NewNamer(events.DropsByReason, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for v, s := range names {
		if s == "NO_SOCKET" {
			found = true
			if got := n.Name(v); got != "NO_SOCKET" {
				t.Errorf("Name(%d) = %q, want NO_SOCKET", v, got)
			}
		}
	}
	if !found {
		t.Error("no NO_SOCKET in the kernel's drop reasons")
	}
}
