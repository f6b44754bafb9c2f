package pipeline

import (
	"net/netip"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Drops of no socket: a SYN or SYN-ACK the kernel dropped before it knew
// the socket (a rule on the input hook of a namespace of this host: on
// loopback, or across a veth from another namespace), sent with the
// packet's 4-tuple (events.Transition.IsTupleDrop). They are held here
// by the connecting socket's 4-tuple until its attempt ends (leaves
// syn-sent), when the socket's local port is known, and added to that
// transition's drops: its cause then says so, and a recording holds
// them there (the drops themselves are never recorded: the kernel sends
// them from every namespace, whatever the trace's filter).

// tupleKey is a connecting socket's 4-tuple.
type tupleKey struct {
	src, dst     netip.Addr
	sport, dport uint16
}

// heldDrops are the drops held for one 4-tuple.
type heldDrops struct {
	n      uint32
	reason string
	dir    events.DropDir
	ktime  uint64 // of the last
}

// maxHeldDrops bounds the 4-tuples held; beyond, those older than
// heldDropsFor go, and if none is, new ones are not held.
const (
	maxHeldDrops = 4096
	heldDropsFor = 5 * 60 * 1e9 // ns: longer than any connect attempt
)

// holdDrop keeps a drop of no socket for the attempt of its 4-tuple.
func (p *pipeline) holdDrop(t *record.Packet) {
	k := tupleKey{t.Src, t.Dst, t.SPort, t.DPort}
	if t.DropDir == events.DropReceived { // a SYN-ACK: to the connecting socket
		k = tupleKey{t.Dst, t.Src, t.DPort, t.SPort}
	}
	if p.held == nil {
		p.held = map[tupleKey]*heldDrops{}
	}
	h := p.held[k]
	if h == nil {
		if len(p.held) >= maxHeldDrops {
			for k, h := range p.held {
				if t.Ktime-h.ktime > heldDropsFor {
					delete(p.held, k)
				}
			}
			if len(p.held) >= maxHeldDrops {
				return
			}
		}
		h = &heldDrops{}
		p.held[k] = h
	}
	h.n += t.Drops
	h.reason, h.dir, h.ktime = t.DropReasonName, t.DropDir, t.Ktime
}

// takeHeldDrops adds to an attempt's end (a transition out of syn-sent)
// the drops held for its 4-tuple; the kernel's own (packets it freed
// with the socket) keep their reason.
func (p *pipeline) takeHeldDrops(t *record.Transition) {
	if len(p.held) == 0 || t.Old != tcpstate.SynSent {
		return
	}
	k := tupleKey{t.Src, t.Dst, t.SPort, t.DPort}
	h := p.held[k]
	if h == nil {
		return
	}
	delete(p.held, k)
	if t.Drops == 0 {
		t.DropReasonName, t.DropDir = h.reason, h.dir
	}
	t.Drops += h.n
}
