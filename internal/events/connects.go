package events

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The BPF program counts how each connect attempt ends, by destination,
// owner and outcome, in a map of its own: the counts are exact whether or
// not the ring buffer had room for the transitions.

// Outcomes of a connect attempt, as the BPF program counts them (enum
// connect_outcome in bpf/socktrace.h).
const (
	OutcomeEstablished = iota
	OutcomeRefused
	OutcomeTimeout
	OutcomeUnreachable
	OutcomeAborted
	NumOutcomes
)

// ConnectKey identifies one in-kernel connect counter.
type ConnectKey struct {
	Netns      uint32
	Family     uint16
	Daddr      netip.Addr // v4-mapped given as IPv4
	DPort      uint16
	Outcome    uint8
	OwnerKnown bool
	Comm       string // owning process at connect()
	raw        socktraceConnectKey
}

// ConnectCount is one counter: attempts that ended with Key.Outcome.
type ConnectCount struct {
	Key ConnectKey
	N   uint64
}

// ConnectCounts reads every in-kernel connect counter, and the attempts
// counted without a destination because the map was full, by outcome.
func (t *Tracer) ConnectCounts(dst []ConnectCount) ([]ConnectCount, [NumOutcomes]uint64, error) {
	var overflow [NumOutcomes]uint64
	dst = dst[:0]
	var (
		k socktraceConnectKey
		n uint64
	)
	it := t.maps.Connects.Iterate()
	for it.Next(&k, &n) {
		dst = append(dst, ConnectCount{Key: decodeConnectKey(&k), N: n})
	}
	if err := it.Err(); err != nil {
		return dst, overflow, fmt.Errorf("read connect counters: %w", err)
	}
	vals := make([]uint64, len(t.lostVals))
	for i := range overflow {
		if err := t.maps.Overflow.Lookup(uint32(i), &vals); err != nil {
			return dst, overflow, fmt.Errorf("read connect overflow counters: %w", err)
		}
		for _, v := range vals {
			overflow[i] += v
		}
	}
	return dst, overflow, nil
}

// DeleteConnect removes a counter, returning its last value: user space
// folds it into its own totals (a destination quiet for long). The map is
// not preallocated, so an increment racing with the delete can at worst
// land on the deleted entry (lost), never on another key's.
func (t *Tracer) DeleteConnect(k *ConnectKey) (uint64, error) {
	var n uint64
	err := t.maps.Connects.LookupAndDelete(&k.raw, &n)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		// Before 5.14 hash maps cannot look up and delete at once.
		if err = t.maps.Connects.Lookup(&k.raw, &n); err == nil {
			err = t.maps.Connects.Delete(&k.raw)
		}
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, nil
	}
	return n, err
}

func decodeConnectKey(k *socktraceConnectKey) ConnectKey {
	c := ConnectKey{Netns: k.Netns, Family: k.Family, DPort: k.Dport, Outcome: k.Outcome,
		OwnerKnown: k.OwnerKnown != 0, raw: *k}
	if k.Family == unix.AF_INET {
		c.Daddr = netip.AddrFrom4([4]byte(k.Daddr[:4]))
	} else {
		c.Daddr = netip.AddrFrom16(k.Daddr).Unmap()
	}
	if c.OwnerKnown {
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

// ID identifies the kernel counter: a comparable value, the same for
// every read of it.
func (k *ConnectKey) ID() any { return k.raw }

// NewConnectKey returns the key the BPF program makes for a connect to
// daddr:port by comm (unknown when "") in socktrace's namespace 0, that
// ended with outcome: for tests of what consumes the counters.
func NewConnectKey(daddr netip.Addr, port uint16, comm string, outcome uint8) ConnectKey {
	var raw socktraceConnectKey
	raw.Dport, raw.Outcome = port, outcome
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
	return decodeConnectKey(&raw)
}
