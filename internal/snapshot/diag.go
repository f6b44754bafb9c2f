// Package snapshot lists the TCP sockets that exist now, with sock_diag
// (netlink INET_DIAG, what ss uses): state, endpoints, queues, timers,
// uid, inode and the socket cookie that joins them to traced transitions.
//
// It speaks the protocol itself, with golang.org/x/sys/unix: a request is
// 72 bytes and every reply a fixed 72-byte header, so a small decoder with
// golden-byte tests is less code than adapting a general netlink library,
// and it lets the state filter go into the request and the decoding stay
// free of per-socket allocations (ss -tan on 100k sockets is the yardstick).
package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Timer is the kind of timer pending on a socket, as ss -o names it.
type Timer uint8

// Timers (inet_diag_msg.idiag_timer).
const (
	TimerNone Timer = iota
	TimerOn         // retransmit
	TimerKeepalive
	TimerTimewait
	TimerPersist
)

var timerNames = [...]string{"", "on", "keepalive", "timewait", "persist"}

// String returns ss's name for the timer ("on", "keepalive"...), "" for none.
func (t Timer) String() string {
	if int(t) < len(timerNames) {
		return timerNames[t]
	}
	return fmt.Sprintf("timer%d", uint8(t))
}

// Socket is one TCP socket as sock_diag reports it.
type Socket struct {
	Family   uint16 // unix.AF_INET or unix.AF_INET6
	State    tcpstate.State
	Src, Dst netip.Addr // IPv4-mapped IPv6 given as IPv4
	SPort    uint16
	DPort    uint16
	IfIndex  uint32
	Cookie   uint64
	Timer    Timer
	Retrans  uint8
	Expires  time.Duration // until the timer fires
	RecvQ    uint32        // listeners: accept queue length
	SendQ    uint32        // listeners: accept queue limit (backlog)
	UID      uint32
	Inode    uint32 // 0 for time-wait and request sockets
	Netns    uint32 // inode of the network namespace it was dumped from

	// With Options.Info: the kernel's tcp_info (what ss -i shows); nil
	// for time-wait and request sockets, or when not asked.
	Info *unix.TCPInfo
	// With Options.Mem: socket memory (ss -m's skmem), nil if not asked.
	Mem *SkMem

	// What the kernel adds on its own where it has it (ss -e shows them):
	// the socket's cgroup v2 id (0: not reported), its fwmark (only to
	// CAP_NET_ADMIN), IPV6_V6ONLY (-1: not reported; the kernel reports
	// it for listeners), and which directions are shut down (full
	// sockets only). Cong: the congestion control (with Options.Info).
	CgroupID      uint64
	Mark          uint32
	MarkKnown     bool
	V6Only        int8
	Shutdown      uint8 // RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2, with ShutdownKnown
	ShutdownKnown bool
	Cong          string
	// With Options.Info, what the congestion control says of itself,
	// where it says anything (vegas, dctcp, bbr), else nil.
	CongInfo *CongInfo
	// With Options.Info, the upper layer protocol on the socket, if any
	// (kTLS, an MPTCP subflow), as the kernel describes it.
	ULP *ULP
}

// ULP is a socket's upper layer protocol (linux/inet_diag.h
// INET_ULP_INFO_*): its name, and the nested attributes the kernel gives
// for tls (TLS_INFO_*) or mptcp (MPTCP_SUBFLOW_ATTR_*), by type.
type ULP struct {
	Name  string
	TLS   map[uint16][]byte
	MPTCP map[uint16][]byte
}

// nested splits a nested attribute's payload into its attributes by type.
func nested(b []byte) map[uint16][]byte {
	m := map[uint16][]byte{}
	for typ, payload := range attrs(b) {
		m[typ] = payload
	}
	return m
}

// attrs walks netlink attributes (struct rtattr: u16 length, u16 type,
// payload, padded to 4 bytes), giving each one's type (without the
// nested and byte-order flags) and payload; it stops at a malformed one.
func attrs(b []byte) iter.Seq2[uint16, []byte] {
	return func(yield func(uint16, []byte) bool) {
		for len(b) >= 4 {
			l, typ := int(binary.NativeEndian.Uint16(b)), binary.NativeEndian.Uint16(b[2:])&0x3fff
			if l < 4 || l > len(b) || !yield(typ, b[4:l]) || align(l) >= len(b) {
				return
			}
			b = b[align(l):]
		}
	}
}

// u32s fills dst with the payload's native-endian u32s, as many as it
// holds (a shorter, older kernel's struct leaves the rest 0).
func u32s(dst []uint32, payload []byte) {
	for i := range dst {
		if 4*i+4 <= len(payload) {
			dst[i] = binary.NativeEndian.Uint32(payload[4*i:])
		}
	}
}

