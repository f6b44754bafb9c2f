package output

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/safetext"
)

// Alerts and summaries are rare, so they go through encoding/json; the
// struct field order is the order of the keys, "type" first.

type jsonFailures struct {
	Refused     uint64 `json:"refused"`
	Timeout     uint64 `json:"timeout"`
	Unreachable uint64 `json:"unreachable"`
	Aborted     uint64 `json:"aborted"`
}

type jsonDest struct {
	Netns     uint32  `json:"netns"`
	NetnsName *string `json:"netns_name"`
	Daddr     string  `json:"daddr"`
	Dport     uint16  `json:"dport"`
	DNSName   *string `json:"dns_name"`
	PID       *uint32 `json:"pid"`
	Comm      *string `json:"comm"`
	jsonIdentity
	Status       string       `json:"status"`
	Attempts     uint64       `json:"attempts"`
	Successes    uint64       `json:"successes"`
	Failed       uint64       `json:"failed"`
	Failures     jsonFailures `json:"failures"`
	Streak       uint64       `json:"streak"`
	InFlight     int          `json:"in_flight"`
	LastOutcome  *string      `json:"last_outcome"`
	LastConnect  *int64       `json:"last_connect_ns"`
	FirstAttempt *string      `json:"first_attempt"`
	LastAttempt  *string      `json:"last_attempt"`
	LastSuccess  *string      `json:"last_success"`
	FailingSince *string      `json:"failing_since"`
	// FailingSinceAtLeast: the streak's first attempt began before the
	// trace, so before failing_since.
	FailingBefore bool `json:"failing_since_is_trace_start"`
	// On the wire: the last attempt that ended, and the totals.
	LastCause      *string `json:"last_cause"`
	LastSYNs       *int    `json:"last_syns"`
	LastSpan       *int64  `json:"last_syn_sent_ns"`
	SynRetrans     uint64  `json:"syn_retransmits"`
	ResetsReceived uint64  `json:"resets_received"`
	ResetsSent     uint64  `json:"resets_sent"`
	Retrans        uint64  `json:"retransmits"`
	BytesAcked     uint64  `json:"bytes_acked"`
	BytesReceived  uint64  `json:"bytes_received"`
	Handshakes     int     `json:"handshakes"` // of the percentiles: the last 128 at most
	HandshakeP50   *int64  `json:"handshake_p50_ns"`
	HandshakeP99   *int64  `json:"handshake_p99_ns"`
	// Packets of the attempts dropped on this host, the last drop's
	// reason and direction (null without drops).
	Drops         uint64  `json:"drops"`
	DropReason    *string `json:"drop_reason"`
	DropDirection *string `json:"drop_direction"`
	// Backends: where this host's NAT sent the attempts, and how they
	// went there; absent when nothing translated the destination.
	Backends []jsonBackend `json:"backends,omitempty"`
}

// jsonBackend is one NAT backend of a destination.
type jsonBackend struct {
	ActualDaddr string       `json:"actual_daddr"`
	ActualDport uint16       `json:"actual_dport"`
	Status      string       `json:"status"` // ok, failing
	Attempts    uint64       `json:"attempts"`
	Successes   uint64       `json:"successes"`
	Failed      uint64       `json:"failed"`
	Failures    jsonFailures `json:"failures"`
	Streak      uint64       `json:"streak"`
	LastOutcome string       `json:"last_outcome"`
}

func backendsJSON(bs []analysis.Backend) []jsonBackend {
	var out []jsonBackend
	for i := range bs {
		b := &bs[i]
		j := jsonBackend{ActualDaddr: b.Addr.Addr().String(), ActualDport: b.Addr.Port(), Status: "ok",
			Attempts: b.Attempts, Successes: b.Successes, Failed: b.Failed(),
			Failures: jsonFailures{b.Failures[analysis.Refused], b.Failures[analysis.Timeout],
				b.Failures[analysis.Unreachable], b.Failures[analysis.Aborted]},
			Streak: b.Streak, LastOutcome: b.LastOutcome.String()}
		if b.Failing {
			j.Status = "failing"
		}
		out = append(out, j)
	}
	return out
}

func timePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(TimeLayout)
	return &s
}

func (j *JSON) destJSON(d *analysis.Dest) jsonDest {
	return destJSON(d, netnsNameOf(j.netnsName, d.Netns))
}

