package filter

// The parts of iproute2 ss's filter language that need ss's own readings
// of values: host specs (misc/ss.c parse_hostcond, lib/utils.c
// get_prefix), port values, and the dev, fwmark, cgroup and autobound
// tests. See README "Filters" for where socktrace reads more than ss.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/names"
	"github.com/socktrace/socktrace/internal/owner/cgroups"
)

// lookupHost resolves host names in expressions (a test may stub it).
var lookupHost = func(ctx context.Context, name string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
}

// hostExpr is a src or dst test: any of its prefixes, and a port.
type hostExpr struct {
	dst      bool
	any      bool // no address condition
	prefixes []netip.Prefix
	family   uint16 // inet: or inet6: given: the socket's family must be it
	hasPort  bool
	port     int64 // ss compares as a number: -1 is any
	str      string
}

// parseHost reads ss's host forms: [inet:|inet6:]ADDR[/LEN][:PORT],
// [V6][:PORT], *[:PORT], :PORT, any, all, default, host names (every
// address they resolve to), and, beyond ss, a bare IPv6 address (which
// ss reads as ADDR:PORT split at its last colon: "::1" is an error there).
//
// family is the one an earlier inet: or inet6: named (0: none): as in ss,
// it holds for the values after it.
func parseHost(s string, family uint16) (hostExpr, error) {
	h := hostExpr{str: s, family: family}
	bad := fmt.Errorf("bad address %q: want ADDR, ADDR/LEN, ADDR:PORT, [IPV6]:PORT, *:PORT or a host name", s)
	rest := s
	switch {
	case strings.HasPrefix(rest, "inet:"):
		h.family, rest = unix.AF_INET, rest[len("inet:"):]
	case strings.HasPrefix(rest, "inet6:"):
		h.family, rest = unix.AF_INET6, rest[len("inet6:"):]
	}
	addr, port, bracketed := rest, "", false
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return h, bad
		}
		addr, bracketed = rest[1:end], true
		switch after := rest[end+1:]; {
		case after == "":
		case after[0] == ':':
			port = after[1:]
		case after[0] == '/': // [fd00::]/8: beyond ss
			addr += after
		default:
			return h, bad
		}
	case rest == "*" || strings.HasPrefix(rest, "*:"):
		addr, port = "*", strings.TrimPrefix(strings.TrimPrefix(rest, "*"), ":")
	default:
		// ss splits at the last colon after the first slash, if any.
		from := strings.IndexByte(rest, '/')
		if from < 0 {
			from = 0
		}
		if i := strings.LastIndexByte(rest[from:], ':'); i >= 0 {
			addr, port = rest[:from+i], rest[from+i+1:]
		}
	}
	if port != "" {
		n, any, err := parsePortValue(port)
		if err == nil && !any {
			h.hasPort, h.port = true, n
		}
		if err != nil {
			if bracketed || !strings.Contains(rest, ":") {
				return h, err
			}
			addr, port = rest, "" // an IPv6 address without a port
		}
	}
	if err := h.setAddr(addr); err != nil {
		if port == "" || bracketed {
			return h, err
		}
		// "fd00::1": not fd00: with port 1, but the address.
		h.hasPort = false
		if h.setAddr(rest) != nil {
			return h, err
		}
	}
	return h, nil
}

