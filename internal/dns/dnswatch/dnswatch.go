// Package dnswatch sees the DNS answers delivered to local sockets, in
// every network namespace, with the process that asked: BPF programs on
// the cgroup2 root (bpf/dns.bpf.c says which and why) send each answer,
// raw, through a ring buffer of their own. It does not parse DNS: package
// dnscache does, with a well-kept library.
package dnswatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/kernelbtf"
)

// Answer is one DNS message from port 53 delivered to a local socket.
type Answer struct {
	Ktime  uint64 // CLOCK_MONOTONIC nanoseconds, when the packet arrived
	Cookie uint64 // the receiving socket
	Cgroup uint64 // the receiving socket's cgroup v2 id
	Server netip.AddrPort
	Client netip.AddrPort
	TCP    bool
	// Len is the size of the DNS message in the packet; Data holds its
	// first bytes (all of them unless Len > len(Data)); over TCP, after
	// the 2-byte length.
	Len  int
	Data []byte
	// Who sent the query (connect or sendmsg to port 53), when seen.
	OwnerKnown  bool
	PID, TID    uint32
	Comm        string
	OwnerCgroup uint64
}

// Watch reads the answers.
type Watch struct {
	objs  dnsObjects
	links []link.Link
	rd    *ringbuf.Reader
	rec   ringbuf.Record
}

// RingSize is the size of the DNS answers' ring buffer. A record is
// about 2.1 KiB (an answer of up to 2048 bytes and who received it):
// 512 KiB hold about 240 answers not yet read, which the reader takes as
// they come; one lost is counted (Counts). cilium/ebpf's reader maps the
// data pages twice, so it is twice its size of socktrace's resident
// memory (1 MiB), besides the kernel memory charged to its cgroup.
const RingSize = 512 << 10

// Open loads the programs and attaches them to the root of the cgroup2
// hierarchy at cgroupMount (every process is below it); cgroups.Resolver
// finds it.
func Open(cgroupMount string) (*Watch, error) {
	if cgroupMount == "" {
		return nil, errors.New("passive DNS: no cgroup2 hierarchy found: none is mounted in socktrace's mount namespace nor in PID 1's or a parent's it can reach " +
			"(mount one: mount -t cgroup2 none /sys/fs/cgroup; in a container, mount the host's / and give --host-root)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("passive DNS: memlock: %w", err)
	}
	w := &Watch{}
	spec, err := loadDns()
	if err != nil {
		return nil, fmt.Errorf("passive DNS: %w", err)
	}
	spec.Maps["dns_events"].MaxEntries = RingSize
	opts, err := kernelbtf.Options(nil)
	if err != nil {
		return nil, fmt.Errorf("passive DNS: %w", err)
	}
	if err := spec.LoadAndAssign(&w.objs, opts); err != nil {
		return nil, fmt.Errorf("passive DNS: load BPF programs: %w", err)
	}
	attach := []struct {
		name string
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{
		{"cgroup_skb/ingress", w.objs.DnsIngress, ebpf.AttachCGroupInetIngress},
		{"cgroup/connect4", w.objs.DnsConnect4, ebpf.AttachCGroupInet4Connect},
		{"cgroup/connect6", w.objs.DnsConnect6, ebpf.AttachCGroupInet6Connect},
		{"cgroup/sendmsg4", w.objs.DnsSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{"cgroup/sendmsg6", w.objs.DnsSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
	}
	for _, a := range attach {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupMount, Attach: a.typ, Program: a.prog})
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("passive DNS: attach %s to %s: %w", a.name, cgroupMount, err)
		}
		w.links = append(w.links, l)
	}
	rd, err := ringbuf.NewReader(w.objs.DnsEvents)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("passive DNS: ring buffer: %w", err)
	}
	w.rd = rd
	return w, nil
}

// Close detaches the programs.
func (w *Watch) Close() error {
	if w.rd != nil {
		w.rd.Close()
	}
	for _, l := range w.links {
		l.Close()
	}
	w.links = nil
	return w.objs.Close()
}

// Pending says whether answers wait to be read; it costs no system call.
func (w *Watch) Pending() bool { return w.rd.AvailableBytes() > 0 }

// Read reads the next answer without waiting; false when there is none.
// a.Data is valid until the next Read.
func (w *Watch) Read(a *Answer) (bool, error) {
	for w.Pending() {
		w.rd.SetDeadline(time.Now())
		err := w.rd.ReadInto(&w.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("passive DNS: read: %w", err)
		}
		if ok, err := decode(w.rec.RawSample, a); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// Counts are the answers the kernel sent, and those it dropped because
// the ring buffer was full.
func (w *Watch) Counts() (sent, lost uint64, err error) {
	var vals []uint64
	for i, p := range []*uint64{&sent, &lost} {
		if err := w.objs.DnsCounts.Lookup(uint32(i), &vals); err != nil {
			return 0, 0, fmt.Errorf("passive DNS: counters: %w", err)
		}
		for _, v := range vals {
			*p += v
		}
	}
	return sent, lost, nil
}

const (
	flagOwnerKnown = 1 << 0
	flagTCP        = 1 << 1
)

var recordSize = int(unsafe.Sizeof(dnsDnsRecord{}))

func decode(b []byte, a *Answer) (bool, error) {
	if len(b) < recordSize {
		return false, fmt.Errorf("passive DNS: short record (%d bytes, want %d)", len(b), recordSize)
	}
	r := (*dnsDnsRecord)(unsafe.Pointer(&b[0]))
	addr := func(raw *[16]uint8) netip.Addr {
		if r.Family == unix.AF_INET {
			return netip.AddrFrom4([4]byte(raw[:4]))
		}
		return netip.AddrFrom16(*raw).Unmap()
	}
	*a = Answer{
		Ktime: r.TsNs, Cookie: r.Cookie, Cgroup: r.Cgroup,
		Server: netip.AddrPortFrom(addr(&r.Saddr), r.Sport),
		Client: netip.AddrPortFrom(addr(&r.Daddr), r.Dport),
		TCP:    r.Flags&flagTCP != 0,
		Len:    int(r.Len),
	}
	n := int(r.Caplen)
	if n > len(r.Data) {
		n = len(r.Data)
	}
	data := b[unsafe.Offsetof(r.Data) : unsafe.Offsetof(r.Data)+uintptr(n)]
	if a.TCP {
		// The 2-byte length of the message: this segment starts one.
		if len(data) < 2 {
			return false, nil
		}
		a.Len = int(binary.BigEndian.Uint16(data))
		data = data[2:]
	}
	a.Data = data
	if r.Flags&flagOwnerKnown != 0 {
		a.OwnerKnown, a.PID, a.TID, a.OwnerCgroup = true, r.Owner.Tgid, r.Owner.Tid, r.Owner.Cgroup
		a.Comm = unix.ByteSliceToString(unsafe.Slice((*byte)(unsafe.Pointer(&r.Owner.Comm[0])), len(r.Owner.Comm)))
	}
	return true, nil
}