func destJSON(d *analysis.Dest, netnsName string) jsonDest {
	j := jsonDest{
		Netns: d.Netns, Daddr: d.Addr.String(), Dport: d.Port, Status: "ok",
		Attempts: d.Attempts, Successes: d.Successes, Failed: d.Failed(),
		Failures: jsonFailures{d.Failures[analysis.Refused], d.Failures[analysis.Timeout],
			d.Failures[analysis.Unreachable], d.Failures[analysis.Aborted]},
		Streak: d.Streak, InFlight: d.InFlight,
		FirstAttempt: timePtr(d.FirstAttempt), LastAttempt: timePtr(d.LastAttempt),
		LastSuccess: timePtr(d.LastSuccess), FailingSince: timePtr(d.FailingSince),
		FailingBefore: d.FailingSinceAtLeast,
	}
	if d.Failing {
		j.Status = "failing"
	}
	if d.DNS != nil {
		j.DNSName = &d.DNS.Name
	}
	if netnsName != "" {
		j.NetnsName = &netnsName
	}
	if d.OwnerKnown {
		pid, comm := d.PID, d.Comm
		j.PID, j.Comm = &pid, &comm
		j.jsonIdentity = identityJSON(d.Owner)
	}
	if d.Successes+d.Failed() > 0 {
		o := d.LastOutcome.String()
		j.LastOutcome = &o
	}
	if d.LastConnect > 0 {
		n := d.LastConnect.Nanoseconds()
		j.LastConnect = &n
	}
	if d.Successes+d.Failed() > 0 {
		cause, syns := d.Last.Cause(), d.Last.SYNs
		j.LastCause, j.LastSYNs = &cause, &syns
		if d.Last.SpanKnown {
			n := d.Last.Span.Nanoseconds()
			j.LastSpan = &n
		}
	}
	j.SynRetrans, j.ResetsReceived, j.ResetsSent, j.Retrans = d.SynRetrans, d.ResetsReceived, d.ResetsSent, d.Retrans
	j.BytesAcked, j.BytesReceived = d.BytesAcked, d.BytesReceived
	if j.Drops = d.Drops; d.Drops > 0 {
		reason, dir := d.DropReason, d.DropDir.String()
		j.DropDirection = &dir
		if reason != "" {
			j.DropReason = &reason
		}
	}
	j.Backends = backendsJSON(d.Backends)
	if p50, n := d.HandshakePercentile(50); n > 0 {
		p99, _ := d.HandshakePercentile(99)
		a, b := p50.Nanoseconds(), p99.Nanoseconds()
		j.Handshakes, j.HandshakeP50, j.HandshakeP99 = n, &a, &b
	}
	return j
}

type jsonAlert struct {
	Type  string `json:"type"`
	Time  string `json:"time"`
	Alert string `json:"alert"`
	jsonDest
	// Recovered: the failures of the streak that ended and how long it
	// lasted.
	StreakFailed   *uint64 `json:"streak_failed,omitempty"`
	StreakDuration *int64  `json:"streak_duration_ns,omitempty"`
	*jsonStale
	// Failing: the local listener that drops the SYNs, if any.
	Listener *jsonDroppingListener `json:"listener,omitempty"`
}

// jsonStale: the fields of a stale-dns alert.
type jsonStale struct {
	Reason        string   `json:"reason"` // failing, expired
	ResolvedAt    string   `json:"resolved_at"`
	TTL           uint32   `json:"ttl_s"`
	ResolvedBy    *uint32  `json:"resolved_by_pid"`
	Server        string   `json:"dns_server"`
	CurrentAddrs  []string `json:"current_addrs"`
	CurrentSeenAt string   `json:"current_seen_at"`
	CurrentBy     string   `json:"current_seen_by"` // socktrace (its own lookup) or comm/pid
}

