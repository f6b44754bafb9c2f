// Package events loads socktrace's BPF programs, attaches them to the
// inet_sock_set_state tracepoint, and reads and decodes the TCP state
// transitions they send through the ring buffer.
package events

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Transition is one TCP state change of one socket, as the kernel told
// it. What user space learns about it later (the owner's identity, the
// DNS name of its address) is attached by the pipeline: see package
// record. A packet event of a socket (a retransmit, reset or error)
// comes in the same record, Kind saying which: the tracer's Read tells
// it apart (PacketRecord), and user space holds it as a record.Packet.
type Transition struct {
	Time   time.Time // wall clock, converted from KtimeNs
	Ktime  uint64    // CLOCK_MONOTONIC nanoseconds, as the kernel stamped it
	Cookie uint64    // socket cookie: the id sock_diag reports
	SkAddr uint64    // kernel address of the socket
	Netns  uint32    // network namespace inode

	Family uint16 // unix.AF_INET or unix.AF_INET6 (the socket's family)
	Src    netip.Addr
	Dst    netip.Addr // v4-mapped IPv6 addresses are given as IPv4
	SPort  uint16
	DPort  uint16

	Old, New tcpstate.State
	// InOld is the time the socket spent in Old; valid if InOldKnown
	// (it is not for the first transition socktrace sees of a socket).
	InOld      time.Duration
	InOldKnown bool

	// The task on the CPU when the transition happened. In softirq
	// context (most transitions driven by packets) it is unrelated to
	// the socket; see Owner.
	TaskPID, TaskTID uint32
	TaskComm         string

	// The process that owns the socket, learned at connect(), listen(),
	// close() or from the listener an accepted socket came from.
	OwnerKnown         bool
	OwnerPID, OwnerTID uint32
	OwnerComm          string
	// OwnerCgroup is the owner's cgroup v2 id (the inode of its cgroup
	// directory under the cgroup2 mount), taken where the owner was
	// learned; 0 when unknown. See package cgroups for its path. Who the
	// owner is beyond its process is for user space (package record).
	OwnerCgroup uint64

	UID   uint32
	SkErr uint16 // sk_err: why a socket closed (unix.ECONNREFUSED...)

	CookieFromHelper bool // false: read from sk_cookie, 0 until someone asked for it
	// FromBackup: the backup program sent it, for a run of the primary the
	// kernel skipped (a nested transition); for tests and counts.
	FromBackup bool

	// Kind: a state transition, or (when asked for with Options.Kinds)
	// a retransmit, reset or error of the socket; then Old and New are
	// both the socket's state at the time.
	Kind Kind

	// What socktrace's hooks counted on the socket so far: SYNs (on the
	// accepted side, SYN-ACKs) and data segments retransmitted, resets
	// sent and received (of the sockets socktrace saw since it started).
	// SynRetrans counts every SYN retransmission tried, also those that
	// failed to go out: the kernel's total_retrans in syn-sent, when it
	// is more than the hook saw.
	SynRetrans  uint16
	Retrans     uint32
	RstSent     bool
	RstReceived bool

	// The kernel's own counters of the socket (struct tcp_sock), read at
	// the transition when TCPStats: on transitions into close, out of
	// syn-sent and into established, and on records of other kinds.
	// The bytes are data bytes: the kernel's counters less a connect's
	// SYN and the FINs (a socket connected before the trace may keep its
	// SYN: whether it connected was not seen).
	TCPStats      bool
	BytesAcked    uint64 // data bytes sent and acknowledged
	BytesReceived uint64 // data bytes received
	SegsOut       uint32
	SegsIn        uint32
	TotalRetrans  uint32 // segments retransmitted, SYNs included
	SRTT          time.Duration

	// Drops: the socket's packets dropped on this host so far
	// (skb:kfree_skb, since socktrace started; see Tracer.DropsBy), with
	// the last one's reason and direction. DropReason is the kernel's
	// number: an enum skb_drop_reason value, or on kernels before 5.17
	// the address of the function that freed the packet. Package drops
	// names it.
	Drops      uint32
	DropReason uint64
	DropDir    DropDir
}

// DropDir is which way a dropped packet went: sent by the socket, or
// received for it.
type DropDir uint8

// Directions of a dropped packet (DROP_* in bpf/socktrace.h).
const (
	DropNone DropDir = iota
	DropSent
	DropReceived
)

// String is the direction as JSON and the table say it: sent,
// received, or "" for none.
func (d DropDir) String() string {
	switch d {
	case DropSent:
		return "sent"
	case DropReceived:
		return "received"
	}
	return ""
}

// Kind is what a ring buffer record is (enum event_kind in bpf/socktrace.h).
type Kind uint8

// The kinds of record.
const (
	KindTransition Kind = iota
	KindRetransmit
	KindResetSent
	KindResetReceived
	KindError
	KindDrop // a packet of the socket dropped on this host
	numKinds
)

var kindNames = [numKinds]string{"transition", "retransmit", "reset-sent", "reset-received", "error", "drop"}

// String is the kind's name, as --events takes it (transition for a
// state change).
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

