// Package report makes one self-contained HTML page from capture files
// (socktrace report): connect attempts per destination over time with
// the alerts, DNS answers and drops on the same axis, live sockets by
// state, the failing destinations' sockets as swimlanes, and the
// summary's tables. The files are replayed through the same pipeline as
// socktrace read (pipeline.ReadTo), so the analysis, alerts and causes
// are the ones read and the live run gave.
package report

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// Bounds of what the collector keeps, so that a capture of any size
// makes a page of bounded size. Marks are downsampled into columns;
// alerts are all kept.
const (
	// lanesPerDest: the most recent sockets of a destination kept as
	// swimlanes.
	lanesPerDest = 40
	// maxDNS: DNS answers kept (later ones counted).
	maxDNS = 20000
	// maxSamples: samples of the live sockets by state before halving.
	maxSamples = 2000
)

// attemptMark is one ended connect attempt.
type attemptMark struct {
	at      int64 // UnixNano
	outcome analysis.Outcome
}

// destData is what the collector keeps of one destination.
type destData struct {
	key      analysis.DestKey
	attempts []attemptMark
	drops    []int64 // UnixNano of drop events (packets) and attempts with drops
	failures uint64
	lanes    []*lane // closed sockets, the most recent lanesPerDest (a ring)
	next     int     // next slot of lanes once full
	omitted  uint64  // sockets whose lanes were not kept
	failing  bool    // an alert said failing at some point
	name     string  // its DNS name, if an attempt had one
}

// seg is a state a socket was in, from a time.
type seg struct {
	state tcpstate.State
	from  int64
}

// lane is one socket's life: its states from open to close.
type lane struct {
	cookie uint64
	dest   *destData
	segs   []seg
	end    int64 // 0: still open at the end
	owner  string
	cause  string // how its connect attempt ended, as the summary says it
	local  string
}

// stateSample is how many live sockets were in each state at a time.
type stateSample struct {
	at     int64
	counts [tcpstate.Last + 1]int32
}

// dnsAnswer is one DNS answer seen.
type dnsAnswer struct {
	at    time.Time
	name  string
	chain []string // the CNAMEs followed from name
	typ   string   // A, AAAA
	addrs []netip.Addr
	ttl   uint32
	rcode string
}

// alertItem is an alert with its line as the table prints it.
type alertItem struct {
	a    analysis.Alert
	text string
}

// lossItem is what the page does not show: transitions lost or
// skipped, packet events lost, a pause of the recording, a damaged file.
type lossItem struct {
	at   time.Time // zero: not known
	n    uint64
	what string
}

// recordedAlert is an alert the live run recorded in the capture (a
// flight recording's).
type recordedAlert struct {
	at      time.Time
	kind    string
	subject string
	trigger bool
}

// collector is the pipeline's writer for a report: it keeps, bounded,
// what the page shows.
type collector struct {
	hdr       capture.Header
	first     int64
	last      int64
	dests     map[analysis.DestKey]*destData
	live      map[uint64]tcpstate.State // cookie -> state
	lanes     map[uint64]*lane          // open sockets with a lane
	counts    [tcpstate.Last + 1]int32
	samples   []stateSample
	step      int64 // sampling step of samples (ns)
	dns       []dnsAnswer
	dnsMore   uint64
	alerts    []alertItem
	recorded  []recordedAlert
	losses    []lossItem
	summary   *analysis.Summary
	sumText   string
	packets   [events.KindDrop + 1]uint64
	trans     uint64
	snapSocks int

	text    *output.Table
	textBuf bytes.Buffer
	textW   *bufio.Writer
}

func newCollector() *collector {
	c := &collector{
		dests: map[analysis.DestKey]*destData{},
		live:  map[uint64]tcpstate.State{},
		lanes: map[uint64]*lane{},
		step:  int64(10 * time.Millisecond),
	}
	c.textW = bufio.NewWriter(&c.textBuf)
	c.text = output.NewTable(c.textW, &c.textBuf, output.TableOptions{Numeric: true})
	return c
}

// tableText is what the table writer prints for one call.
func (c *collector) tableText(f func(t *output.Table) error) string {
	c.textBuf.Reset()
	c.textW.Reset(&c.textBuf)
	f(c.text)
	c.textW.Flush()
	return c.textBuf.String()
}

func (c *collector) seen(at int64) {
	if at == 0 {
		return
	}
	if c.first == 0 || at < c.first {
		c.first = at
	}
	if at > c.last {
		c.last = at
	}
}

