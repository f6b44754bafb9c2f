package snapshot

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/netns"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Options choose what Dump lists.
type Options struct {
	States tcpstate.Mask // 0: every state
	IPv4   bool          // with IPv6: families to list; neither: both
	IPv6   bool
	// Netns is the path of a network namespace (/proc/PID/ns/net,
	// /run/netns/NAME); "" is socktrace's own.
	Netns string
	// Info asks for each socket's tcp_info (ss -i), Mem for its memory
	// (ss -m).
	Info, Mem bool
	// AutoboundOnly: only the sockets whose local port the application
	// did not bind itself (the kernel tells; ss's autobound).
	AutoboundOnly bool
}

// Dump lists the TCP sockets of one network namespace. A dump the kernel
// flags as interrupted (the tables changed under it) is retried; after
// three, Dump gives up with ErrInterrupted.
func Dump(o Options) ([]Socket, error) {
	fd, netns, hint, err := openDiag(o.Netns)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	states := o.States
	if states == 0 {
		states = tcpstate.All
	}
	// The slice is sized from the kernel's own count of the namespace's
	// sockets: at 100,000 sockets, growing it copied them twice over,
	// with the garbage collector scanning every copy. That count is of
	// every state: a dump without the states that hold nearly all
	// sockets (the listeners package polls the listeners every second)
	// would allocate room for all of them each time, and drop it.
	if states&tcpstate.MaskOf(tcpstate.Established, tcpstate.TimeWait) == 0 {
		hint = 0
	}
	out := make([]Socket, 0, hint+hint/8+64)
	for _, fam := range families(o) {
		n := len(out)
		var err error
		for attempt := 1; ; attempt++ {
			out, err = dumpFamily(fd, fam, states, uint32(attempt), o.ext(), o.AutoboundOnly, out[:n])
			if err != ErrInterrupted || attempt == maxDumpAttempts {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("list %s sockets: %w", famName(fam), err)
		}
	}
	for i := range out {
		out[i].Netns = netns
	}
	return out, nil
}

// socketCount is how many TCP sockets the kernel counts in the calling
// thread's network namespace (/proc/net/sockstat{,6}: in use and in
// time-wait), 0 if it cannot say: a size for the dump's slice.
func socketCount() int {
	n := 0
	for _, f := range []string{"/proc/thread-self/net/sockstat", "/proc/thread-self/net/sockstat6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || (fields[0] != "TCP:" && fields[0] != "TCP6:") {
				continue
			}
			for i := 1; i+1 < len(fields); i += 2 {
				if fields[i] == "inuse" || fields[i] == "tw" {
					v, _ := strconv.Atoi(fields[i+1])
					n += v
				}
			}
		}
	}
	return n
}

func families(o Options) []uint8 {
	if o.IPv4 == o.IPv6 {
		return []uint8{unix.AF_INET, unix.AF_INET6}
	}
	if o.IPv4 {
		return []uint8{unix.AF_INET}
	}
	return []uint8{unix.AF_INET6}
}

func famName(f uint8) string {
	if f == unix.AF_INET6 {
		return "IPv6"
	}
	return "IPv4"
}

func (o Options) ext() uint8 {
	var e uint8
	if o.Info {
		e |= extInfo | extCong | extVegas
	}
	if o.Mem {
		e |= extSkMemInfo
	}
	return e
}

