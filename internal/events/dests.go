package events

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The BPF program counts, for the destination of every active open and
// the process that made it, how the connect attempts ended and what
// happened on the wire (SYNs and segments retransmitted, resets, bytes),
// in a map of its own: the counts are exact whether or not the ring
// buffer had room for the transitions.

// The destination counters, by index (enum dest_counter in
// bpf/socktrace.h): first how connect attempts ended.
const (
	OutcomeEstablished = iota
	OutcomeRefused
	OutcomeTimeout
	OutcomeUnreachable
	OutcomeAborted
	CounterSynRetrans
	CounterRetrans
	CounterRstSent
	CounterRstReceived
	CounterBytesAcked
	CounterBytesReceived
	NumDestCounters
)

// NumOutcomes is how many outcomes a connect attempt has: the first
// counters.
const NumOutcomes = OutcomeAborted + 1

// DestKey identifies one destination's in-kernel counters.
type DestKey struct {
	Netns      uint32
	Family     uint16
	Daddr      netip.Addr // v4-mapped given as IPv4
	DPort      uint16
	OwnerKnown bool
	Comm       string // owning process at connect()
	Cgroup     uint64 // its cgroup v2 id, if OwnerKnown
	raw        socktraceDestKey
}

// ID identifies the kernel counter: a comparable value, the same for
// every read of it.
func (k *DestKey) ID() any { return k.raw }

// DestCount is one destination's counters.
type DestCount struct {
	Key DestKey
	N   [NumDestCounters]uint64
}

// DestCounts reads every destination's counters, and what was counted
// without a destination because the map was full.
func (t *Tracer) DestCounts(dst []DestCount) ([]DestCount, [NumDestCounters]uint64, error) {
	var overflow [NumDestCounters]uint64
	dst = dst[:0]
	var (
		k socktraceDestKey
		v socktraceDestCounters
	)
	it := t.maps.Dests.Iterate()
	for it.Next(&k, &v) {
		dst = append(dst, DestCount{Key: decodeDestKey(&k), N: v.N})
	}
	if err := it.Err(); err != nil {
		return dst, overflow, fmt.Errorf("read destination counters: %w", err)
	}
	vals := make([]uint64, len(t.lostVals))
	for i := range overflow {
		if err := t.maps.DestsOverflow.Lookup(uint32(i), &vals); err != nil {
			return dst, overflow, fmt.Errorf("read destination overflow counters: %w", err)
		}
		for _, v := range vals {
			overflow[i] += v
		}
	}
	return dst, overflow, nil
}

// DeleteDest removes a destination's counters, returning their last
// values: user space folds them into its own totals (a destination quiet
// for long). The map is not preallocated, so an increment racing with the
// delete can at worst land on the deleted entry (lost), never on another
// key's.
func (t *Tracer) DeleteDest(k *DestKey) ([NumDestCounters]uint64, error) {
	var v socktraceDestCounters
	err := t.maps.Dests.LookupAndDelete(&k.raw, &v)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		// Before 5.14 hash maps cannot look up and delete at once.
		if err = t.maps.Dests.Lookup(&k.raw, &v); err == nil {
			err = t.maps.Dests.Delete(&k.raw)
		}
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return [NumDestCounters]uint64{}, nil
	}
	return v.N, err
}

func decodeDestKey(k *socktraceDestKey) DestKey {
	c := DestKey{Netns: k.Netns, Family: k.Family, DPort: k.Dport, OwnerKnown: k.OwnerKnown != 0, raw: *k}
	if k.Family == unix.AF_INET {
		c.Daddr = netip.AddrFrom4([4]byte(k.Daddr[:4]))
	} else {
		c.Daddr = netip.AddrFrom16(k.Daddr).Unmap()
	}
	if c.OwnerKnown {
		c.Cgroup = k.Cgroup
		b := make([]byte, 0, len(k.Comm))
		for _, ch := range k.Comm {
			if ch == 0 {
				break
			}
			b = append(b, byte(ch))
		}
		c.Comm = string(b)
	}
	return c
}

// NewDestKey returns the key the BPF program makes for connects to
// daddr:port by comm (unknown when "") in namespace 0: for tests of what
// consumes the counters.
func NewDestKey(daddr netip.Addr, port uint16, comm string) DestKey {
	return NewDestKeyIn(0, daddr, port, comm)
}

// NewDestKeyIn is NewDestKey in namespace netns.
func NewDestKeyIn(netns uint32, daddr netip.Addr, port uint16, comm string) DestKey {
	var raw socktraceDestKey
	raw.Netns = netns
	raw.Dport = port
	raw.Family = unix.AF_INET6
	if daddr.Is4() {
		raw.Family = unix.AF_INET
		a := daddr.As4()
		copy(raw.Daddr[:], a[:])
	} else {
		raw.Daddr = daddr.As16()
	}
	if comm != "" {
		raw.OwnerKnown = 1
		for i := 0; i < len(comm) && i < len(raw.Comm)-1; i++ {
			raw.Comm[i] = int8(comm[i])
		}
	}
	return decodeDestKey(&raw)
}
