// Package nat finds the backend a connection really went to when this
// host's netfilter translated its destination (kube-proxy's DNAT of a
// Service VIP, Docker's published ports, any DNAT rule): the source of
// the reply tuple of the connection's conntrack entry, asked of the
// kernel through ctnetlink in the connection's network namespace.
//
// Why user space: no hook of socktrace's sees the skb's conntrack when a
// connect is made (inet_sock_set_state gets no skb; the SYN is a clone
// that goes through netfilter after the transition), and the entry
// outlives the attempt (an unanswered one stays [UNREPLIED] for its
// timeout), so asking for it by the connection's original tuple at the
// end of the attempt finds it.
//
// Lookups cost one netlink round trip, answered by the kernel within
// the request's sendmsg; a destination nothing translates is remembered
// for a few seconds, and a namespace without conntrack (its table empty,
// or ctnetlink refused) is asked at most once a second, so full churn to
// untranslated destinations costs a map lookup an attempt.
package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/netns"
)

// Bounds of what a Resolver remembers.
const (
	// MaxNamespaces: ctnetlink connections kept open, one a namespace.
	MaxNamespaces = 256
	// MaxPlain: destinations remembered as not translated.
	MaxPlain = 1 << 16
	// PlainFor: how long a destination nothing translated is not asked
	// about again.
	PlainFor = 5 * time.Second
	// QuietFor: how long a namespace without conntrack (or one that
	// could not be asked) is not asked again.
	QuietFor = time.Second
)

// Conn is a TCP connection as the kernel's socket knows it.
type Conn struct {
	Netns    uint32 // network namespace inode
	PID, TID uint32 // a process living in it (0: unknown), to enter it
	Src, Dst netip.Addr
	SPort    uint16
	DPort    uint16
}

// Options say where namespaces are found.
type Options struct {
	// ProcRoot: where the host's /proc is ("" for /proc).
	ProcRoot string
	// Paths: namespaces socktrace was told of (--netns PATH), tried when
	// no process names the namespace.
	Paths []string
	// Host: the namespace asked second, where a node translates its
	// pods' connections ("": socktrace's own).
	Host string
	// Warn, if set, is told once when ctnetlink is refused for good
	// (no CAP_NET_ADMIN): backends then stay unknown.
	Warn func(string)
}

type plainKey struct {
	netns uint32
	dst   netip.Addr
	dport uint16
}

type nsConn struct {
	c         *conntrack.Conn
	quietTill time.Time // not asked until then
	statsTill time.Time // its table's size not asked until then
	misses    int       // lookups in a row that found no entry
}

// MaxMisses: a namespace whose conntrack had no entry for this many
// connections in a row is taken for one that tracks nothing (a table
// in use for other traffic: notrack, or another namespace's), and asked
// again after QuietFor.
const MaxMisses = 8

// Stats count what a Resolver did.
type Stats struct {
	Lookups, Translated, Plain, Skipped, Errors uint64
}

// Resolver looks up backends; safe for concurrent use (its lookups are
// serialised).
type Resolver struct {
	opt Options

	mu       sync.Mutex
	conns    map[uint32]*nsConn
	plain    map[plainKey]time.Time // not translated until then
	disabled bool                   // ctnetlink refused: no lookups
	host     uint32                 // socktrace's own namespace (inode), asked second
	stats    Stats
	now      func() time.Time
}

// New returns a Resolver.
func New(o Options) *Resolver {
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	r := &Resolver{opt: o, conns: map[uint32]*nsConn{}, plain: map[plainKey]time.Time{}, now: time.Now}
	host := o.Host
	if host == "" {
		host = "/proc/thread-self/ns/net" // (dial tries it last)
	} else {
		r.opt.Paths = append(append([]string(nil), o.Paths...), host)
	}
	var st unix.Stat_t
	if unix.Stat(host, &st) == nil {
		r.host = uint32(st.Ino)
	}
	return r
}

// Close closes the ctnetlink connections.
func (r *Resolver) Close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for ino, n := range r.conns {
		if n.c != nil {
			n.c.Close()
		}
		delete(r.conns, ino)
	}
}