func (c *collector) dest(k analysis.DestKey) *destData {
	d := c.dests[k]
	if d == nil {
		d = &destData{key: k}
		c.dests[k] = d
	}
	return d
}

// sample records the counts by state as of at, at most one sample a
// step; when there are too many, every other one goes and the step
// doubles.
func (c *collector) sample(at int64) {
	if n := len(c.samples); n > 0 && at-c.samples[n-1].at < c.step {
		c.samples[n-1].counts = c.counts
		return
	}
	c.samples = append(c.samples, stateSample{at: at, counts: c.counts})
	if len(c.samples) > maxSamples {
		j := 0
		for i := 0; i < len(c.samples); i += 2 {
			c.samples[j] = c.samples[i]
			j++
		}
		// the latest counts stand for the last kept sample
		c.samples[j-1].counts = c.counts
		c.samples = c.samples[:j]
		c.step *= 2
	}
}

// Transition: a state change, as the replay shows it.
func (c *collector) Transition(t *record.Transition) error {
	at := t.Time.UnixNano()
	c.seen(at)
	c.trans++
	if old, ok := c.live[t.Cookie]; ok {
		c.counts[old]--
	}
	if t.New == tcpstate.Close || t.New > tcpstate.Last { // a crafted file's state: not counted
		delete(c.live, t.Cookie)
	} else {
		c.live[t.Cookie] = t.New
		c.counts[t.New]++
	}
	c.sample(at)

	l := c.lanes[t.Cookie]
	if t.Old == tcpstate.Close && t.New == tcpstate.SynSent {
		d := c.dest(analysis.DestKey{Netns: t.Netns, Addr: t.Dst, Port: t.DPort})
		l = &lane{cookie: t.Cookie, dest: d, owner: ownerOf(t)}
		c.lanes[t.Cookie] = l
	}
	if l != nil {
		if l.owner == "" {
			l.owner = ownerOf(t)
		}
		if l.local == "" && t.SPort != 0 {
			l.local = netip.AddrPortFrom(t.Src, t.SPort).String()
		}
		l.segs = append(l.segs, seg{state: t.New, from: at})
	}
	if t.Old == tcpstate.SynSent {
		d := c.dest(analysis.DestKey{Netns: t.Netns, Addr: t.Dst, Port: t.DPort})
		o := analysis.Established
		if t.New == tcpstate.Close {
			o = analysis.OutcomeOf(t.SkErr)
			d.failures++
		}
		if t.DNS != nil && d.name == "" {
			d.name = t.DNS.Name
		}
		d.attempts = append(d.attempts, attemptMark{at: at, outcome: o})
		if t.Drops > 0 {
			d.drops = append(d.drops, at)
		}
		if l != nil {
			a := analysis.Attempt{Outcome: o, SYNs: 1 + int(t.SynRetrans), Span: t.InOld, SpanKnown: t.InOldKnown,
				RstReceived: t.RstReceived, Err: t.SkErr}
			if t.Drops > 0 {
				a.Drops, a.DropReason, a.DropDir = t.Drops, t.DropReasonName, t.DropDir
			}
			l.cause = a.Cause()
		}
	}
	if t.New == tcpstate.Close && l != nil {
		l.end = at
		delete(c.lanes, t.Cookie)
		c.keepLane(l)
	}
	return nil
}

// keepLane keeps a closed socket's lane with its destination's most
// recent ones.
func (c *collector) keepLane(l *lane) {
	d := l.dest
	if len(d.lanes) < lanesPerDest {
		d.lanes = append(d.lanes, l)
		return
	}
	d.lanes[d.next] = l
	d.next = (d.next + 1) % lanesPerDest
	d.omitted++
}

