package output

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/safetext"
)

// Alerts about listeners whose accept queue overflows (package
// listeners): listen-overflow, listen-recovered, and the listener a
// failing destination's SYNs are dropped by.

// jsonListenAlert is a listen-overflow or listen-recovered alert.
type jsonListenAlert struct {
	Type      string  `json:"type"`
	Time      string  `json:"time"`
	Alert     string  `json:"alert"`
	Netns     uint32  `json:"netns"`
	NetnsName *string `json:"netns_name"`
	Saddr     string  `json:"saddr"`
	Sport     uint16  `json:"sport"`
	PID       *uint32 `json:"pid"`
	Comm      *string `json:"comm"`
	jsonIdentity
	// Dropped: SYNs dropped since the last listen-overflow alert (0 in
	// listen-recovered); Drops: since the trace began; SkDrops: the
	// kernel's own count for the socket (ss -m's d), from its birth.
	Dropped uint64 `json:"dropped"`
	Drops   uint64 `json:"drops"`
	SkDrops uint32 `json:"sk_drops"`
	Backlog uint32 `json:"backlog"`
	AcceptQ uint32 `json:"accept_q"`
	// OverflowingSince: the first poll that saw it drop, of this spell.
	OverflowingSince string  `json:"overflowing_since"`
	LastDrop         *string `json:"last_drop"`
	// listen-recovered: how long it dropped, and whether it closed.
	OverflowDuration *int64 `json:"overflow_duration_ns,omitempty"`
	Closed           bool   `json:"closed"`
}

func (j *JSON) listenAlert(a *analysis.Alert) error {
	ev := a.Listen
	rec := jsonListenAlert{Type: "alert", Time: a.Time.UTC().Format(TimeLayout), Alert: a.Kind.String(),
		Netns: ev.Netns, Saddr: ev.Addr.String(), Sport: ev.Port,
		Dropped: ev.Dropped, Drops: ev.Total, SkDrops: ev.Drops, Backlog: ev.Backlog, AcceptQ: ev.Queue,
		OverflowingSince: ev.Since.UTC().Format(TimeLayout), LastDrop: timePtr(ev.LastDrop), Closed: ev.Closed}
	if n := netnsNameOf(j.netnsName, ev.Netns); n != "" {
		rec.NetnsName = &n
	}
	rec.PID, rec.Comm = owner(ev.Owner.Known, ev.Owner.PID, ev.Owner.Comm)
	rec.jsonIdentity = identityJSON(ev.Owner.ID)
	if ev.Kind == listeners.Recovered {
		d := ev.For.Nanoseconds()
		rec.OverflowDuration = &d
	}
	return j.encode(rec)
}

// jsonDroppingListener is, in a failing alert, the local listener that
// drops the destination's SYNs.
type jsonDroppingListener struct {
	Netns   uint32  `json:"netns"`
	Saddr   string  `json:"saddr"`
	Sport   uint16  `json:"sport"`
	PID     *uint32 `json:"pid"`
	Comm    *string `json:"comm"`
	Drops   uint64  `json:"drops"`
	Backlog uint32  `json:"backlog"`
	AcceptQ uint32  `json:"accept_q"`
}

func droppingListenerJSON(l *listeners.State) *jsonDroppingListener {
	j := &jsonDroppingListener{Netns: l.Netns, Saddr: l.Addr.String(), Sport: l.Port, Drops: l.Total, Backlog: l.Backlog, AcceptQ: l.Queue}
	j.PID, j.Comm = owner(l.Owner.Known, l.Owner.PID, l.Owner.Comm)
	return j
}

// plainEndpoint is addr:port, [addr]:port for IPv6.
func plainEndpoint(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}

// droppingCause says why a failing destination's SYNs get no reply: "the
// listener 127.0.0.1:9093 (python3/123) is dropping SYNs: accept queue
// full, 90 dropped".
func droppingCause(l *listeners.State, endpoint string) string {
	return fmt.Sprintf("the listener %s (%s) is dropping SYNs: accept queue full, %d dropped",
		endpoint, process(l.Owner.Known, l.Owner.PID, l.Owner.Comm, l.Owner.ID), l.Total)
}

// listenAlert writes a listener's alert line:
//
//	!! LISTEN OVERFLOW 127.0.0.1:9093 (python3/123): accept queue full (2 waiting, backlog 1): 12 SYNs dropped since the last alert, 90 since 03:12:01
//	ok LISTEN RECOVERED 127.0.0.1:9093 (python3/123): no SYN dropped for 5s; it dropped 90 over 12.0s
func (t *Table) listenAlert(a *analysis.Alert) error {
	ev := a.Listen
	b := a.Time.Local().AppendFormat(t.buf[:0], "15:04:05.000000")
	local := t.endpoint(ev.Addr, ev.Port)
	if n := netnsNameOf(t.netnsName, ev.Netns); strings.HasPrefix(n, "pod:") || strings.HasPrefix(n, "netns:") {
		local += " in " + safetext.Escape(n)
	}
	who := process(ev.Owner.Known, ev.Owner.PID, ev.Owner.Comm, ev.Owner.ID)
	switch ev.Kind {
	case listeners.Overflow:
		b = fmt.Appendf(b, " !! LISTEN OVERFLOW %s (%s): accept queue full (%d waiting, backlog %d): %d SYNs dropped since the last alert, %d since %s\n",
			local, who, ev.Queue, ev.Backlog, ev.Dropped, ev.Total, clock(ev.Since))
	case listeners.Recovered:
		how := "no SYN dropped for " + Age(listeners.RecoverAfter)
		if ev.Closed {
			how = "closed"
		}
		b = fmt.Appendf(b, " ok LISTEN RECOVERED %s (%s): %s; it dropped %d SYNs over %s\n",
			local, who, how, ev.Total, Age(ev.For))
	}
	t.buf = b
	return t.write(b)
}

// listenerNote is what the summary's listener table says of a listener
// that dropped SYNs during the trace.
func listenerNote(l *analysis.Listener) string {
	if l.Drops == 0 {
		return ""
	}
	s := strconv.FormatUint(l.Drops, 10) + " SYNs dropped during the trace (accept queue full)"
	if l.Overflowing {
		s += ", still dropping"
	}
	return s
}