// Alert writes a {"type":"alert",...} record.
func (j *JSON) Alert(a *analysis.Alert) error {
	if a.Listen != nil {
		return j.listenAlert(a)
	}
	rec := jsonAlert{Type: "alert", Time: a.Time.UTC().Format(TimeLayout), Alert: a.Kind.String(), jsonDest: j.destJSON(&a.Dest)}
	if a.Kind == analysis.Recovered {
		n, d := a.Failed, a.FailedFor.Nanoseconds()
		rec.StreakFailed, rec.StreakDuration = &n, &d
	}
	if l := a.Listener; l != nil {
		rec.Listener = droppingListenerJSON(l)
		cause := droppingCause(l, plainEndpoint(l.Addr, l.Port))
		if rec.LastCause != nil {
			cause = *rec.LastCause + "; " + cause
		}
		rec.LastCause = &cause
	}
	if st := a.Stale; st != nil {
		o, c := st.Origin, st.Current
		s := &jsonStale{Reason: st.Reason, ResolvedAt: o.At.UTC().Format(TimeLayout), TTL: o.TTL,
			CurrentAddrs: []string{}, CurrentSeenAt: c.At.UTC().Format(TimeLayout), CurrentBy: seenBy(c)}
		if o.PID != 0 {
			pid := o.PID
			s.ResolvedBy = &pid
		}
		if o.Server.IsValid() {
			s.Server = o.Server.String()
		}
		for _, a := range c.Addrs {
			s.CurrentAddrs = append(s.CurrentAddrs, a.String())
		}
		rec.jsonStale = s
		// The destination's name is the one of this answer.
		rec.DNSName = &o.Name
	}
	return j.encode(rec)
}

type jsonCount struct {
	Netns   uint32 `json:"netns"`
	Daddr   string `json:"daddr"`
	Dport   uint16 `json:"dport"`
	Sockets int    `json:"sockets"`
}

type jsonLeak struct {
	PID  *uint32 `json:"pid"`
	Comm *string `json:"comm"`
	jsonIdentity
	Sockets       int         `json:"sockets"`
	OldestNs      int64       `json:"oldest_ns"`
	OldestAtLeast bool        `json:"oldest_at_least"`
	Peers         []jsonCount `json:"peers"`
}

type jsonListener struct {
	Netns uint32  `json:"netns"`
	Saddr string  `json:"saddr"`
	Sport uint16  `json:"sport"`
	PID   *uint32 `json:"pid"`
	Comm  *string `json:"comm"`
	jsonIdentity
	AcceptQ uint32 `json:"accept_q"`
	Backlog uint32 `json:"backlog"`
	SynRecv int    `json:"syn_recv"`
	Full    bool   `json:"full"`
	// Drops: SYNs it dropped during the trace (accept queue full);
	// Overflowing: it is dropping now.
	Drops       uint64 `json:"drops"`
	Overflowing bool   `json:"overflowing"`
}

type jsonHistory struct {
	Live      int    `json:"live"`
	Closed    int    `json:"closed"`
	ClosedCap int    `json:"closed_cap"`
	Evicted   uint64 `json:"evicted"`
	// Untracked: sockets not remembered, the live table being full;
	// KernelForgot: transitions the kernel's socket map had forgotten.
	Untracked    uint64 `json:"untracked"`
	KernelForgot uint64 `json:"kernel_forgot"`
}

type jsonSummary struct {
	Type                string         `json:"type"`
	Time                string         `json:"time"`
	Since               string         `json:"since"`
	Destinations        []jsonDest     `json:"destinations"`
	DestinationsEvicted uint64         `json:"destinations_evicted"`
	CloseWaitAfterNs    int64          `json:"close_wait_after_ns"`
	CloseWait           []jsonLeak     `json:"close_wait"`
	TimeWait            []jsonCount    `json:"time_wait"`
	Listeners           []jsonListener `json:"listeners"`
	History             jsonHistory    `json:"history"`
	Lost                uint64         `json:"lost"`
	Skipped             uint64         `json:"skipped"`
	DNS                 *jsonDNS       `json:"dns"`
	Ring                *jsonRing      `json:"ring"`
	Recording           *jsonRecording `json:"recording"`
	FlightRecorder      *jsonFlight    `json:"flight_recorder"`
}

// jsonFlight: the flight recorder's memory and the files it wrote (null
// without --flight-recorder, and in a replay).
type jsonFlight struct {
	Dir        string            `json:"dir"`
	Bytes      int64             `json:"bytes"`
	SizeBytes  int64             `json:"size_bytes"`
	Records    int               `json:"records"`
	Dropped    uint64            `json:"dropped"`
	Recordings map[string]uint64 `json:"recordings"`
	Removed    uint64            `json:"files_removed"`
	Errors     uint64            `json:"errors"`
}