// dumpFamily runs one dump request to completion, appending its sockets
// to dst.
func dumpFamily(fd int, family uint8, states tcpstate.Mask, seq uint32, ext uint8, autobound bool, dst []Socket) ([]Socket, error) {
	socks := dst
	interrupted, err := dumpRequest(fd, family, states, seq, ext, autobound, func(s *Socket) error {
		socks = append(socks, *s)
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	if interrupted {
		return dst, ErrInterrupted
	}
	return socks, nil
}

// dumpRequest sends one dump request and reads its replies to the end,
// calling onSocket for each socket and afterRead (if not nil) after each
// read.
func dumpRequest(fd int, family uint8, states tcpstate.Mask, seq uint32, ext uint8, autobound bool,
	onSocket func(*Socket) error, afterRead func() error) (interrupted bool, err error) {
	req := encodeRequest(family, states, seq, ext)
	if autobound {
		req = withBytecode(req, bytecodeAutobound)
	}
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("send sock_diag request: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("read sock_diag reply: %w", err)
		}
		done, intr, err := parseReplies(buf[:n], seq, onSocket)
		interrupted = interrupted || intr
		if err != nil {
			return interrupted, err
		}
		if afterRead != nil {
			if err := afterRead(); err != nil {
				return interrupted, err
			}
		}
		if done {
			return interrupted, nil
		}
	}
}

// DumpEach is Dump for a listing that prints as it goes: each is given
// the sockets of every read of the kernel's replies, in a slice of their
// own (give it back with Release once done with it). Like ss, it does
// not retry a dump the kernel flags as interrupted (the tables changed
// while it ran): it has printed it already.
func DumpEach(o Options, each func([]Socket) error) error {
	fd, netns, _, err := openDiag(o.Netns)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	states := o.States
	if states == 0 {
		states = tcpstate.All
	}
	for _, fam := range families(o) {
		var batch []Socket
		_, err := dumpRequest(fd, fam, states, 1, o.ext(), o.AutoboundOnly, func(s *Socket) error {
			if batch == nil {
				batch = newBatch()
			}
			s.Netns = netns
			batch = append(batch, *s)
			return nil
		}, func() error {
			if len(batch) == 0 {
				return nil
			}
			b := batch
			batch = nil
			return each(b)
		})
		if err != nil {
			return fmt.Errorf("list %s sockets: %w", famName(fam), err)
		}
	}
	return nil
}

// InBackground runs dump (DumpEach, or a walk that calls it for several
// namespaces) in a goroutine of its own and hands over its batches as
// they come, so that the caller formats one read of the kernel's replies
// while the next is made. done gives dump's error once batches is closed.
func InBackground(dump func(each func([]Socket) error) error) (batches <-chan []Socket, done <-chan error) {
	bc, dc := make(chan []Socket, 64), make(chan error, 1)
	go func() {
		dc <- dump(func(b []Socket) error {
			bc <- b
			return nil
		})
		close(bc)
	}()
	return bc, dc
}

// A read of the kernel's replies holds at most 32 KiB (netlink's largest
// dump message), so at most this many sockets: a batch of that capacity
// never grows.
const batchCap = 32768/(nlmsgHdrLen+msgLen) + 1

// batches recycles DumpEach's batches: for a large table, allocating
// (and zeroing) each anew was a large share of --once's CPU time.
var batches = sync.Pool{New: func() any { b := make([]Socket, 0, batchCap); return &b }}

func newBatch() []Socket { return (*batches.Get().(*[]Socket))[:0] }

// Release gives back a batch that DumpEach passed, once nothing refers to
// its sockets any more.
func Release(b []Socket) {
	if cap(b) != batchCap {
		return
	}
	clear(b) // drop the pointers it holds (tcp_info, memory)
	b = b[:0]
	batches.Put(&b)
}

// openDiag opens a NETLINK_SOCK_DIAG socket in the namespace at path
// ("" for ours) and returns it with the namespace's inode and the
// kernel's count of its TCP sockets.
func openDiag(path string) (fd int, inode uint32, count int, err error) {
	if path == "" {
		path = "/proc/thread-self/ns/net" // not /proc/self: the main thread may have entered another (see Namespaces)
		fd, err := newDiagSocket()
		if err != nil {
			return -1, 0, 0, err
		}
		ino, err := nsInode(path)
		if err != nil {
			unix.Close(fd)
			return -1, 0, 0, err
		}
		return fd, ino, socketCount(), nil
	}
	ino, err := nsInode(path)
	if err != nil {
		return -1, 0, 0, err
	}
	// On a thread of its own, never left there: see netns.Do.
	var derr error
	err = netns.DoPath(path, func() {
		fd, derr = newDiagSocket()
		count = socketCount()
	})
	if err != nil {
		return -1, 0, 0, err
	}
	return fd, ino, count, derr
}

func newDiagSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind sock_diag netlink socket: %w", err)
	}
	return fd, nil
}

// NetnsInode returns the inode that identifies the network namespace at
// path, as BPF reports it in events.
func NetnsInode(path string) (uint32, error) { return nsInode(path) }

func nsInode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if os.IsNotExist(err) {
			return 0, fmt.Errorf("network namespace %s does not exist", path)
		}
		return 0, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return uint32(st.Ino), nil
}

// Namespaces lists one path for each network namespace in use on the
// host: those of all processes, and those named under /run/netns.
func Namespaces() ([]string, error) {
	seen := map[uint32]bool{}
	var out []string
	add := func(path string) {
		ino, err := nsInode(path)
		if err != nil || seen[ino] {
			return
		}
		seen[ino] = true
		out = append(out, path)
	}
	// Ours: a thread's, not /proc/self's (the main thread's), which a
	// goroutine that entered a namespace to list it and ended locked to
	// the main thread leaves in that namespace. Unlocked threads, this
	// one included, are all still in ours.
	add("/proc/thread-self/ns/net")
	if names, err := os.ReadDir("/run/netns"); err == nil {
		for _, n := range names {
			add("/run/netns/" + n.Name())
		}
	}
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		add("/proc/" + n + "/ns/net")
		// A namespace may be held open by a file descriptor only (a
		// container runtime's, or a thread that unshared and exited).
		if fds, err := os.ReadDir("/proc/" + n + "/fd"); err == nil {
			for _, fd := range fds {
				path := "/proc/" + n + "/fd/" + fd.Name()
				if l, err := os.Readlink(path); err == nil && strings.HasPrefix(l, "net:[") {
					add(path)
				}
			}
		}
		// A thread may have a namespace of its own (unshare in one
		// thread, as Go programs and tests do).
		if tids, err := os.ReadDir("/proc/" + n + "/task"); err == nil && len(tids) > 1 {
			for _, tid := range tids {
				if tid.Name() != n {
					add("/proc/" + n + "/task/" + tid.Name() + "/ns/net")
				}
			}
		}
	}
	return out, nil
}