// Kinds is a set of record kinds other than transitions, for Options.
type Kinds uint8

// Has reports whether k is in the set.
func (ks Kinds) Has(k Kind) bool { return ks&(1<<k) != 0 }

// KindsOf returns the set of the given kinds.
func KindsOf(ks ...Kind) Kinds {
	var s Kinds
	for _, k := range ks {
		s |= 1 << k
	}
	return s
}

// Error returns the socket error, if any, as an errno.
func (t *Transition) Error() unix.Errno { return unix.Errno(t.SkErr) }

// Event flags, as set by the BPF program (bpf/socktrace.h).
const (
	flagOwnerKnown   = 1 << 0
	flagPrevKnown    = 1 << 1
	flagCookieHelper = 1 << 2
	flagTCPStats     = 1 << 3
	flagBackup       = 1 << 4

	rstSent     = 1 << 0
	rstReceived = 1 << 1
)

// EventSize is the size of one record in the ring buffer.
const EventSize = int(unsafe.Sizeof(socktraceEvent{}))

// ErrShortRecord is returned by Decode for a record of the wrong size.
var ErrShortRecord = errors.New("ring buffer record has the wrong size")

// Decoder turns raw ring buffer records into Transitions. It reuses its
// strings, so decoding allocates nothing once the comm names are known.
type Decoder struct {
	comms map[[16]byte]string
	// recent: the last two names found, looked at before the map (a
	// record has two, mostly the same few under load).
	recent [2]recentComm
}

type recentComm struct {
	b [16]byte
	s string
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	return &Decoder{comms: make(map[[16]byte]string)}
}

func (d *Decoder) comm(c [16]int8) string {
	b := *(*[16]byte)(unsafe.Pointer(&c))
	if d.recent[0].b == b && d.recent[0].s != "" {
		return d.recent[0].s
	}
	if d.recent[1].b == b && d.recent[1].s != "" {
		d.recent[0], d.recent[1] = d.recent[1], d.recent[0]
		return d.recent[0].s
	}
	if s, ok := d.comms[b]; ok {
		d.recent[1], d.recent[0] = d.recent[0], recentComm{b, s}
		return s
	}
	n := bytes.IndexByte(b[:], 0)
	if n < 0 {
		n = len(b)
	}
	s := string(b[:n])
	if len(d.comms) < 65536 {
		d.comms[b] = s
	}
	return s
}

// Decode fills t from raw, one record as the BPF program wrote it. The
// wall-clock time is left for the caller (see Clock).
func (d *Decoder) Decode(raw []byte, t *Transition) error {
	if len(raw) != EventSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrShortRecord, len(raw), EventSize)
	}
	var e socktraceEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), EventSize), raw)

	*t = Transition{
		Ktime:            e.TsNs,
		Cookie:           e.Cookie,
		SkAddr:           e.Skaddr,
		Netns:            e.Netns,
		Family:           e.Family,
		SPort:            e.Sport,
		DPort:            e.Dport,
		Old:              tcpstate.State(e.Oldstate),
		New:              tcpstate.State(e.Newstate),
		InOld:            time.Duration(e.PrevNs),
		InOldKnown:       e.Flags&flagPrevKnown != 0,
		TaskPID:          e.Pid,
		TaskTID:          e.Tid,
		TaskComm:         d.comm(e.Comm),
		OwnerKnown:       e.Flags&flagOwnerKnown != 0,
		UID:              e.Uid,
		SkErr:            e.SkErr,
		CookieFromHelper: e.Flags&flagCookieHelper != 0,
		FromBackup:       e.Flags&flagBackup != 0,
		Kind:             Kind(e.Kind),
		SynRetrans:       e.SynRetrans,
		Retrans:          e.Retrans,
		RstSent:          e.Rst&rstSent != 0,
		RstReceived:      e.Rst&rstReceived != 0,
	}
	if e.Drops > 0 {
		t.Drops, t.DropReason, t.DropDir = e.Drops, e.DropReason, DropDir(e.DropDir)
	}
	if e.Flags&flagTCPStats != 0 {
		t.TCPStats = true
		t.BytesAcked, t.BytesReceived = e.BytesAcked, e.BytesReceived
		t.SegsOut, t.SegsIn, t.TotalRetrans = e.SegsOut, e.SegsIn, e.TotalRetrans
		t.SRTT = time.Duration(e.SrttUs) * time.Microsecond
	}
	if t.OwnerKnown {
		t.OwnerPID = e.OwnerPid
		t.OwnerTID = e.OwnerTid
		t.OwnerComm = d.comm(e.OwnerComm)
		t.OwnerCgroup = e.OwnerCgroup
	}
	switch e.Family {
	case unix.AF_INET:
		t.Src = netip.AddrFrom4([4]byte(e.Saddr[:4]))
		t.Dst = netip.AddrFrom4([4]byte(e.Daddr[:4]))
	case unix.AF_INET6:
		t.Src = netip.AddrFrom16(e.Saddr).Unmap()
		t.Dst = netip.AddrFrom16(e.Daddr).Unmap()
	default:
		return fmt.Errorf("ring buffer record with unknown address family %d", e.Family)
	}
	return nil
}
