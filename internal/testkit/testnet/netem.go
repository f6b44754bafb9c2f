package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoNetem: the kernel has no netem qdisc (sch_netem not built, or its
// module not loadable).
var ErrNoNetem = errors.New("no netem qdisc (sch_netem) in this kernel")

// Delay adds a netem qdisc to the namespace's loopback that delays every
// packet by d, as `tc qdisc add dev lo root netem delay D` does, through
// rtnetlink (the VMs of the kernel matrix have no tc).
func (ns *NS) Delay(d time.Duration) error {
	return ns.Do(func() error { return addNetem(1, d, 0) })
}

// Blackhole adds a netem qdisc to the namespace's loopback that drops
// every packet sent (`tc qdisc add dev lo root netem loss 100%`): the
// kernel frees them as dropped on the way out, with their socket.
func (ns *NS) Blackhole() error {
	return ns.Do(func() error { return addNetem(1, 0, ^uint32(0)) })
}

// addNetem sends RTM_NEWQDISC: a netem root qdisc on ifindex, delaying
// by delay and losing loss/2^32 of the packets.
func addNetem(ifindex int32, delay time.Duration, loss uint32) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	le := binary.LittleEndian // the host's order: x86
	attr := func(b []byte, typ uint16, data []byte) []byte {
		n := 4 + len(data)
		b = le.AppendUint16(b, uint16(n))
		b = le.AppendUint16(b, typ)
		b = append(b, data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	// struct tc_netem_qopt: latency (psched ticks: 64 ns), limit, loss,
	// gap, duplicate, jitter.
	var qopt []byte
	qopt = le.AppendUint32(qopt, uint32(delay.Nanoseconds()>>6))
	qopt = le.AppendUint32(qopt, 1000)
	qopt = le.AppendUint32(qopt, loss)
	qopt = append(qopt, make([]byte, 12)...)
	var body []byte
	// struct tcmsg: family, pad, ifindex, handle, parent, info.
	body = append(body, unix.AF_UNSPEC, 0, 0, 0)
	body = le.AppendUint32(body, uint32(ifindex))
	body = le.AppendUint32(body, 0x10000)    // handle 1:
	body = le.AppendUint32(body, 0xFFFFFFFF) // TC_H_ROOT
	body = le.AppendUint32(body, 0)
	body = attr(body, unix.TCA_KIND, []byte("netem\x00"))
	body = attr(body, unix.TCA_OPTIONS, qopt)
	var msg []byte
	msg = le.AppendUint32(msg, uint32(unix.NLMSG_HDRLEN+len(body)))
	msg = le.AppendUint16(msg, unix.RTM_NEWQDISC)
	msg = le.AppendUint16(msg, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	msg = le.AppendUint32(msg, 1)
	msg = le.AppendUint32(msg, 0)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	if n < unix.NLMSG_HDRLEN+4 || le.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		return fmt.Errorf("netlink: unexpected reply")
	}
	switch errno := unix.Errno(-int32(le.Uint32(buf[unix.NLMSG_HDRLEN:]))); errno {
	case 0:
		return nil
	case unix.ENOENT, unix.EOPNOTSUPP:
		return ErrNoNetem
	default:
		return fmt.Errorf("add netem qdisc: %w", errno)
	}
}
