package pipeline

import (
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// What user space attaches to the kernel's records, all here: the
// owner's identity (cgroup, unit, container, pod) and the DNS name the
// remote address came from. The timeline adds what the socket's history
// knows (timeline.Table.Apply: an owner learned earlier, the lifetime);
// the NAT backend a connect attempt went to is looked up as it ends
// (findBackend, before the record is written to a capture, which keeps
// it) and kept by the socket (keepBackend);
// output names network namespaces as it writes (SetNetnsNames).

// identifyOwner gives a transition its owner's identity, from the cgroup
// and process the kernel saw, unless it has one (a replay's, recorded).
func (p *pipeline) identifyOwner(t *record.Transition) {
	if t.OwnerKnown && p.ids != nil && t.OwnerID == nil {
		t.OwnerID = p.recentID.ByID(p.ids, t.OwnerCgroup, t.OwnerPID, t.Ktime)
	}
}

// nameDrop names the reason of the socket's last drop, from the number
// the kernel gave, unless it has a name (a replay's, recorded).
func (p *pipeline) nameDrop(t *record.Transition) {
	if t.Drops > 0 && t.DropReasonName == "" && p.dropNames != nil {
		t.DropReasonName = p.dropNames.Name(t.DropReason)
	}
}

// nameDest gives a transition (and its socket) the DNS name its remote
// address came from: looked up at connect, kept by the socket after.
func (p *pipeline) nameDest(t *record.Transition, r *timeline.Row) {
	if p.dns == nil || !t.Dst.IsValid() || t.Dst.IsUnspecified() {
		return
	}
	if r != nil && r.DNS != nil && !(t.Old == tcpstate.Close && t.New == tcpstate.SynSent) {
		t.DNS = r.DNS
		return
	}
	t.DNS = p.dns.cache.Lookup(t.Dst, t.OwnerPID, t.Netns, t.OwnerCgroup)
	if r != nil && t.DNS != nil {
		r.DNS = t.DNS
	}
}

// fromSocket gives a packet event (retransmit, reset, error) what its
// socket's row knows: its DNS name, and its owner when the kernel did
// not know it; else the owner's identity from the cgroup and process.
func (p *pipeline) fromSocket(t *record.Packet) {
	p.nameDrop((*record.Transition)(t))
	r := p.table.Lookup(t.Cookie)
	if r != nil {
		t.DNS = r.DNS
		if t.Drops > r.Drops {
			r.Drops, r.DropReason, r.DropDir = t.Drops, t.DropReasonName, t.DropDir
		}
	}
	if r != nil && !t.OwnerKnown && r.OwnerKnown {
		t.OwnerKnown, t.OwnerPID, t.OwnerTID, t.OwnerComm = true, r.OwnerPID, r.OwnerTID, r.OwnerComm
		t.OwnerID = r.OwnerID
	} else if t.OwnerKnown && p.ids != nil && t.OwnerID == nil {
		t.OwnerID = p.ids.ByID(t.OwnerCgroup, t.OwnerPID)
	}
}

// findBackend gives a connect attempt that just ended (syn-sent ->
// established, or -> close: the kernel keeps an unanswered attempt's
// conntrack entry for its timeout) the backend this host's netfilter
// translated its destination to; live only (a replay has it recorded).
func (p *pipeline) findBackend(t *record.Transition) {
	if p.nat == nil || t.Old != tcpstate.SynSent || t.Actual.IsValid() {
		return
	}
	t.Actual, _ = p.nat.Lookup(natConnOf(t))
}

// keepBackend: the socket's row remembers its backend, and the socket's
// later transitions (its close) carry it.
func keepBackend(t *record.Transition, r *timeline.Row) {
	switch {
	case r == nil:
	case t.Actual.IsValid():
		r.Actual = t.Actual
	case t.Old == tcpstate.Close && t.New == tcpstate.SynSent:
		r.Actual = t.Actual // a new attempt: nothing known yet
	default:
		t.Actual = r.Actual
	}
}
