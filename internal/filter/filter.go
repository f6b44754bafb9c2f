// Package filter decides which sockets and transitions a user asked for,
// from ss-like options (--state, --sport, --dport, --src, --dst, --pid,
// --comm, -4, -6), and splits off the part the BPF program can apply.
package filter

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Filter keeps what matches every criterion set; within one criterion a
// list matches any of its items. The zero Filter keeps everything.
type Filter struct {
	States tcpstate.Mask // new state of a transition; 0: any
	IPv4   bool          // with IPv6: socket families; neither: both
	IPv6   bool
	SPorts []events.PortRange // local port
	DPorts []events.PortRange // peer port
	Src    []netip.Prefix     // local address
	Dst    []netip.Prefix     // peer address
	PIDs   []uint32           // owning process
	Comms  []string           // owning process name (as the kernel truncates it)
	Netns  uint32             // network namespace inode; 0: any

	// Who the owner is beyond its process (package identity): a socket
	// whose owner is not known matches none of these.
	Units      []string // systemd unit ("nginx" means nginx.service)
	Containers []string // container name, or a prefix of its id (4+ hex digits)
	Pods       []string // pod name, or NAMESPACE/NAME
	Namespaces []string // Kubernetes namespace (not the network namespace)
}

// Subject is what a filter looks at: a transition, or (later) a socket.
type Subject struct {
	State      tcpstate.State
	Family     uint16
	Src, Dst   netip.Addr
	SPort      uint16
	DPort      uint16
	OwnerKnown bool
	PID        uint32
	Comm       string
	Owner      *identity.Identity // nil: not known
	Netns      uint32

	// What ss's dev, fwmark and cgroup tests look at: the interface the
	// socket is bound to (0: none), its fwmark (0 when the kernel did not
	// say), its cgroup v2 id (sock_diag's; 0 on transitions) and the
	// owner's (the BPF program's).
	IfIndex     uint32
	Mark        uint32
	SockCgroup  uint64
	OwnerCgroup uint64
	// Autobound: the kernel said the application did not bind the local
	// port itself (sock_diag listings that ask); else not known.
	Autobound, AutoboundKnown bool
}

// OfSocket returns the subject of a socket of a listing, held by users
// (its owner: the first of them; none: not known).
func OfSocket(s *snapshot.Socket, users []procs.Owner) Subject {
	subj := Subject{State: s.State, Family: s.Family, Src: s.Src, Dst: s.Dst,
		SPort: s.SPort, DPort: s.DPort, Netns: s.Netns,
		IfIndex: s.IfIndex, Mark: s.Mark, SockCgroup: s.CgroupID}
	if len(users) > 0 {
		subj.OwnerKnown, subj.PID, subj.Comm = true, users[0].PID, users[0].Comm
	}
	return subj
}

// OfTransition returns the subject of a transition: its new state.
func OfTransition(t *record.Transition) Subject {
	return Subject{
		State: t.New, Family: t.Family, Src: t.Src, Dst: t.Dst,
		SPort: t.SPort, DPort: t.DPort,
		OwnerKnown: t.OwnerKnown, PID: t.OwnerPID, Comm: t.OwnerComm,
		Owner: t.OwnerID, Netns: t.Netns, OwnerCgroup: t.OwnerCgroup,
	}
}

// OfPacket is the subject of a packet event: its socket, in the state
// it was in.
func OfPacket(p *record.Packet) Subject { return OfTransition((*record.Transition)(p)) }

// Match reports whether s passes the filter.
func (f *Filter) Match(s *Subject) bool {
	if f.States != 0 && !f.States.Has(s.State) {
		return false
	}
	if f.IPv4 != f.IPv6 {
		if (s.Family == unix.AF_INET) != f.IPv4 {
			return false
		}
	}
	if f.Netns != 0 && s.Netns != f.Netns {
		return false
	}
	if len(f.SPorts) > 0 && !portIn(s.SPort, f.SPorts) {
		return false
	}
	if len(f.DPorts) > 0 && !portIn(s.DPort, f.DPorts) {
		return false
	}
	if len(f.Src) > 0 && !addrIn(s.Src, f.Src) {
		return false
	}
	if len(f.Dst) > 0 && !addrIn(s.Dst, f.Dst) {
		return false
	}
	if len(f.PIDs) > 0 {
		if !s.OwnerKnown || !pidIn(s.PID, f.PIDs) {
			return false
		}
	}
	if len(f.Comms) > 0 {
		if !s.OwnerKnown || !commIn(s.Comm, f.Comms) {
			return false
		}
	}
	if len(f.Units) > 0 && !anyOf(f.Units, s.Owner, UnitIs) {
		return false
	}
	if len(f.Containers) > 0 && !anyOf(f.Containers, s.Owner, ContainerIs) {
		return false
	}
	if len(f.Pods) > 0 && !anyOf(f.Pods, s.Owner, PodIs) {
		return false
	}
	if len(f.Namespaces) > 0 && !anyOf(f.Namespaces, s.Owner, func(id *identity.Identity, ns string) bool { return id.Namespace == ns }) {
		return false
	}
	return true
}

