// Package record is a kernel record as socktrace reports it: what the
// kernel said (package events) together with what user space learned
// about it afterwards, who owns the socket and where its remote address
// came from. The kernel's decoder knows nothing of owners or DNS; the
// pipeline attaches them (see pipeline/enrich.go), and the timeline,
// analysis, output and capture take the result.
package record

import (
	"net/netip"
	"time"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Transition is a state transition from the kernel with what user
// space added to it. It is held by value and reused, record after
// record: attaching costs no allocation.
type Transition struct {
	events.Transition

	// OwnerID is who the owner is beyond its process (its cgroup, unit,
	// container, pod); nil when unknown.
	OwnerID *identity.Identity

	// DNS: where the remote address came from, the DNS answer that gave
	// it to the owner (or to someone in its namespace); nil when no
	// answer seen holds it.
	DNS *dnscache.Origin

	// Actual: the backend this host's netfilter translated the
	// destination to (a DNAT: kube-proxy's Service VIP, a published
	// port), from the connection's conntrack entry; invalid when nothing
	// translated it. Looked up at the end of the connect attempt (and
	// recorded), kept by the socket after.
	Actual netip.AddrPort

	// DropReasonName: the name of the socket's last drop's reason
	// (events.Transition.DropReason) as package drops gives it, e.g.
	// NETFILTER_DROP, or nf_hook_slow on kernels without reasons; set
	// by the pipeline when Drops > 0, and recorded so (the numbers
	// differ between kernels).
	DropReasonName string

	// Lifetime: on a transition into close, how long the socket lived,
	// from the birth socktrace saw (connect, listen, accept); known only
	// then. Filled in by the timeline.
	Lifetime      time.Duration
	LifetimeKnown bool
}

// Packet is a packet event of a socket (a retransmit, a reset sent or
// received, or an error: Kind says which) with what user space added to
// it. The kernel sends it in a transition's record, Old and New both the
// socket's state at the time (see State), and a capture stores it so:
// it has a transition's fields, in a type of its own so that the two
// are not mixed up. Lifetime is never set.
type Packet Transition

// State is the socket's state when the packet event happened.
func (p *Packet) State() tcpstate.State { return p.New }