// CongInfo is a congestion control's own info (linux/inet_diag.h:
// tcpvegas_info, tcp_dctcp_info, tcp_bbr_info); Kind says which.
type CongInfo struct {
	Kind uint16 // attribute type: 3 vegas, 9 dctcp, 16 bbr
	// vegas: enabled, rttcnt, rtt, minrtt; dctcp: enabled (u16),
	// ce_state (u16) in V[0], alpha, ab_ecn, ab_tot; bbr: bw_lo, bw_hi,
	// min_rtt, pacing_gain, cwnd_gain.
	V [5]uint32
}

// SkMem is a socket's memory, as ss -m shows it: skmem:(r,rb,t,tb,f,w,o,bl,d).
type SkMem struct {
	RmemAlloc, RcvBuf, WmemAlloc, SndBuf, FwdAlloc, WmemQueued, OptMem, Backlog, Drops uint32
}

// Extensions asked of sock_diag (linux/inet_diag.h: bit INET_DIAG_X - 1).
const (
	extInfo      = 1 << (2 - 1) // INET_DIAG_INFO: struct tcp_info
	extCong      = 1 << (4 - 1) // INET_DIAG_CONG: the congestion control's name
	extVegas     = 1 << (3 - 1) // INET_DIAG_VEGASINFO: the congestion control's own info (vegas, dctcp or bbr)
	extSkMemInfo = 1 << (7 - 1) // INET_DIAG_SKMEMINFO: u32[SK_MEMINFO_VARS]
	attrInfo     = 2
	attrVegas    = 3
	attrCong     = 4
	attrDCTCP    = 9
	attrBBR      = 16
	attrULP      = 19 // INET_DIAG_ULP_INFO (nested; with INET_DIAG_INFO, to CAP_NET_ADMIN)
	attrSkMem    = 7
	attrShutdown = 8
	attrV6Only   = 11
	attrMark     = 15
	attrCgroupID = 21
)

// Wire sizes and constants (linux/inet_diag.h, linux/netlink.h).
const (
	nlmsgHdrLen     = 16
	reqLen          = 56 // struct inet_diag_req_v2
	msgLen          = 72 // struct inet_diag_msg
	nlmsgAlign      = 4
	sockDiagByFam   = unix.SOCK_DIAG_BY_FAMILY
	nlmsgDone       = unix.NLMSG_DONE
	nlmsgError      = unix.NLMSG_ERROR
	flagDumpIntr    = unix.NLM_F_DUMP_INTR
	requestFlags    = unix.NLM_F_REQUEST | unix.NLM_F_DUMP
	ipprotoTCP      = unix.IPPROTO_TCP
	maxDumpAttempts = 3
)

// ErrInterrupted means the socket tables changed so much during every
// attempt to dump them that the kernel flagged each dump inconsistent.
var ErrInterrupted = errors.New("sock_diag dump interrupted")

// encodeRequest builds a dump request for one family and a state mask.
func encodeRequest(family uint8, states tcpstate.Mask, seq uint32, ext uint8) []byte {
	b := make([]byte, nlmsgHdrLen+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFam)
	ne.PutUint16(b[6:], requestFlags)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], 0) // port id: the kernel's
	r := b[nlmsgHdrLen:]
	r[0] = family
	r[1] = ipprotoTCP
	r[2] = ext
	ne.PutUint32(r[4:], uint32(states))
	// The socket id stays zero: every socket.
	return b
}

// bytecodeAutobound is a sock_diag filter program (INET_DIAG_REQ_BYTECODE)
// of one op, INET_DIAG_BC_AUTO: the kernel keeps the sockets whose local
// port the application did not bind (ss's autobound). Op: code, yes
// (jump to the end: keep), no (past the end: drop).
var bytecodeAutobound = []byte{8, 0, 1, 0, 6, 4, 8, 0}

// withBytecode appends a filter program to a dump request.
func withBytecode(req, bc []byte) []byte {
	req = append(req, bc...)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	return req
}