// jsonRecording: the recording (-w), and the write errors that paused it
// (null without -w, and in a replay).
type jsonRecording struct {
	File        string  `json:"file"`
	Status      string  `json:"status"` // recording or paused
	PausedSince *string `json:"paused_since"`
	Error       *string `json:"error"`
	Transitions uint64  `json:"transitions"`
	Bytes       int64   `json:"bytes"`
	Files       int     `json:"files"`
	Errors      uint64  `json:"errors"`
	Dropped     uint64  `json:"dropped"`
}

// jsonRing: the ring buffer's size and the most it held at once (null in
// a replay).
type jsonRing struct {
	SizeBytes int `json:"size_bytes"`
	PeakBytes int `json:"peak_bytes"`
}

// jsonDNS: what passive DNS took in and the bounds it met (null
// without passive DNS).
type jsonDNS struct {
	Answers           uint64 `json:"answers"`
	Malformed         uint64 `json:"malformed"`
	Cut               uint64 `json:"cut"`
	Lost              uint64 `json:"lost"`
	Addrs             int    `json:"addrs"`
	Names             int    `json:"names"`
	AddrsEvicted      uint64 `json:"addrs_evicted"`
	NamesEvicted      uint64 `json:"names_evicted"`
	StaleDestinations int    `json:"stale_destinations"`
}

func counts(cs []analysis.Count) []jsonCount {
	out := make([]jsonCount, 0, len(cs))
	for _, c := range cs {
		out = append(out, jsonCount{c.Netns, c.Addr.String(), c.Port, c.N})
	}
	return out
}

func owner(known bool, pid uint32, comm string) (*uint32, *string) {
	if !known {
		return nil, nil
	}
	return &pid, &comm
}

// Summary writes a {"type":"summary",...} record.
func (j *JSON) Summary(s *analysis.Summary) error {
	rec := jsonSummary{
		Type: "summary", Time: s.Time.UTC().Format(TimeLayout), Since: s.Since.UTC().Format(TimeLayout),
		Destinations: make([]jsonDest, 0, len(s.Dests)), DestinationsEvicted: s.DestsEvicted,
		CloseWaitAfterNs: s.CloseWaitAfter.Nanoseconds(),
		CloseWait:        make([]jsonLeak, 0, len(s.CloseWait)),
		TimeWait:         counts(s.TimeWait),
		Listeners:        make([]jsonListener, 0, len(s.Listeners)),
		History: jsonHistory{s.History.Live, s.History.Closed, s.History.ClosedCap, s.History.Evicted,
			s.History.Untracked, s.History.KernelForgot},
		Lost:    s.Lost,
		Skipped: s.Skipped,
	}
	if d := s.DNS; d != nil {
		rec.DNS = &jsonDNS{d.Answers, d.Malformed, d.Cut, d.Lost, d.Addrs, d.Names, d.AddrsEvicted, d.NamesEvicted, d.Stale}
	}
	if r := s.Ring; r != nil {
		rec.Ring = &jsonRing{r.Size, r.Peak}
	}
	if r := s.Recording; r != nil {
		jr := &jsonRecording{File: r.File, Status: "recording", Transitions: r.Transitions, Bytes: r.Bytes, Files: r.Files,
			Errors: r.Errors, Dropped: r.Dropped}
		if r.Paused {
			since, e := r.Since.UTC().Format(TimeLayout), r.Err
			jr.Status, jr.PausedSince, jr.Error = "paused", &since, &e
		}
		rec.Recording = jr
	}
	if f := s.Flight; f != nil {
		rec.FlightRecorder = &jsonFlight{Dir: f.Dir, Bytes: f.Bytes, SizeBytes: f.Size, Records: f.Records, Dropped: f.Dropped,
			Recordings: f.Recordings, Removed: f.Removed, Errors: f.Errors}
	}
	for i := range s.Dests {
		rec.Destinations = append(rec.Destinations, j.destJSON(&s.Dests[i]))
	}
	for _, l := range s.CloseWait {
		jl := jsonLeak{Sockets: l.Count, OldestNs: l.Oldest.Nanoseconds(), OldestAtLeast: l.OldestAtLeast, Peers: counts(l.Peers)}
		jl.PID, jl.Comm = owner(l.OwnerKnown, l.PID, l.Comm)
		jl.jsonIdentity = identityJSON(l.Owner)
		rec.CloseWait = append(rec.CloseWait, jl)
	}
	for _, l := range s.Listeners {
		jl := jsonListener{Netns: l.Netns, Saddr: l.Addr.String(), Sport: l.Port, AcceptQ: l.AcceptQ, Backlog: l.Backlog, SynRecv: l.SynRecv, Full: l.Full,
			Drops: l.Drops, Overflowing: l.Overflowing}
		jl.PID, jl.Comm = owner(l.OwnerKnown, l.PID, l.Comm)
		jl.jsonIdentity = identityJSON(l.Owner)
		rec.Listeners = append(rec.Listeners, jl)
	}
	return j.encode(rec)
}

