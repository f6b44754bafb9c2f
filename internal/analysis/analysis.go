// Package analysis turns per-socket timelines into answers: how each
// connect attempt ended and why, which destinations are failing and since
// when, and which processes leak sockets in CLOSE_WAIT.
package analysis

import (
	"container/list"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/drops"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// Outcome is how a connect attempt (an active open) ended.
type Outcome uint8

const (
	Established Outcome = iota // the handshake completed
	Refused                    // the peer answered with RST (ECONNREFUSED)
	Timeout                    // no answer to the SYNs (ETIMEDOUT)
	Unreachable                // an ICMP error or no route (EHOSTUNREACH, ENETUNREACH)
	Aborted                    // closed before an answer: by the application, or another error
	nOutcomes
)

var outcomeNames = [nOutcomes]string{"established", "refused", "timeout", "unreachable", "aborted"}

func (o Outcome) String() string {
	if o < nOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Failures lists the failed outcomes, in the order tables show them.
var Failures = []Outcome{Refused, Timeout, Unreachable, Aborted}

// OutcomeOf classifies the end of a connect attempt from the socket error
// at syn-sent -> close.
func OutcomeOf(skErr uint16) Outcome {
	switch unix.Errno(skErr) {
	case unix.ECONNREFUSED:
		return Refused
	case unix.ETIMEDOUT:
		return Timeout
	case unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.ENETDOWN:
		return Unreachable
	}
	return Aborted
}

// DestKey identifies a destination: peer address and port, in a network
// namespace.
type DestKey struct {
	Netns uint32
	Addr  netip.Addr
	Port  uint16
}

// Dest is what happened to the connect attempts to one destination.
type Dest struct {
	DestKey
	Attempts  uint64
	Successes uint64
	Failures  [nOutcomes]uint64 // by outcome; Failures[Established] is unused
	// Streak: consecutive failed attempts, up to the last one that ended.
	Streak uint64
	// InFlight: attempts still in syn-sent.
	InFlight int
	// LastOutcome of the last attempt that ended.
	LastOutcome Outcome
	// LastConnect: how long the last successful handshake took (0 unknown).
	LastConnect                            time.Duration
	FirstAttempt, LastAttempt, LastSuccess time.Time
	// FailingSince: when the first attempt of the current streak began;
	// when FailingSinceAtLeast, that attempt was already under way when
	// the trace began, so it began before.
	FailingSince        time.Time
	FailingSinceAtLeast bool
	Failing             bool // Streak reached the threshold; cleared by a success

	// The process that made the last attempt.
	OwnerKnown bool
	PID        uint32
	Comm       string
	Owner      *identity.Identity // its cgroup, unit, container, pod; nil if unknown
	// DNS: the answer the address came from, as of the last attempt
	// that had one; nil if none was seen.
	DNS *dnscache.Origin

	// What happened on the wire. Last: the last attempt that ended (its
	// SYNs: 1 + retransmits, how long it was in syn-sent, whether an RST
	// came back, its errno). Totals over the attempts and the closed
	// connections seen.
	Last           Attempt
	SynRetrans     uint64
	ResetsReceived uint64 // RSTs received, by attempts and connections
	ResetsSent     uint64
	Retrans        uint64 // segments retransmitted by connections that closed
	BytesAcked     uint64 // bytes sent (acknowledged) by connections that closed
	BytesReceived  uint64
	// Drops: packets of the attempts dropped on this host (SYNs sent,
	// SYN-ACKs received), with the last drop's reason and direction.
	Drops      uint64
	DropReason string
	DropDir    events.DropDir
	handshakes handshakes

	// Backends: where this host's NAT sent the attempts (a Service VIP's
	// pods), and how they went there; nil when nothing translated them.
	// A backend failing (--fail-after in a row through it) makes the
	// destination failing, whatever the others do.
	Backends []Backend
}

// Attempt is how one connect attempt went on the wire.
type Attempt struct {
	Outcome     Outcome
	SYNs        int           // SYNs sent: the first and its retransmits
	Span        time.Duration // in syn-sent; 0 when not known
	SpanKnown   bool
	RstReceived bool
	Err         uint16 // errno at the end (0 on success)
	// Drops: the attempt's packets dropped on this host (its SYNs sent,
	// SYN-ACKs received), the last one's reason and direction.
	Drops      uint32
	DropReason string
	DropDir    events.DropDir
}

// dropped says the attempt's drops in words ("" if none), e.g. "2 SYNs
// dropped on this host (NETFILTER_DROP, sent)".
func (a *Attempt) dropped() string {
	if a.Drops == 0 {
		return ""
	}
	return drops.Cause(a.Drops, true, a.DropReason, a.DropDir)
}

// Cause says in words what happened on the wire, e.g. "3 SYNs over 7.0s,
// no reply" (the kernel gave up: ETIMEDOUT), "RST received after 0.2ms"
// or "closed by the application after 56.4ms, no reply": what socktrace
// saw, not a guess at why. Packets of the attempt dropped on this host
// say so: "6 SYNs dropped on this host (NETFILTER_DROP, sent)" when
// every SYN was, else after what happened, e.g. "3 SYNs over 7.0s, 3
// SYN-ACKs dropped on this host (NETFILTER_DROP, received)".
func (a *Attempt) Cause() string {
	d := a.dropped()
	if d == "" {
		return a.wire()
	}
	// Every SYN died here: "no reply" would send the reader beyond.
	allSent := a.DropDir == events.DropSent && int(a.Drops) >= a.SYNs
	switch {
	case a.Outcome == Timeout && allSent:
		return d
	case a.Outcome == Timeout:
		return a.syns() + ", " + d
	case a.Outcome == Aborted && allSent && a.closedByApp() && a.SpanKnown:
		return "closed by the application after " + span(a.Span) + ", " + d
	}
	return a.wire() + ", " + d
}

// closedByApp: the attempt ended with no error and no reset, the
// application closed the socket.
func (a *Attempt) closedByApp() bool { return a.Outcome == Aborted && !a.RstReceived && a.Err == 0 }

// syns is "3 SYNs over 7.0s".
func (a *Attempt) syns() string {
	s := fmt.Sprintf("%d SYN", a.SYNs)
	if a.SYNs != 1 {
		s += "s"
	}
	if a.SpanKnown {
		s += " over " + span(a.Span)
	}
	return s
}

// wire says what happened on the wire, drops aside.
func (a *Attempt) wire() string {
	syns := a.syns
	switch a.Outcome {
	case Established:
		if a.SYNs > 1 {
			return "connected after " + syns()
		}
		return "connected"
	case Refused:
		if a.SpanKnown {
			return "RST received after " + span(a.Span)
		}
		return "RST received"
	case Timeout:
		return syns() + ", no reply"
	case Unreachable:
		return unix.ErrnoName(unix.Errno(a.Err)) + " (ICMP or no route) after " + syns()
	}
	if a.RstReceived {
		return "RST received after " + syns()
	}
	if a.Err != 0 {
		name := unix.ErrnoName(unix.Errno(a.Err))
		if name == "" {
			name = fmt.Sprintf("error %d", a.Err)
		}
		return name + " after " + syns()
	}
	// No error: the application closed the socket (or exited). Why (its
	// own timeout, a signal, a shutdown) is not for socktrace to say.
	if a.SpanKnown {
		s := "closed by the application after " + span(a.Span) + ", no reply"
		if a.SYNs > 1 {
			s += fmt.Sprintf(" to %d SYNs", a.SYNs)
		}
		return s
	}
	return "closed by the application before a reply"
}

func span(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// handshakes keeps the last handshake times of a destination, for
// percentiles like tcpconnlat's.
type handshakes struct {
	ring [handshakeWindow]time.Duration
	n    int // samples kept, up to the window
	next int
}

// handshakeWindow: the percentiles are of the last this many handshakes.
const handshakeWindow = 128

func (h *handshakes) add(d time.Duration) {
	h.ring[h.next] = d
	h.next = (h.next + 1) % handshakeWindow
	if h.n < handshakeWindow {
		h.n++
	}
}

// HandshakePercentile returns the p-th percentile (0 < p <= 100) of the
// last handshakes (up to 128), and how many there were.
func (d *Dest) HandshakePercentile(p float64) (time.Duration, int) {
	h := &d.handshakes
	if h.n == 0 {
		return 0, 0
	}
	xs := append([]time.Duration(nil), h.ring[:h.n]...)
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	i := int(math.Ceil(p/100*float64(len(xs)))) - 1
	if i < 0 {
		i = 0
	}
	return xs[i], len(xs)
}

// Failed is the number of attempts that failed.
func (d *Dest) Failed() uint64 {
	var n uint64
	for _, o := range Failures {
		n += d.Failures[o]
	}
	return n
}

// AlertKind says what an alert is about.
type AlertKind uint8

const (
	TurnedFailing AlertKind = iota + 1 // the failure streak reached the threshold
	Recovered                          // a failing destination accepted a connection
	StaleDNS                           // connects go to an address its name no longer resolves to
)

// Alerts about listeners (package listeners), numbered apart.
const (
	ListenOverflow  AlertKind = 32 + iota // a listener's accept queue overflowed: it dropped SYNs since the last poll
	ListenRecovered                       // an overflowing listener dropped nothing for a while, or closed
)

func (k AlertKind) String() string {
	switch k {
	case TurnedFailing:
		return "failing"
	case Recovered:
		return "recovered"
	case StaleDNS:
		return "stale-dns"
	case ListenOverflow:
		return "listen-overflow"
	case ListenRecovered:
		return "listen-recovered"
	}
	return "unknown"
}

// Alert is raised when a destination turns failing or recovers.
type Alert struct {
	Kind AlertKind
	Time time.Time
	Dest Dest // a copy, as it was when the alert was raised
	// Failed: for Recovered, the failures of the streak that ended, and
	// how long it lasted.
	Failed    uint64
	FailedFor time.Duration
	// Stale: for StaleDNS, the name's answer that no longer holds the
	// address, and why it is raised.
	Stale *Stale
	// Listen: for ListenOverflow and ListenRecovered, the listener (Dest
	// is unused).
	Listen *listeners.Event
	// Listener: for TurnedFailing, the local listener the destination
	// reaches, when it is dropping SYNs (its accept queue full).
	Listener *listeners.State
}

// Stale is the evidence of a stale DNS entry.
type Stale struct {
	Origin  *dnscache.Origin     // the answer the owner connects from
	Current *dnscache.Resolution // the name's latest answer, without the address
	// Reason: "failing" (connects to the address fail) or "expired" (its
	// TTL ran out long ago while the name moved on).
	Reason string
}

// Options are the analysis thresholds.
type Options struct {
	// FailAfter consecutive failed attempts make a destination failing.
	FailAfter int
	// MaxDests bounds the destinations remembered; the least recently
	// attempted is forgotten first (failing ones last).
	MaxDests int
}

// Defaults for Options.
const (
	DefaultFailAfter = 3
	DefaultMaxDests  = 4096
)

// Connects follows connect attempts, destination by destination.
type Connects struct {
	opt     Options
	dests   map[DestKey]*list.Element // of *Dest, most recent at the front
	lru     *list.List
	evicted uint64
	// attempts in flight, by socket; a socket counts once.
	// (By value: an attempt a connect is no allocation.)
	inflight map[*timeline.Row]attempt
}

type attempt struct {
	dest    *Dest
	began   time.Time
	atLeast bool // began before the trace: began is when the trace did
}

// NewConnects returns an empty tracker.
func NewConnects(o Options) *Connects {
	if o.FailAfter <= 0 {
		o.FailAfter = DefaultFailAfter
	}
	if o.MaxDests <= 0 {
		o.MaxDests = DefaultMaxDests
	}
	return &Connects{opt: o, dests: map[DestKey]*list.Element{}, lru: list.New(), inflight: map[*timeline.Row]attempt{}}
}

func (c *Connects) dest(k DestKey) *Dest {
	if e, ok := c.dests[k]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*Dest)
	}
	for len(c.dests) >= c.opt.MaxDests {
		c.evictOne()
	}
	d := &Dest{DestKey: k}
	c.dests[k] = c.lru.PushFront(d)
	return d
}

// evictOne forgets the least recently attempted destination that is not
// failing and has nothing in flight, or else the least recent of all.
func (c *Connects) evictOne() {
	victim := c.lru.Back()
	for e := c.lru.Back(); e != nil; e = e.Prev() {
		if d := e.Value.(*Dest); !d.Failing && d.InFlight == 0 {
			victim = e
			break
		}
	}
	d := victim.Value.(*Dest)
	for r, x := range c.inflight {
		if x.dest == d {
			delete(c.inflight, r)
		}
	}
	delete(c.dests, d.DestKey)
	c.lru.Remove(victim)
	c.evicted++
}

// Pending adds a socket found in syn-sent by the snapshot: an attempt
// already in flight when the trace began.
func (c *Connects) Pending(r *timeline.Row, at time.Time) {
	if _, ok := c.inflight[r]; r.State != tcpstate.SynSent || ok {
		return
	}
	c.start(r, DestKey{r.Netns, r.Dst, r.DPort}, at, true, r.OwnerKnown, r.OwnerPID, r.OwnerComm, r.OwnerID)
}

func (c *Connects) start(r *timeline.Row, k DestKey, at time.Time, atLeast, known bool, pid uint32, comm string, owner *identity.Identity) attempt {
	d := c.dest(k)
	d.Attempts++
	d.InFlight++
	if d.FirstAttempt.IsZero() {
		d.FirstAttempt = at
	}
	d.LastAttempt = at
	if known {
		d.OwnerKnown, d.PID, d.Comm, d.Owner = true, pid, comm, owner
	}
	if r.DNS != nil {
		d.DNS = r.DNS
	}
	a := attempt{dest: d, began: at, atLeast: atLeast}
	c.inflight[r] = a
	return a
}

// Observe follows one transition of the socket r (the row timeline.Apply
// returned for it; the transition's owner already filled in). It returns
// an alert when the transition turned its destination failing or
// recovered it, else nil.
func (c *Connects) Observe(tr *record.Transition, r *timeline.Row) *Alert {
	if tr.Old == tcpstate.Close && tr.New == tcpstate.SynSent {
		if old, ok := c.inflight[r]; ok { // a reused row: should not happen
			old.dest.InFlight--
			delete(c.inflight, r)
		}
		c.start(r, DestKey{tr.Netns, tr.Dst, tr.DPort}, tr.Time, false, tr.OwnerKnown, tr.OwnerPID, tr.OwnerComm, tr.OwnerID)
		return nil
	}
	if tr.Old != tcpstate.SynSent {
		if tr.New == tcpstate.Close {
			c.Forget(r) // its syn-sent -> ... was lost
			if r.Active {
				c.closed(tr)
			}
		}
		return nil
	}
	at, ok := c.inflight[r]
	if !ok {
		// The attempt began before the trace and the snapshot did not
		// list it (--no-snapshot, or a filtered snapshot): count it now.
		began := tr.Time
		if tr.InOldKnown {
			began = tr.Time.Add(-tr.InOld)
		}
		at = c.start(r, DestKey{tr.Netns, tr.Dst, tr.DPort}, began, !tr.InOldKnown, tr.OwnerKnown, tr.OwnerPID, tr.OwnerComm, tr.OwnerID)
	} else if e, ok := c.dests[at.dest.DestKey]; ok {
		c.lru.MoveToFront(e)
	}
	d := at.dest
	delete(c.inflight, r)
	d.InFlight--
	if tr.OwnerKnown {
		d.OwnerKnown, d.PID, d.Comm, d.Owner = true, tr.OwnerPID, tr.OwnerComm, tr.OwnerID
	}
	if tr.DNS != nil {
		d.DNS = tr.DNS
	}

	d.SynRetrans += uint64(tr.SynRetrans)
	d.Last = Attempt{SYNs: 1 + int(tr.SynRetrans), Span: tr.InOld, SpanKnown: tr.InOldKnown,
		RstReceived: tr.RstReceived, Err: tr.SkErr}
	if tr.Drops > 0 {
		d.Last.Drops, d.Last.DropReason, d.Last.DropDir = tr.Drops, tr.DropReasonName, tr.DropDir
		d.Drops += uint64(tr.Drops)
		d.DropReason, d.DropDir = tr.DropReasonName, tr.DropDir
	}
	if tr.New != tcpstate.Close {
		// syn-sent -> established (or, rarely, syn-recv on a
		// simultaneous open): the handshake went through.
		d.Last.Outcome = Established
		if tr.InOldKnown {
			d.handshakes.add(tr.InOld)
		}
		d.Successes++
		d.LastOutcome = Established
		d.LastSuccess = tr.Time
		d.LastConnect = 0
		if tr.InOldKnown {
			d.LastConnect = tr.InOld
		}
		var a *Alert
		var bstreak uint64
		if b := d.backendOf(tr); b != nil {
			bstreak = b.Streak
			b.ended(Established, at.began, c.opt.FailAfter)
		}
		failingB := d.backendFailing()
		if d.Failing && failingB == nil {
			a = &Alert{Kind: Recovered, Time: tr.Time, Failed: max(d.Streak, bstreak), FailedFor: tr.Time.Sub(d.FailingSince)}
			d.Failing = false
		}
		d.Streak = 0
		d.FailingSince, d.FailingSinceAtLeast = time.Time{}, false
		if failingB != nil {
			// Another backend still fails: so does the destination.
			d.FailingSince = failingB.FailingSince
		}
		if a != nil {
			a.Dest = d.clone()
		}
		return a
	}

	o := OutcomeOf(tr.SkErr)
	d.Last.Outcome = o
	if tr.RstReceived {
		d.ResetsReceived++
	}
	d.Failures[o]++
	d.LastOutcome = o
	if d.Streak == 0 {
		d.FailingSince, d.FailingSinceAtLeast = at.began, at.atLeast
	}
	d.Streak++
	var turned *Backend
	if b := d.backendOf(tr); b != nil && b.ended(o, at.began, c.opt.FailAfter) {
		turned = b
	}
	if !d.Failing && (d.Streak >= uint64(c.opt.FailAfter) || turned != nil) {
		d.Failing = true
		if turned != nil && turned.FailingSince.Before(d.FailingSince) {
			d.FailingSince = turned.FailingSince
		}
		return &Alert{Kind: TurnedFailing, Time: tr.Time, Dest: d.clone()}
	}
	return nil
}

// backendOf is the entry of the backend tr's attempt went to, nil when
// nothing translated its destination (or there is no room).
func (d *Dest) backendOf(tr *record.Transition) *Backend {
	if !tr.Actual.IsValid() {
		return nil
	}
	return d.backend(tr.Actual)
}

// closed adds what a connection that closed moved to its destination.
func (c *Connects) closed(tr *record.Transition) {
	e, ok := c.dests[DestKey{tr.Netns, tr.Dst, tr.DPort}]
	if !ok {
		return
	}
	d := e.Value.(*Dest)
	if tr.RstReceived {
		d.ResetsReceived++
	}
	if tr.RstSent {
		d.ResetsSent++
	}
	if tr.TCPStats {
		d.BytesAcked += tr.BytesAcked
		d.BytesReceived += tr.BytesReceived
		if tr.TotalRetrans > uint32(tr.SynRetrans) {
			d.Retrans += uint64(tr.TotalRetrans - uint32(tr.SynRetrans))
		}
	}
}

// Forget drops a socket that closed without the tracker seeing how its
// attempt ended (events lost): it is no longer in flight.
func (c *Connects) Forget(r *timeline.Row) {
	if a, ok := c.inflight[r]; ok {
		a.dest.InFlight--
		delete(c.inflight, r)
	}
}

// Dests returns copies of the destinations, failing ones first (longest
// streak first), then by attempts.
func (c *Connects) Dests() []Dest {
	out := make([]Dest, 0, len(c.dests))
	for e := c.lru.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*Dest).clone())
	}
	sortDests(out)
	return out
}

// Evicted is how many destinations were forgotten to stay within MaxDests.
func (c *Connects) Evicted() uint64 { return c.evicted }

// Lookup returns a copy of one destination.
func (c *Connects) Lookup(k DestKey) (Dest, bool) {
	if e, ok := c.dests[k]; ok {
		return e.Value.(*Dest).clone(), true
	}
	return Dest{}, false
}
