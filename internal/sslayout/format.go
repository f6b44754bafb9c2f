package sslayout

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var stateNames = [...]string{"UNKNOWN", "ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2",
	"TIME-WAIT", "UNCONN", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING"}

// StateName is ss's name of a kernel TCP state. 12 (TCP_NEW_SYN_RECV, a
// request socket) is SYN-RECV, as the kernel reports request sockets to ss;
// unknown numbers are UNKNOWN.
func StateName(s uint8) string {
	switch {
	case int(s) < len(stateNames):
		return stateNames[s]
	case s == 12:
		return "SYN-RECV"
	}
	return "UNKNOWN"
}

// Addr is ss's address token without the trailing ':'. AF_INET prints the
// dotted quad (0.0.0.0 included). AF_INET6 prints glibc's inet_ntop text in
// brackets, an IPv4 address given for an AF_INET6 socket as v4-mapped; the
// all-zero address is "*" unless v6only is 1 (v6only: -1 unknown or absent,
// 0, 1). A non-empty ifname is appended as "%ifname" (ss does so for a
// local address bound to a device, never for the peer).
func Addr(family uint16, a netip.Addr, v6only int8, ifname string) string {
	var s string
	switch b := a.As16(); {
	case family != syscall.AF_INET6:
		s = a.Unmap().String()
	case b == [16]byte{} && v6only != 1:
		s = "*"
	default:
		s = "[" + ntop6(b) + "]"
	}
	if ifname != "" {
		s += "%" + ifname
	}
	return s
}

// ntop6 is glibc's inet_ntop for IPv6: as netip (RFC 5952), except that an
// IPv4-compatible address (96 zero bits, then not 0.0.x.y) is ::a.b.c.d.
func ntop6(b [16]byte) string {
	if [12]byte(b[:12]) == [12]byte{} && (b[12] != 0 || b[13] != 0) {
		return "::" + netip.AddrFrom4([4]byte(b[12:])).String()
	}
	return netip.AddrFrom16(b).String()
}

// Port is ss's port token: "*" for 0, else the service name if one is
// given, else the number.
func Port(p uint16, service string) string {
	switch {
	case p == 0:
		return "*"
	case service != "":
		return service
	}
	return strconv.Itoa(int(p))
}

// Timer is ss's " timer:(name,TIME,retrans)" with TIME as ss 6.1's
// print_ms_timer writes it: whole minutes as "<m>min" (seconds dropped from
// 10 minutes on), seconds as "<s>sec", or, below 10 seconds and without
// minutes, "<s>.<ms:03>ms" (sic: 4.276 s prints 4.276ms), and below a
// second "<ms:03>ms". Zero is the empty string.
func Timer(name string, expires time.Duration, retrans uint8) string {
	t := uint32(min(max(expires.Milliseconds(), 0), 1<<32-1))
	minutes, secs, msecs := t/60000, t/1000%60, t%1000
	var b strings.Builder
	if minutes > 0 {
		msecs = 0
		fmt.Fprintf(&b, "%dmin", minutes)
		if minutes > 9 {
			secs = 0
		}
	}
	if secs > 0 {
		if secs > 9 {
			msecs = 0
		}
		b.WriteString(strconv.Itoa(int(secs)))
		if msecs != 0 {
			b.WriteString(".")
		} else {
			b.WriteString("sec")
		}
	}
	if msecs != 0 {
		fmt.Fprintf(&b, "%03dms", msecs)
	}
	return fmt.Sprintf(" timer:(%s,%s,%d)", name, b.String(), retrans)
}

// Owner is a process holding the socket open: its comm, pid and fd.
type Owner struct {
	Comm    string
	PID, FD int
}

// Users is ss -p's ` users:(("comm",pid=P,fd=F),...)`, in ss's order:
// descending pid, then descending fd. No owners is "".
func Users(owners []Owner) string {
	if len(owners) == 0 {
		return ""
	}
	o := owners
	if len(o) > 1 {
		o = slices.Clone(owners)
		slices.SortStableFunc(o, func(a, b Owner) int {
			return cmp.Or(cmp.Compare(b.PID, a.PID), cmp.Compare(b.FD, a.FD))
		})
	}
	b := make([]byte, 0, 32+len(o)*(len(o[0].Comm)+24))
	b = append(b, " users:("...)
	for i, e := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `("`...)
		b = append(b, e.Comm...)
		b = append(b, `",pid=`...)
		b = strconv.AppendInt(b, int64(e.PID), 10)
		b = append(b, ",fd="...)
		b = strconv.AppendInt(b, int64(e.FD), 10)
		b = append(b, ')')
	}
	b = append(b, ')')
	return string(b)
}
