package events

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"

	"github.com/socktrace/socktrace/internal/kallsyms"
	"github.com/socktrace/socktrace/internal/kernelbtf"
)

// Packets dropped on this host (skb:kfree_skb, bpf/drops.h): counted on
// the socket they were sent by or meant for (Transition.Drops), by
// destination of connects (DropCounts), and in totals for the drops
// of no socket socktrace follows (UnattributedDrops).

// DropReasons says what Transition.DropReason and the drop counters'
// reasons hold on this kernel.
type DropReasons uint8

const (
	// DropsOff: the drop hook is not attached (see Hooks).
	DropsOff DropReasons = iota
	// DropsByLocation: kernels before 5.17 give no reason: the reason
	// is the address of the function that freed the packet.
	DropsByLocation
	// DropsByReason: the reason is the kernel's enum skb_drop_reason.
	DropsByReason
)

// DropReasons says how the kernel gives drop reasons, as the tracer
// attached its drop hook.
func (t *Tracer) DropReasons() DropReasons {
	switch {
	case t.dropArgs >= 3:
		return DropsByReason
	case t.dropArgs == 2:
		return DropsByLocation
	}
	return DropsOff
}

// KernelTypes is the kernel's BTF the tracer was loaded with (from
// Options.KernelBTF), nil for the running kernel's: for naming its drop
// reasons (DropReasonNames).
func (t *Tracer) KernelTypes() *btf.Spec { return t.kernelTypes }

// dropReasonValues are the kernel's SKB_CONSUMED (a packet freed, not
// dropped, which some kernels pass through kfree_skb),
// SKB_DROP_REASON_NO_SOCKET and SKB_DROP_REASON_QUEUE_PURGE (a socket's
// queue freed as the socket is destroyed: packets it had received, not
// dropped on the way), each ^0 if it has none.
func dropReasonValues(kernel *btf.Spec) (consumed, noSocket, purge uint32) {
	consumed, noSocket, purge = ^uint32(0), ^uint32(0), ^uint32(0)
	if kernel == nil {
		var err error
		if kernel, err = kernelbtf.Spec(); err != nil {
			return
		}
	}
	var e *btf.Enum
	if err := kernel.TypeByName("skb_drop_reason", &e); err != nil {
		return
	}
	for _, v := range e.Values {
		switch v.Name {
		case "SKB_CONSUMED":
			consumed = uint32(v.Value)
		case "SKB_DROP_REASON_NO_SOCKET":
			noSocket = uint32(v.Value)
		case "SKB_DROP_REASON_QUEUE_PURGE":
			purge = uint32(v.Value)
		}
	}
	return
}

// quietLocations are, for kernels without drop reasons, the ranges of
// the functions whose drops are of no socket (a SYN to a closed port is
// freed in tcp_v4_rcv or tcp_v6_rcv); zero if the symbols cannot be read.
func quietLocations() (lo, hi [2]uint64) {
	k, err := kallsyms.Read()
	if err != nil {
		return
	}
	for i, f := range []string{"tcp_v4_rcv", "tcp_v6_rcv"} {
		lo[i], hi[i] = k.Range(f)
	}
	return
}

// IsTupleDrop reports whether a drop record (KindDrop) is of no socket:
// it has the dropped packet's addresses and ports (Src and SPort its
// source), a SYN (DropDir DropSent: sent by the connecting socket) or a
// SYN-ACK (DropReceived), for user space to give to the connect attempt
// of that 4-tuple.
func (t *Transition) IsTupleDrop() bool { return t.Kind == KindDrop && t.SkAddr == 0 }

// DropKey identifies one in-kernel drop counter: a destination of
// connects (and its owner), the reason and the direction.
type DropKey struct {
	Dest   DestKey
	Reason uint64 // as Transition.DropReason
	Dir    DropDir
}

// DropCount is one drop counter.
type DropCount struct {
	Key DropKey
	N   uint64
}

// DropCounts reads the drop counters by destination, reason and
// direction, and how many drops of connects were counted without them
// (the kernel's map was full: 16384 keys).
func (t *Tracer) DropCounts(dst []DropCount) ([]DropCount, uint64, error) {
	dst = dst[:0]
	if t.maps.DropDests == nil {
		return dst, 0, nil
	}
	var overflow uint64
	vals := make([]uint64, len(t.lostVals))
	if err := t.maps.DropDestsOver.Lookup(uint32(0), &vals); err != nil {
		return dst, 0, fmt.Errorf("read drop counters' overflow: %w", err)
	}
	for _, v := range vals {
		overflow += v
	}
	var (
		k socktraceDropDestKey
		v uint64
	)
	it := t.maps.DropDests.Iterate()
	for it.Next(&k, &v) {
		d := socktraceDestKey(k.Dest)
		dst = append(dst, DropCount{Key: DropKey{Dest: decodeDestKey(&d), Reason: k.Reason, Dir: DropDir(k.Dir)}, N: v})
	}
	if err := it.Err(); err != nil {
		return dst, overflow, fmt.Errorf("read drop counters: %w", err)
	}
	return dst, overflow, nil
}

// Unattributed counts the drops of no socket socktrace follows: of
// packets that are not TCP (Other), and of TCP packets by reason
// (NoSocket; every namespace the filter takes, added up).
type Unattributed struct {
	Other    uint64
	NoSocket map[uint64]uint64
}

// UnattributedDrops reads the drops of no socket socktrace follows; in
// namespace netns only when it is not 0 (for TCP packets).
func (t *Tracer) UnattributedDrops(netns uint32) (Unattributed, error) {
	u := Unattributed{NoSocket: map[uint64]uint64{}}
	if t.maps.DropsOther == nil {
		return u, nil
	}
	vals := make([]uint64, len(t.lostVals))
	if err := t.maps.DropsOther.Lookup(uint32(0), &vals); err != nil {
		return u, fmt.Errorf("read drops of packets not TCP: %w", err)
	}
	for _, v := range vals {
		u.Other += v
	}
	var k socktraceDropOtherKey
	it := t.maps.DropsNosock.Iterate()
	for it.Next(&k, &vals) {
		if netns != 0 && k.Netns != netns {
			continue
		}
		for _, v := range vals {
			u.NoSocket[k.Reason] += v
		}
	}
	if err := it.Err(); err != nil {
		return u, fmt.Errorf("read drops of no socket: %w", err)
	}
	return u, nil
}

// DropReasonNames reads the kernel's enum skb_drop_reason from its BTF:
// the names without SKB_DROP_REASON_ (SKB_CONSUMED and
// SKB_NOT_DROPPED_YET as they are) by value; nil when the kernel has no
// drop reasons (before 5.17). kernel may be nil: the running kernel's.
func DropReasonNames(kernel *btf.Spec) (map[uint64]string, error) {
	if kernel == nil {
		var err error
		if kernel, err = kernelbtf.Spec(); err != nil {
			return nil, fmt.Errorf("read the kernel's BTF for drop reasons: %w", err)
		}
	}
	var e *btf.Enum
	if err := kernel.TypeByName("skb_drop_reason", &e); err != nil {
		return nil, nil
	}
	names := make(map[uint64]string, len(e.Values))
	for _, v := range e.Values {
		if v.Name == "SKB_DROP_REASON_MAX" {
			continue
		}
		names[v.Value] = strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")
	}
	return names, nil
}

// String names the way the kernel gives reasons.
func (d DropReasons) String() string {
	switch d {
	case DropsByLocation:
		return "drop locations (no reasons before 5.17)"
	case DropsByReason:
		return "drop reasons"
	}
	return "no drops"
}
