// Package drops names the packets the kernel dropped on this host
// (skb:kfree_skb, see bpf/drops.h) as users read them: the reason by its
// name in the kernel's enum skb_drop_reason without SKB_DROP_REASON_
// (NETFILTER_DROP, NO_SOCKET...), or on kernels that give no reason
// (before 5.17) the function that freed the packet (nf_hook_slow), and
// the words of a connect attempt's cause ("6 SYNs dropped on this host
// (NETFILTER_DROP, sent)").
package drops

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/cilium/ebpf/btf"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/kallsyms"
)

// Namer turns the kernel's drop reasons (events.Transition.DropReason,
// the drop counters' reasons) into names. Safe for concurrent use.
type Namer struct {
	mode    events.DropReasons
	reasons map[uint64]string // by enum value, DropsByReason

	mu    sync.Mutex
	syms  *kallsyms.Symbols // DropsByLocation, read at the first name
	err   error             // reading it failed
	cache map[uint64]string
}

// NewNamer returns a Namer for a tracer whose drop reasons are as mode
// says; kernel is the kernel's BTF (nil: the running kernel's).
func NewNamer(mode events.DropReasons, kernel *btf.Spec) (*Namer, error) {
	n := &Namer{mode: mode, cache: map[uint64]string{}}
	if mode == events.DropsByReason {
		r, err := events.DropReasonNames(kernel)
		if err != nil {
			return nil, err
		}
		if r == nil {
			return nil, fmt.Errorf("the kernel's BTF has no enum skb_drop_reason, though its kfree_skb tracepoint has a reason")
		}
		n.reasons = r
	}
	return n, nil
}

// Mode is how the kernel gives reasons.
func (n *Namer) Mode() events.DropReasons { return n.mode }

// Name is the name of reason v: the enum name (e.g. NETFILTER_DROP), or
// where the kernel gives locations the function's (e.g. nf_hook_slow);
// "reason N" or "0xADDR" if unknown.
func (n *Namer) Name(v uint64) string {
	if n == nil {
		return ""
	}
	if n.mode == events.DropsByReason {
		if s, ok := n.reasons[v]; ok {
			return s
		}
		return "reason " + strconv.FormatUint(v, 10)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.cache[v]; ok {
		return s
	}
	if n.syms == nil && n.err == nil {
		n.syms, n.err = kallsyms.Read()
	}
	s := ""
	if n.syms != nil {
		s = n.syms.Func(v)
	}
	if s == "" {
		s = "0x" + strconv.FormatUint(v, 16)
	}
	if len(n.cache) < 4096 {
		n.cache[v] = s
	}
	return s
}

// Direction names a drop's direction as JSON and the table do.
func Direction(d events.DropDir) string { return d.String() }

// Cause says what the drops of a connect attempt mean, e.g. "6 SYNs
// dropped on this host (NETFILTER_DROP, sent)", or for received drops
// "2 SYN-ACKs dropped on this host (NETFILTER_DROP, received)"; n is the
// socket's drops. handshake: the socket was connecting (its packets are
// SYNs, its received ones SYN-ACKs); else they are packets.
func Cause(n uint32, handshake bool, reason string, dir events.DropDir) string {
	what := "packet"
	if handshake {
		what = "SYN"
		if dir == events.DropReceived {
			what = "SYN-ACK"
		}
	}
	if n != 1 {
		what += "s"
	}
	s := strconv.FormatUint(uint64(n), 10) + " " + what + " dropped on this host"
	switch {
	case reason != "" && dir != events.DropNone:
		s += " (" + reason + ", " + dir.String() + ")"
	case reason != "":
		s += " (" + reason + ")"
	}
	return s
}