// setAddr reads the address part of a host spec.
func (h *hostExpr) setAddr(a string) error {
	h.prefixes = h.prefixes[:0]
	switch strings.ToLower(a) {
	case "", "*":
		h.any = true
		return nil
	case "any", "all", "default":
		if h.family == 0 {
			h.any = true
			return nil
		}
	}
	if p, ok := parseSSPrefix(a, h.family); ok {
		h.prefixes = append(h.prefixes, p)
		return nil
	}
	// A host name: every address it has (ss keeps only the first).
	if strings.ContainsAny(a, ":/") || a == "" {
		return fmt.Errorf("bad address %q: want an IPv4 or IPv6 address, ADDR/LEN or a host name", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := lookupHost(ctx, a)
	if err != nil || len(ips) == 0 {
		return fmt.Errorf("bad address %q: not an address, and no host of that name (%v)", a, err)
	}
	for _, ip := range ips {
		ip = ip.Unmap().WithZone("")
		if h.family == unix.AF_INET && !ip.Is4() || h.family == unix.AF_INET6 && ip.Is4() {
			continue
		}
		h.prefixes = append(h.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
	}
	if len(h.prefixes) == 0 {
		return fmt.Errorf("bad address %q: the host has no address of the family asked for", a)
	}
	return nil
}

// parseSSPrefix reads ADDR[/LEN] as iproute2 does: an IPv6 address if it
// has a colon; else 1 to 4 numbers (decimal, 0x hex or 0 octal) with the
// missing trailing bytes zero (127.1 is 127.1.0.0); LEN a number or a
// dotted mask; any, all and default with a family are its /0.
func parseSSPrefix(s string, family uint16) (netip.Prefix, bool) {
	a, l, hasLen := strings.Cut(s, "/")
	var addr netip.Addr
	switch strings.ToLower(a) {
	case "any", "all", "default":
		if family == unix.AF_INET6 {
			addr = netip.IPv6Unspecified()
		} else {
			addr = netip.IPv4Unspecified()
		}
		if !hasLen {
			return netip.PrefixFrom(addr, 0), true
		}
	default:
		var err error
		if strings.Contains(a, ":") {
			if addr, err = netip.ParseAddr(a); err != nil || addr.Zone() != "" {
				return netip.Prefix{}, false
			}
		} else if addr, err = parseIPv4(a); err != nil {
			return netip.Prefix{}, false
		}
	}
	bits := addr.BitLen()
	if hasLen {
		n, ok := parseLen(l, addr.Is4())
		if !ok || n > bits {
			return netip.Prefix{}, false
		}
		bits = n
	}
	if family == unix.AF_INET && !addr.Is4() || family == unix.AF_INET6 && addr.Is4() {
		return netip.Prefix{}, false
	}
	p, err := addr.Prefix(bits)
	return p, err == nil
}

// parseIPv4 reads iproute2's IPv4 forms: 10.1.2.3, 127.1 (127.1.0.0),
// 0x7f.0.0.1, 010.0.0.1 (octal), 10 (10.0.0.0).
func parseIPv4(s string) (netip.Addr, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, fmt.Errorf("too many parts")
	}
	var b [4]byte
	for i, p := range parts {
		n, err := cParseUint(p, 8)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("bad part %q", p)
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), nil
}

// parseLen reads a prefix length: a number, or for IPv4 a dotted mask.
func parseLen(s string, v4 bool) (int, bool) {
	if n, err := cParseUint(s, 8); err == nil {
		return int(n), true
	}
	if !v4 || strings.Count(s, ".") != 3 {
		return 0, false
	}
	m, err := parseIPv4(s)
	if err != nil {
		return 0, false
	}
	v := uint32(m.As4()[0])<<24 | uint32(m.As4()[1])<<16 | uint32(m.As4()[2])<<8 | uint32(m.As4()[3])
	n := 0
	for v&(1<<31) != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return 0, false // not contiguous
	}
	return n, true
}

// parsePortValue reads a port as ss does: "" or "*" any; a number in C's
// bases (22, 0x16, 026), -1 any; or a TCP service name.
func parsePortValue(s string) (n int64, any bool, err error) {
	if s == "" || s == "*" {
		return 0, true, nil
	}
	if v, err := cParseInt(s); err == nil {
		if v == -1 {
			return 0, true, nil
		}
		return v, false, nil
	}
	p, err := net.LookupPort("tcp", s)
	if err != nil {
		return 0, false, fmt.Errorf("port %q is neither a number nor a TCP service name in /etc/services", s)
	}
	return int64(p), false, nil
}

// Match: the socket's address is in one of the prefixes, its port is
// the port, and its family the one asked for. As ss's kernel filter: an
// IPv4 prefix takes IPv4 addresses, an IPv4-mapped one of an IPv6 socket
// too; an IPv6 prefix (::ffff:a.b.c.d included) only IPv6 sockets'
// addresses; so 0.0.0.0/0 is every IPv4 address, ::/0 every IPv6 socket,
// and any/all/default every socket.
func (e hostExpr) Match(s *Subject) bool {
	if e.family != 0 && s.Family != e.family {
		return false
	}
	a, p := s.Src, s.SPort
	if e.dst {
		a, p = s.Dst, s.DPort
	}
	if e.hasPort && int64(p) != e.port {
		return false
	}
	if e.any {
		return true
	}
	for _, pf := range e.prefixes {
		switch {
		case pf.Addr().Is4():
			if a.Is4() && pf.Contains(a) {
				return true
			}
		case s.Family == unix.AF_INET6:
			// Subjects give IPv4-mapped addresses as IPv4: map back.
			if pf.Contains(netip.AddrFrom16(a.As16())) {
				return true
			}
		}
	}
	return false
}

func (e hostExpr) String() string {
	k := "src"
	if e.dst {
		k = "dst"
	}
	return k + " " + e.str
}

// devExpr: the socket is bound to this interface (SO_BINDTODEVICE).
type devExpr struct {
	index uint32
	str   string
	ne    bool
}

func (e devExpr) Match(s *Subject) bool { return (s.IfIndex == e.index) != e.ne }
func (e devExpr) String() string {
	if e.ne {
		return "dev != " + e.str
	}
	return "dev = " + e.str
}

func parseDev(s string) (devExpr, error) {
	if n, err := cParseUint(s, 32); err == nil {
		return devExpr{index: uint32(n), str: s}, nil
	}
	ifc, err := net.InterfaceByName(s)
	if err != nil {
		return devExpr{}, fmt.Errorf("bad device %q: no such interface here (%v)", s, err)
	}
	return devExpr{index: uint32(ifc.Index), str: s}, nil
}

// markExpr: (fwmark & mask) == value. A mark the kernel did not report
// (without CAP_NET_ADMIN, and on transitions) is taken as 0, as ss does.
type markExpr struct {
	value, mask uint32
	ne          bool
	str         string
}

func (e markExpr) Match(s *Subject) bool { return (s.Mark&e.mask == e.value) != e.ne }
func (e markExpr) String() string {
	if e.ne {
		return "fwmark != " + e.str
	}
	return "fwmark = " + e.str
}

func parseMark(s string) (markExpr, error) {
	v, m, hasMask := strings.Cut(s, "/")
	value, err := cParseUint(v, 32)
	if err != nil {
		return markExpr{}, fmt.Errorf("bad fwmark %q: want VALUE or VALUE/MASK (numbers)", s)
	}
	mask := uint64(0xffffffff)
	if hasMask {
		if mask, err = cParseUint(m, 32); err != nil {
			return markExpr{}, fmt.Errorf("bad fwmark %q: want VALUE or VALUE/MASK (numbers)", s)
		}
	}
	return markExpr{value: uint32(value), mask: uint32(mask), str: s}, nil
}

// cgroupExpr: the socket's cgroup is PATH (its cgroup v2 id, as ss
// compares); where the kernel did not give the socket's, the owner's.
type cgroupExpr struct {
	path string
	id   uint64 // 0: PATH has no id here (no cgroup2, or no such cgroup)
	ne   bool
}

// parseCgroup reads a cgroup path: under the cgroup2 mount, or (as ss
// takes it too) the full path of its directory.
func parseCgroup(path string) cgroupExpr {
	r := cgroups.New("/")
	if m := r.Mount(); m != "" && strings.HasPrefix(path, m+"/") {
		path = strings.TrimPrefix(path, m)
	}
	id, _ := r.ID(path)
	return cgroupExpr{path: path, id: id}
}

func (e cgroupExpr) Match(s *Subject) bool {
	var is bool
	switch {
	case s.SockCgroup != 0:
		is = e.id != 0 && s.SockCgroup == e.id
	case s.OwnerCgroup != 0 && e.id != 0:
		is = s.OwnerCgroup == e.id
	default:
		is = s.Owner != nil && s.Owner.Cgroup == e.path
	}
	return is != e.ne
}

func (e cgroupExpr) String() string {
	if e.ne {
		return "cgroup != " + e.path
	}
	return "cgroup = " + e.path
}

// autoboundExpr: the local port was picked by the kernel: as ss, the
// kernel says so (where a listing asked it) and the port lies in
// ip_local_port_range (ss's own re-check; all there is on transitions).
type autoboundExpr struct{ lo, hi uint16 }

func newAutobound() autoboundExpr {
	lo, hi, ok := names.EphemeralRange()
	if !ok {
		lo, hi = 1024, 4999 // ss's fallback
	}
	return autoboundExpr{lo, hi}
}

func (e autoboundExpr) Match(s *Subject) bool {
	return (!s.AutoboundKnown || s.Autobound) && s.SPort >= e.lo && s.SPort <= e.hi
}

// UsesAutobound says whether an expression has an autobound test (a
// listing then asks the kernel which sockets are).
func UsesAutobound(e Expr) bool {
	return e != nil && strings.Contains(" "+e.String()+" ", " autobound ")
}
func (e autoboundExpr) String() string { return "autobound" }

// familyExpr restricts a whole expression to the families that inet: and
// inet6: named in it, as ss restricts its whole listing. Its text is the
// expression's: the prefixes there say it again.
type familyExpr struct {
	families []uint16
	e        Expr
}

func (e familyExpr) Match(s *Subject) bool {
	for _, f := range e.families {
		if s.Family == f {
			return e.e.Match(s)
		}
	}
	return false
}

func (e familyExpr) String() string { return e.e.String() }

// cParseUint reads a number as C's strtoul with base 0 does, all of s:
// decimal, 0x hex, 0 octal; no sign, no Go-only forms (0b, 0o, _).
func cParseUint(s string, bits int) (uint64, error) {
	if s == "" || strings.ContainsAny(s, "_+-") || len(s) > 1 && s[0] == '0' && strings.ContainsAny(s[1:2], "bBoO") {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseUint(s, 0, bits)
}

// cParseInt is cParseUint with an optional minus sign.
func cParseInt(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	n, err := cParseUint(strings.TrimPrefix(s, "-"), 63)
	if neg {
		return -int64(n), err
	}
	return int64(n), err
}