func anyOf(want []string, id *identity.Identity, is func(*identity.Identity, string) bool) bool {
	if id == nil {
		return false
	}
	for _, w := range want {
		if is(id, w) {
			return true
		}
	}
	return false
}

// UnitIs: the owner runs in systemd unit u ("nginx" for nginx.service).
func UnitIs(id *identity.Identity, u string) bool {
	return id != nil && id.Unit != "" && (id.Unit == u || id.Unit == u+".service")
}

// ContainerIs: the owner runs in container c: its name, or its id or a
// prefix of it (at least 4 characters, as docker takes).
func ContainerIs(id *identity.Identity, c string) bool {
	if id == nil || c == "" {
		return false
	}
	return (id.Container != "" && id.Container == c) ||
		(id.ContainerID != "" && (id.ContainerID == c || (len(c) >= 4 && strings.HasPrefix(id.ContainerID, c))))
}

// PodIs: the owner runs in pod p, named NAME or NAMESPACE/NAME.
func PodIs(id *identity.Identity, p string) bool {
	if id == nil || id.Pod == "" {
		return false
	}
	if ns, name, ok := strings.Cut(p, "/"); ok {
		return id.Namespace == ns && id.Pod == name
	}
	return id.Pod == p
}

// Kernel returns the part of f the BPF program applies.
func (f *Filter) Kernel() events.KernelFilter {
	return events.KernelFilter{
		States: f.States,
		Netns:  f.Netns,
		IPv4:   f.IPv4,
		IPv6:   f.IPv6,
		SPorts: f.SPorts,
		DPorts: f.DPorts,
	}
}

func portIn(p uint16, rs []events.PortRange) bool {
	for _, r := range rs {
		if p >= r.Lo && p <= r.Hi {
			return true
		}
	}
	return false
}

func addrIn(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func pidIn(p uint32, ps []uint32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// commLen is the kernel's TASK_COMM_LEN less the terminating NUL.
const commLen = 15

func commIn(c string, cs []string) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// ParsePorts parses a comma-separated list of ports, ranges ("8000-8100")
// and service names ("https", from /etc/services).
func ParsePorts(list string) ([]events.PortRange, error) {
	var out []events.PortRange
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(item), ":"))
		if item == "" {
			return nil, fmt.Errorf("empty port in %q", list)
		}
		if lo, hi, ok := strings.Cut(item, "-"); ok && lo != "" && hi != "" && isDigits(lo) && isDigits(hi) {
			l, err := parsePort(lo)
			if err != nil {
				return nil, err
			}
			h, err := parsePort(hi)
			if err != nil {
				return nil, err
			}
			if l > h {
				return nil, fmt.Errorf("port range %q runs backwards: write it low-high", item)
			}
			out = append(out, events.PortRange{Lo: l, Hi: h})
			continue
		}
		p, err := parsePort(item)
		if err != nil {
			return nil, err
		}
		out = append(out, events.PortRange{Lo: p, Hi: p})
	}
	return out, nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func parsePort(s string) (uint16, error) {
	if isDigits(s) {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n > 65535 {
			return 0, fmt.Errorf("port %q out of range: ports are 0-65535", s)
		}
		return uint16(n), nil
	}
	n, err := net.LookupPort("tcp", s)
	if err != nil {
		return 0, fmt.Errorf("port %q is neither a number (0-65535), a range (8000-8100) nor a TCP service name in /etc/services", s)
	}
	return uint16(n), nil
}

// ParsePrefixes parses a comma-separated list of addresses and CIDR
// prefixes ("10.0.0.0/8,::1"). IPv4-mapped IPv6 is taken as IPv4.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if strings.HasPrefix(item, "[") { // [fd00::1], [fd00::]/8
			if end := strings.IndexByte(item, ']'); end > 0 {
				item = item[1:end] + item[end+1:]
			}
		}
		if item == "" {
			return nil, fmt.Errorf("empty address in %q", list)
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("bad address prefix %q: want an address or CIDR such as 10.0.0.0/8 or fd00::/8", item)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("bad address %q: want an address or CIDR such as 10.0.0.0/8 or fd00::/8", item)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ParsePIDs parses a comma-separated list of process ids.
func ParsePIDs(list string) ([]uint32, error) {
	var out []uint32
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		n, err := strconv.ParseUint(item, 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("bad process id %q: want a positive number", item)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// ParseComms parses a comma-separated list of process names. Names longer
// than the kernel keeps (15 bytes) are cut the way the kernel cuts them.
func ParseComms(list string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("empty process name in %q", list)
		}
		if len(item) > commLen {
			item = item[:commLen]
		}
		out = append(out, item)
	}
	return out, nil
}