func ownerOf(t *record.Transition) string {
	if !t.OwnerKnown {
		return ""
	}
	s := t.OwnerComm + "/" + itoa(uint64(t.OwnerPID))
	if id := t.OwnerID; id != nil {
		switch {
		case id.Pod != "":
			s += " pod " + id.Namespace + "/" + id.Pod
		case id.ContainerID != "":
			s += " container " + short(id.ContainerID)
		case id.Unit != "":
			s += " unit " + id.Unit
		}
	}
	return s
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// Lost: transitions the ring buffer lost.
func (c *collector) Lost(n, total uint64, at time.Time) error {
	c.seen(at.UnixNano())
	c.losses = append(c.losses, lossItem{at: at, n: n, what: "transitions lost (ring buffer full)"})
	return nil
}

// Skipped: state changes the kernel did not run the program for.
func (c *collector) Skipped(n, total uint64, at time.Time) error {
	c.seen(at.UnixNano())
	c.losses = append(c.losses, lossItem{at: at, n: n, what: "state changes skipped by the kernel"})
	return nil
}

func (c *collector) Flush() error { return nil }

// Socket: a socket of the snapshot.
func (c *collector) Socket(r *timeline.Row, at time.Time) error {
	c.seen(at.UnixNano())
	c.snapSocks++
	if _, ok := c.live[r.Cookie]; !ok && r.State != tcpstate.Close && r.State <= tcpstate.Last {
		c.live[r.Cookie] = r.State
		c.counts[r.State]++
		c.sample(at.UnixNano())
	}
	return nil
}

// Alert: every alert is kept, with its line as the table prints it.
func (c *collector) Alert(a *analysis.Alert) error {
	c.seen(a.Time.UnixNano())
	it := alertItem{a: *a, text: c.tableText(func(t *output.Table) error { return t.Alert(a) })}
	c.alerts = append(c.alerts, it)
	if a.Kind == analysis.TurnedFailing {
		c.dest(a.Dest.DestKey).failing = true
	}
	return nil
}

// Summary: the summary at the end of the replay.
func (c *collector) Summary(s *analysis.Summary) error {
	c.summary = s
	c.sumText = c.tableText(func(t *output.Table) error { return t.Summary(s) })
	for i := range s.Dests {
		if s.Dests[i].Failing {
			c.dest(s.Dests[i].DestKey).failing = true
		}
	}
	return nil
}

func (c *collector) Reconciled(*output.Reconciliation) error { return nil }

// Packet: retransmits, resets, errors and drops, counted; drops also
// marked on their destination's row.
func (c *collector) Packet(p *record.Packet) error {
	if p.Kind <= events.KindDrop {
		c.packets[p.Kind]++
	}
	at := p.Time.UnixNano()
	c.seen(at)
	if p.Kind == events.KindDrop {
		if d, ok := c.dests[analysis.DestKey{Netns: p.Netns, Addr: p.Dst, Port: p.DPort}]; ok {
			d.drops = append(d.drops, at)
		}
	}
	return nil
}

func (c *collector) LostOther(n, total uint64, at time.Time) error {
	c.losses = append(c.losses, lossItem{at: at, n: n, what: "packet events lost (ring buffer full)"})
	return nil
}

// Recording: the recording paused on a write error, and resumed.
func (c *collector) Flight(*output.Flight) error { return nil }

// recordedAlert keeps an alert record read back (the pipeline's hook).
func (c *collector) recordedAlert(a *capture.Alert) {
	if len(c.recorded) < 1000 {
		c.recorded = append(c.recorded, recordedAlert{at: a.At, kind: a.Kind, subject: a.Subject, trigger: a.Trigger})
	}
}

func (c *collector) Recording(r *output.Recording) error {
	if r.Paused {
		c.losses = append(c.losses, lossItem{at: r.Time, what: "the recording paused: " + r.Err})
	} else {
		c.losses = append(c.losses, lossItem{at: r.Time, n: r.Dropped,
			what: fmt.Sprintf("transitions not recorded while the recording was paused (%s)", r.PausedFor.Round(time.Millisecond))})
	}
	return nil
}

// warn: the files are damaged or incomplete.
func (c *collector) warn(msg string) {
	c.losses = append(c.losses, lossItem{what: msg})
}

func (c *collector) SetNetnsNames(f func(uint32) string) { c.text.SetNetnsNames(f) }

// observeDNS keeps a DNS answer (the pipeline's hook).
func (c *collector) observeDNS(o *dnscache.Observation) {
	if o.Self {
		return
	}
	if len(c.dns) >= maxDNS {
		c.dnsMore++
		return
	}
	a, err := dnscache.Parse(o.Msg)
	if err != nil || a.Name == "" {
		return
	}
	c.seen(o.At.UnixNano())
	rcode := strings.ToUpper(strings.TrimPrefix(a.RCode.String(), "RCode"))
	c.dns = append(c.dns, dnsAnswer{at: o.At, name: a.Name, chain: a.Chain, typ: strings.TrimPrefix(a.Type.String(), "Type"),
		addrs: a.Addrs, ttl: a.TTL, rcode: rcode})
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(b[i:])
}