// Stats returns the counts so far.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Lookup returns the backend c's destination was translated to, and
// whether it was; not when nothing translated it, no entry holds it or
// the namespace cannot be asked. The connection's own namespace is asked
// first (a DNAT on its output hook: Docker's, a host-network process's
// kube-proxy), then socktrace's own, the host's when it runs there: a
// pod's connection to a Service VIP is translated on the node, in the
// prerouting hook of the host's namespace, with the pod's tuple as the
// entry's original one.
func (r *Resolver) Lookup(c Conn) (netip.AddrPort, bool) {
	if r == nil || !c.Dst.IsValid() || !c.Src.IsValid() || c.SPort == 0 || c.DPort == 0 {
		return netip.AddrPort{}, false
	}
	src, dst := c.Src.Unmap(), c.Dst.Unmap()
	if src.Is4() != dst.Is4() || dst.IsUnspecified() {
		return netip.AddrPort{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.disabled {
		return netip.AddrPort{}, false
	}
	now := r.now()
	pk := plainKey{c.Netns, dst, c.DPort}
	if till, ok := r.plain[pk]; ok && now.Before(till) {
		r.stats.Skipped++
		return netip.AddrPort{}, false
	}
	q := c
	q.Src, q.Dst = src, dst
	to, res := r.ask(c.Netns, c.PID, c.TID, q, now)
	if res != translated && r.host != 0 && r.host != c.Netns && !r.disabled {
		var hres result
		if to, hres = r.ask(r.host, 0, 0, q, now); hres == translated {
			res = translated
		} else if hres == plain {
			res = plain
		}
	}
	switch res {
	case translated:
		r.stats.Translated++
		return to, true
	case plain:
		r.remember(pk, now)
	}
	return netip.AddrPort{}, false
}

// result is what a namespace's conntrack said of a connection.
type result uint8

const (
	unknown    result = iota // not asked (no conntrack there, an error)
	plain                    // nothing translated it (or no entry)
	translated               // to a backend
)

// ask asks the conntrack of namespace ino for the entry of c.
func (r *Resolver) ask(ino, pid, tid uint32, c Conn, now time.Time) (netip.AddrPort, result) {
	n := r.conn(ino, pid, tid, now)
	if n == nil || n.c == nil || now.Before(n.quietTill) {
		r.stats.Skipped++
		return netip.AddrPort{}, unknown
	}
	r.stats.Lookups++
	var q conntrack.Flow
	q.TupleOrig.IP.SourceAddress, q.TupleOrig.IP.DestinationAddress = c.Src, c.Dst
	q.TupleOrig.Proto.Protocol, q.TupleOrig.Proto.SourcePort, q.TupleOrig.Proto.DestinationPort = unix.IPPROTO_TCP, c.SPort, c.DPort
	f, err := n.c.Get(q)
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOENT) || netlink.IsNotExist(err):
		// No entry: nothing tracks this namespace's connections, or
		// not this one (no packet left: no route).
		n.misses++
		if now.After(n.statsTill) {
			n.statsTill = now.Add(QuietFor)
			if st, err := n.c.StatsGlobal(); err == nil && st.Entries == 0 {
				n.misses = MaxMisses
			}
		}
		if n.misses >= MaxMisses {
			n.quietTill, n.misses = now.Add(QuietFor), 0
			return netip.AddrPort{}, unknown
		}
		return netip.AddrPort{}, plain
	case errors.Is(err, unix.EPERM):
		r.disabled = true
		if r.opt.Warn != nil {
			r.opt.Warn("NAT backends (actual_daddr, actual_dport) are not shown: ctnetlink needs CAP_NET_ADMIN, which socktrace lacks: run it as root or grant CAP_NET_ADMIN")
		}
		return netip.AddrPort{}, unknown
	default:
		r.stats.Errors++
		n.quietTill = now.Add(QuietFor)
		return netip.AddrPort{}, unknown
	}
	n.misses = 0
	o := f.TupleOrig
	if o.IP.SourceAddress.Unmap() != c.Src || o.IP.DestinationAddress.Unmap() != c.Dst || o.Proto.SourcePort != c.SPort || o.Proto.DestinationPort != c.DPort {
		// The entry of a connection made to us (the tuple matched its
		// reply): nothing we connected to was translated.
		return netip.AddrPort{}, plain
	}
	to := netip.AddrPortFrom(f.TupleReply.IP.SourceAddress.Unmap(), f.TupleReply.Proto.SourcePort)
	if to.Addr() == c.Dst && to.Port() == c.DPort || !to.Addr().IsValid() {
		return netip.AddrPort{}, plain
	}
	return to, translated
}

// remember notes that pk is not translated, for PlainFor.
func (r *Resolver) remember(pk plainKey, now time.Time) {
	r.stats.Plain++
	if len(r.plain) >= MaxPlain {
		for k, till := range r.plain {
			if !now.Before(till) {
				delete(r.plain, k)
			}
		}
		if len(r.plain) >= MaxPlain {
			clear(r.plain)
		}
	}
	r.plain[pk] = now.Add(PlainFor)
}

// conn is the ctnetlink connection of namespace ino, opened in it on
// first use; nil while it cannot be opened (tried again after QuietFor).
func (r *Resolver) conn(ino, pid, tid uint32, now time.Time) *nsConn {
	if n, ok := r.conns[ino]; ok && (n.c != nil || now.Before(n.quietTill)) {
		return n
	}
	if len(r.conns) >= MaxNamespaces {
		for k, n := range r.conns { // one out, any
			if n.c != nil {
				n.c.Close()
			}
			delete(r.conns, k)
			break
		}
	}
	n := &nsConn{}
	c, err := r.dial(ino, pid, tid)
	if err != nil {
		n.quietTill = now.Add(QuietFor)
	} else {
		n.c = c
	}
	r.conns[ino] = n
	return n
}

// dial opens a ctnetlink connection in namespace ino: entered through
// the process pid (thread tid) that lives there, or one of the paths
// socktrace was given, or its own.
func (r *Resolver) dial(ino, pid, tid uint32) (*conntrack.Conn, error) {
	var paths []string
	if pid != 0 {
		base := r.opt.ProcRoot + "/" + strconv.FormatUint(uint64(pid), 10)
		if tid != 0 {
			paths = append(paths, base+"/task/"+strconv.FormatUint(uint64(tid), 10)+"/ns/net")
		}
		paths = append(paths, base+"/ns/net")
	}
	paths = append(paths, r.opt.Paths...)
	paths = append(paths, "/proc/thread-self/ns/net")
	for _, p := range paths {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || uint32(st.Ino) != ino {
			unix.Close(fd)
			continue
		}
		var c *conntrack.Conn
		var derr error
		err = netns.Do(fd, p, func() { c, derr = conntrack.Dial(nil) })
		unix.Close(fd)
		if err == nil {
			err = derr
		}
		if err != nil {
			return nil, fmt.Errorf("ctnetlink in network namespace %d: %w", ino, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("network namespace %d: no process or path leads to it", ino)
}