// decodeMsg decodes one inet_diag_msg (the payload after nlmsghdr).
func decodeMsg(b []byte, s *Socket) error {
	if len(b) < msgLen {
		return fmt.Errorf("sock_diag reply of %d bytes, want at least %d", len(b), msgLen)
	}
	ne := binary.NativeEndian
	*s = Socket{
		Family:  uint16(b[0]),
		State:   tcpstate.State(b[1]),
		Timer:   Timer(b[2]),
		Retrans: b[3],
		SPort:   binary.BigEndian.Uint16(b[4:]),
		DPort:   binary.BigEndian.Uint16(b[6:]),
		IfIndex: ne.Uint32(b[40:]),
		Cookie:  uint64(ne.Uint32(b[44:])) | uint64(ne.Uint32(b[48:]))<<32,
		Expires: time.Duration(ne.Uint32(b[52:])) * time.Millisecond,
		RecvQ:   ne.Uint32(b[56:]),
		SendQ:   ne.Uint32(b[60:]),
		UID:     ne.Uint32(b[64:]),
		Inode:   ne.Uint32(b[68:]),
		V6Only:  -1,
	}
	switch s.Family {
	case unix.AF_INET:
		s.Src = netip.AddrFrom4([4]byte(b[8:12]))
		s.Dst = netip.AddrFrom4([4]byte(b[24:28]))
	case unix.AF_INET6:
		s.Src = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		s.Dst = netip.AddrFrom16([16]byte(b[24:40])).Unmap()
	default:
		return fmt.Errorf("sock_diag reply with address family %d", s.Family)
	}
	for typ, payload := range attrs(b[msgLen:]) {
		switch typ {
		case attrInfo:
			// A kernel's tcp_info may be shorter (older) or longer
			// (newer) than this one: take what both know.
			var ti unix.TCPInfo
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&ti)), unsafe.Sizeof(ti)), payload)
			s.Info = &ti
		case attrSkMem:
			var m [9]uint32
			u32s(m[:], payload)
			s.Mem = &SkMem{m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]}
		case attrShutdown:
			if len(payload) >= 1 {
				s.Shutdown, s.ShutdownKnown = payload[0], true
			}
		case attrV6Only:
			if len(payload) >= 1 {
				s.V6Only = int8(payload[0] & 1)
			}
		case attrMark:
			if len(payload) >= 4 {
				s.Mark, s.MarkKnown = ne.Uint32(payload), true
			}
		case attrCgroupID:
			if len(payload) >= 8 {
				s.CgroupID = ne.Uint64(payload)
			}
		case attrULP:
			u := &ULP{}
			for typ, v := range nested(payload) {
				switch typ {
				case 1: // INET_ULP_INFO_NAME
					u.Name = string(bytes.TrimRight(v, "\x00"))
				case 2: // INET_ULP_INFO_TLS
					u.TLS = nested(v)
				case 3: // INET_ULP_INFO_MPTCP
					u.MPTCP = nested(v)
				}
			}
			s.ULP = u
		case attrVegas, attrDCTCP, attrBBR:
			ci := &CongInfo{Kind: typ}
			u32s(ci.V[:], payload)
			s.CongInfo = ci
		case attrCong:
			if n := bytes.IndexByte(payload, 0); n >= 0 {
				s.Cong = string(payload[:n])
			} else {
				s.Cong = string(payload)
			}
		}
	}
	return nil
}

// parseReplies walks the netlink messages in one read. It calls fn for
// each socket and reports whether the dump is done and whether the
// kernel flagged it interrupted.
func parseReplies(b []byte, seq uint32, fn func(*Socket) error) (done, interrupted bool, err error) {
	ne := binary.NativeEndian
	var s Socket
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		flags := ne.Uint16(b[6:])
		mseq := ne.Uint32(b[8:])
		if l < nlmsgHdrLen || l > len(b) {
			return false, false, fmt.Errorf("malformed netlink message: length %d of %d bytes", l, len(b))
		}
		if mseq != seq {
			// A reply to an earlier, abandoned request: skip it.
			b = b[align(l):]
			continue
		}
		if flags&flagDumpIntr != 0 {
			interrupted = true
		}
		payload := b[nlmsgHdrLen:l]
		switch typ {
		case nlmsgDone:
			return true, interrupted, nil
		case nlmsgError:
			if len(payload) < 4 {
				return false, interrupted, errors.New("short netlink error message")
			}
			errno := -int32(ne.Uint32(payload))
			if errno == 0 {
				return true, interrupted, nil // an ack
			}
			return false, interrupted, fmt.Errorf("sock_diag: %w", unix.Errno(errno))
		case sockDiagByFam:
			if err := decodeMsg(payload, &s); err != nil {
				return false, interrupted, err
			}
			if err := fn(&s); err != nil {
				return false, interrupted, err
			}
		}
		if align(l) >= len(b) {
			break
		}
		b = b[align(l):]
	}
	return false, interrupted, nil
}

func align(n int) int { return (n + nlmsgAlign - 1) &^ (nlmsgAlign - 1) }

// CongInfo kinds.
const (
	CongVegas = attrVegas
	CongDCTCP = attrDCTCP
	CongBBR   = attrBBR
)