func (j *JSON) encode(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = j.w.Write(b)
	return err
}

// process formats an owner as comm/pid, or "-".
// process is "comm/pid", then who the owner is where known:
// "java/4711 pod:shop/checkout-7d9f8b6c5-x2x4z/checkout", "unit:...".
func process(known bool, pid uint32, comm string, id *identity.Identity) string {
	if !known {
		return "-"
	}
	p := safetext.Escape(comm) + "/" + strconv.FormatUint(uint64(pid), 10)
	if w := id.Label(); w != "" {
		return p + " " + safetext.Escape(w)
	}
	return p
}

// failureList is "2 timeout, 1 refused": the causes, most first.
func failureList(d *analysis.Dest) string {
	var parts []string
	for _, o := range analysis.Failures {
		if n := d.Failures[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Age formats a duration for people: 850ms, 4.2s, 3m12s, 2h5m.
func Age(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return d.Truncate(time.Second).String()
	default:
		return d.Truncate(time.Minute).String()
	}
}

// failingSince is "03:12:01 (2m5s)", or "before 03:12:01 (over 2m5s)"
// when the first failed attempt began before the trace.
func failingSince(d *analysis.Dest, now time.Time) string {
	if d.FailingSinceAtLeast {
		return "before " + clock(d.FailingSince) + " (over " + Age(now.Sub(d.FailingSince)) + ")"
	}
	return clock(d.FailingSince) + " (" + Age(now.Sub(d.FailingSince)) + ")"
}

// dest is the destination's address, and the network namespace it was
// reached from when it has a name: "10.0.0.7:9092 in pod:shop/x".
func (t *Table) dest(d *analysis.Dest) string {
	s := t.peer(d.Addr, d.Port, d.DNS)
	// A pod's or an ip netns name; not a process living there (the owner
	// is shown beside), nor the host's.
	if n := netnsNameOf(t.netnsName, d.Netns); strings.HasPrefix(n, "pod:") || strings.HasPrefix(n, "netns:") {
		s += " in " + safetext.Escape(n)
	}
	return s
}

// backend formats a NAT backend as the table does an endpoint.
func (t *Table) backend(a netip.AddrPort) string { return t.endpoint(a.Addr(), a.Port()) }

func clock(t time.Time) string { return t.Local().Format("15:04:05") }

func (t *Table) write(b []byte) error {
	_, err := t.w.Write(b)
	return err
}

// Alert writes a line into the stream that stands out.
func (t *Table) Alert(a *analysis.Alert) error {
	if a.Listen != nil {
		return t.listenAlert(a)
	}
	d := &a.Dest
	b := a.Time.Local().AppendFormat(t.buf[:0], "15:04:05.000000")
	dest := t.dest(d)
	switch a.Kind {
	case analysis.TurnedFailing:
		last := "never"
		if !d.LastSuccess.IsZero() {
			last = clock(d.LastSuccess) + " (" + Age(a.Time.Sub(d.LastSuccess)) + " ago)"
		}
		cause := d.Last.Cause()
		if l := a.Listener; l != nil {
			cause += "; " + droppingCause(l, t.endpoint(l.Addr, l.Port))
		}
		if via := d.BackendsText(t.backend); via != "" {
			// Through NAT: which backend fails, which answer.
			b = fmt.Appendf(b, " !! FAILING %s %s (%s): failing since %s; last success %s; last attempt: %s\n",
				dest, via, process(d.OwnerKnown, d.PID, d.Comm, d.Owner), failingSince(d, a.Time), last, cause)
			break
		}
		b = fmt.Appendf(b, " !! FAILING %s (%s): %d connects failed in a row (%s), failing since %s; last success %s; last attempt: %s\n",
			dest, process(d.OwnerKnown, d.PID, d.Comm, d.Owner), d.Streak, failureList(d), failingSince(d, a.Time), last, cause)
	case analysis.StaleDNS:
		b = fmt.Appendf(b, " !! STALE DNS %s\n", t.staleLine(a))
	case analysis.Recovered:
		b = fmt.Appendf(b, " ok RECOVERED %s (%s): connected in %s after %d failed connects over %s\n",
			dest, process(d.OwnerKnown, d.PID, d.Comm, d.Owner), Age(d.LastConnect), a.Failed, Age(a.FailedFor))
	}
	t.buf = b
	return t.write(b)
}

// seenBy says who got a name's latest answer: socktrace (its own
// lookup), comm/pid, or "-".
func seenBy(r *dnscache.Resolution) string {
	switch {
	case r.Self:
		return "socktrace"
	case r.PID != 0:
		return r.Comm + "/" + strconv.FormatUint(uint64(r.PID), 10)
	}
	return "-"
}

// staleLine is the sentence of a stale-dns alert: "java/13657 connects
// to 10.4.1.80:9092, which it got from kafka.example.com at 09:12:00
// (TTL 60s); kafka.example.com now resolves to 10.4.1.81 (seen 09:40:02
// by socktrace)".
func (t *Table) staleLine(a *analysis.Alert) string {
	d, st := &a.Dest, a.Stale
	o, c := st.Origin, st.Current
	who := "someone in its network namespace"
	if o.PID != 0 && (!d.OwnerKnown || o.PID == d.PID) {
		who = "it"
	} else if o.PID != 0 {
		who = safetext.Escape(o.Comm) + "/" + strconv.FormatUint(uint64(o.PID), 10)
	}
	now := "does not exist any more (NXDOMAIN)"
	if len(c.Addrs) > 0 {
		var as []string
		for _, x := range c.Addrs {
			as = append(as, x.String())
		}
		now = "now resolves to " + strings.Join(as, ", ")
	}
	name := safetext.Escape(o.Name)
	s := fmt.Sprintf("%s connects to %s, which %s got from %s at %s (TTL %ds); %s %s (seen %s by %s)",
		process(d.OwnerKnown, d.PID, d.Comm, d.Owner), t.endpoint(d.Addr, d.Port), who, name, clock(o.At), o.TTL,
		name, now, clock(c.At), safetext.Escape(seenBy(c)))
	if st.Reason == "expired" {
		s += fmt.Sprintf("; its TTL ran out %s ago", Age(a.Time.Sub(o.At.Add(time.Duration(o.TTL)*time.Second))))
	}
	return s
}

// colWidth is the width of a column of cells: the widest, at least min
// (in code points, as fmt pads).
func colWidth(min int, cells []string) int {
	for _, c := range cells {
		min = max(min, utf8.RuneCountInString(c))
	}
	return min
}

// destRows writes the destination table, its columns as wide as their
// widest cell (a destination "in netns:NAME", a pod's process).
func (t *Table) destRows(b *strings.Builder, ds []analysis.Dest, now time.Time) {
	dests, procs := make([]string, len(ds)), make([]string, len(ds))
	for i := range ds {
		d := &ds[i]
		dests[i], procs[i] = t.dest(d), process(d.OwnerKnown, d.PID, d.Comm, d.Owner)
	}
	dw, pw := colWidth(28, dests), colWidth(20, procs)
	fmt.Fprintf(b, "%-9s %-*s %-*s %8s %6s %6s %7s %7s %7s %7s %7s  %s\n",
		"STATUS", dw, "DESTINATION", pw, "PROCESS", "ATTEMPTS", "OK", "FAILED", "REFUSED", "TIMEOUT", "UNREACH", "ABORTED", "PENDING", "SINCE")
	for i := range ds {
		d := &ds[i]
		status, since := "ok", ""
		switch {
		case d.Failing:
			status = "FAILING"
			since = "failing since " + failingSince(d, now)
			if d.Streak > 0 { // (none: a NAT backend fails, the others answer)
				since += fmt.Sprintf(", %d in a row", d.Streak)
			}
		case d.Streak > 0:
			status = "flaky"
			since = fmt.Sprintf("%d failed in a row since %s", d.Streak, clock(d.FailingSince))
		}
		if d.LastSuccess.IsZero() {
			since = strings.TrimPrefix(since+"; never connected", "; ")
		} else {
			since = strings.TrimPrefix(since+"; last success "+clock(d.LastSuccess)+" ("+Age(now.Sub(d.LastSuccess))+" ago)", "; ")
		}
		if d.Last.Outcome != analysis.Established && d.Failed() > 0 {
			since += "; last: " + d.Last.Cause()
		}
		if p50, n := d.HandshakePercentile(50); n > 0 {
			p99, _ := d.HandshakePercentile(99)
			since += "; handshake p50 " + RTT(p50) + " p99 " + RTT(p99)
		}
		if d.SynRetrans > 0 {
			since += fmt.Sprintf("; %d SYN rexmit", d.SynRetrans)
		}
		if via := d.BackendsText(t.backend); via != "" {
			since += "; " + via
		}
		if d.BytesAcked+d.BytesReceived > 0 {
			since += "; moved " + Bytes(d.BytesAcked) + "/" + Bytes(d.BytesReceived)
		}
		fmt.Fprintf(b, "%-9s %-*s %-*s %8d %6d %6d %7d %7d %7d %7d %7d  %s\n",
			status, dw, dests[i], pw, procs[i], d.Attempts, d.Successes, d.Failed(),
			d.Failures[analysis.Refused], d.Failures[analysis.Timeout], d.Failures[analysis.Unreachable], d.Failures[analysis.Aborted],
			d.InFlight, since)
	}
}

// Failures writes, at the end of a trace without --summary, the
// destinations whose connects failed, so that a failing one is never
// missed. It writes nothing when every connect went through.
func (t *Table) Failures(ds []analysis.Dest, now time.Time) error {
	var bad []analysis.Dest
	for _, d := range ds {
		if d.Failed() > 0 {
			bad = append(bad, d)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("\nCONNECT FAILURES BY DESTINATION (--summary for the whole picture)\n")
	t.destRows(&b, bad, now)
	return t.write([]byte(b.String()))
}

// Summary writes the destination, CLOSE_WAIT, TIME_WAIT and listener
// tables.
func (t *Table) Summary(s *analysis.Summary) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n=== socktrace summary at %s: traced %s since %s ===\n", clock(s.Time), Age(s.Time.Sub(s.Since)), clock(s.Since))

	fmt.Fprintf(&b, "\nCONNECT ATTEMPTS BY DESTINATION\n")
	if len(s.Dests) == 0 {
		b.WriteString("  (no connect attempts seen)\n")
	} else {
		t.destRows(&b, s.Dests, s.Time)
	}
	if s.DestsEvicted > 0 {
		fmt.Fprintf(&b, "  (%d quiet destinations forgotten to bound memory: --max-destinations)\n", s.DestsEvicted)
	}

	fmt.Fprintf(&b, "\nCLOSE-WAIT FOR %s OR LONGER (the peer closed; the application has not)\n", Age(s.CloseWaitAfter))
	if len(s.CloseWait) == 0 {
		b.WriteString("  (none)\n")
	} else {
		procs := make([]string, len(s.CloseWait))
		for i, l := range s.CloseWait {
			procs[i] = process(l.OwnerKnown, l.PID, l.Comm, l.Owner)
		}
		pw := colWidth(24, procs)
		fmt.Fprintf(&b, "%-*s %7s %9s  %s\n", pw, "PROCESS", "SOCKETS", "OLDEST", "PEERS")
		for i, l := range s.CloseWait {
			oldest := Age(l.Oldest)
			if l.OldestAtLeast {
				oldest = ">" + oldest
			}
			var peers []string
			for _, p := range l.Peers {
				peers = append(peers, fmt.Sprintf("%s (%d)", t.endpoint(p.Addr, p.Port), p.N))
			}
			fmt.Fprintf(&b, "%-*s %7d %9s  %s\n", pw, procs[i], l.Count, oldest, strings.Join(peers, ", "))
		}
	}

	fmt.Fprintf(&b, "\nTIME-WAIT BY DESTINATION\n")
	if len(s.TimeWait) == 0 {
		b.WriteString("  (none)\n")
	} else {
		dests := make([]string, len(s.TimeWait))
		for i, c := range s.TimeWait {
			dests[i] = t.endpoint(c.Addr, c.Port)
		}
		dw := colWidth(28, dests)
		fmt.Fprintf(&b, "%-*s %7s\n", dw, "DESTINATION", "SOCKETS")
		for i, c := range s.TimeWait {
			fmt.Fprintf(&b, "%-*s %7d\n", dw, dests[i], c.N)
		}
	}

	fmt.Fprintf(&b, "\nLISTENERS UNDER PRESSURE\n")
	if len(s.Listeners) == 0 {
		b.WriteString("  (none: no full accept queue, no handshakes pending)\n")
	} else {
		locals, procs := make([]string, len(s.Listeners)), make([]string, len(s.Listeners))
		for i, l := range s.Listeners {
			locals[i], procs[i] = t.endpoint(l.Addr, l.Port), process(l.OwnerKnown, l.PID, l.Comm, l.Owner)
		}
		lw, pw := colWidth(28, locals), colWidth(20, procs)
		fmt.Fprintf(&b, "%-*s %-*s %8s %7s %8s  %s\n", lw, "LOCAL", pw, "PROCESS", "ACCEPT-Q", "BACKLOG", "SYN-RECV", "")
		for i, l := range s.Listeners {
			note := ""
			if l.Full {
				note = "FULL: new connections are dropped; the application is not accepting fast enough"
			}
			if d := listenerNote(&l); d != "" {
				note = strings.TrimPrefix(note+"; "+d, "; ")
			}
			fmt.Fprintf(&b, "%-*s %-*s %8d %7d %8d  %s\n", lw, locals[i], pw, procs[i], l.AcceptQ, l.Backlog, l.SynRecv, note)
		}
	}
	fmt.Fprintf(&b, "\nhistory: %d live sockets, %d closed kept (cap %d), %d evicted", s.History.Live, s.History.Closed, s.History.ClosedCap, s.History.Evicted)
	if s.History.Untracked > 0 {
		fmt.Fprintf(&b, "; %d sockets NOT REMEMBERED: the live table was full (--max-sockets %d)", s.History.Untracked, s.History.MaxLive)
	}
	if s.History.KernelForgot > 0 {
		fmt.Fprintf(&b, "; %d transitions of sockets the kernel's map had forgotten (--bpf-max-sockets)", s.History.KernelForgot)
	}
	if s.Lost > 0 {
		fmt.Fprintf(&b, "; %d transitions LOST: the figures above may be short", s.Lost)
	}
	if s.Skipped > 0 {
		fmt.Fprintf(&b, "; %d state changes skipped by the kernel (of any socket)", s.Skipped)
	}
	b.WriteString("\n")
	if d := s.DNS; d != nil {
		fmt.Fprintf(&b, "dns: %d answers taken (%d malformed, %d cut short, %d LOST: ring buffer full), %d addresses and %d names kept (%d and %d forgotten for room), %d stale destinations\n",
			d.Answers, d.Malformed, d.Cut, d.Lost, d.Addrs, d.Names, d.AddrsEvicted, d.NamesEvicted, d.Stale)
	}
	if r := s.Ring; r != nil && r.Size > 0 {
		fmt.Fprintf(&b, "ring buffer: at most %s of %s held at once (%.1f%%; --ring-size)\n", bytesText(r.Peak), bytesText(r.Size), 100*float64(r.Peak)/float64(r.Size))
	}
	if r := s.Recording; r != nil {
		fmt.Fprintf(&b, "recording: %d transitions to %s (%s in %d file(s))", r.Transitions, safetext.Escape(r.File), bytesText(int(r.Bytes)), r.Files)
		if r.Errors > 0 {
			fmt.Fprintf(&b, "; PAUSED %d time(s) by write errors: %d transitions NOT RECORDED", r.Errors, r.Dropped)
		}
		if r.Paused {
			fmt.Fprintf(&b, "; paused since %s (%s): %s", clock(r.Since), Age(s.Time.Sub(r.Since)), safetext.Escape(r.Err))
		}
		b.WriteString("\n")
	}
	if f := s.Flight; f != nil {
		n := uint64(0)
		for _, c := range f.Recordings {
			n += c
		}
		fmt.Fprintf(&b, "flight recorder: %d records in %s of %s (--flight-recorder-size; %d oldest dropped for room), %d recording(s) written to %s, %d removed (--flight-max-files), %d failed\n",
			f.Records, bytesText(int(f.Bytes)), bytesText(int(f.Size)), f.Dropped, n, safetext.Escape(f.Dir), f.Removed, f.Errors)
	}
	return t.write([]byte(b.String()))
}

// bytesText is a size in B, KiB or MiB.
func bytesText(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}
