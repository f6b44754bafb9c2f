package report

import (
	"bufio"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/pipeline"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Formats are the capture format versions a report reads: those
// socktrace read reads.
var Formats = func() []int {
	var v []int
	for i := 1; i <= capture.Version; i++ {
		v = append(v, i)
	}
	return v
}()

// Make replays the capture files with the options o (filters and
// thresholds, as socktrace read takes them) and writes the page to w.
// Files that cannot be read give socktrace read's errors.
func Make(o *pipeline.Options, files []string, w io.Writer, version string) error {
	c := newCollector()
	o.Summary = true
	o.Output = "html"
	hdr, err := pipeline.ReadTo(o, files, c, &pipeline.Hooks{DNS: c.observeDNS, Warn: c.warn, RecordedAlert: c.recordedAlert})
	if err != nil {
		return err
	}
	c.hdr = hdr
	bw := bufio.NewWriterSize(w, 256<<10)
	if err := page.Execute(bw, c.view(files, version)); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

//go:embed report.html.tmpl
var pageText string

var page = template.Must(template.New("report").Parse(pageText))

// view is what the template shows.
type view struct {
	Title    string
	Facts    [][2]string
	Attempts template.HTML
	States   template.HTML
	Used     []string
	Failing  []failingView
	Alerts   []alertView
	Dests    []destView
	Leaks    []leakView
	Listen   []listenView
	Losses   []lossView
	Summary  string
	DNSMore  uint64
}

type failingView struct {
	Label   string
	Lanes   template.HTML
	Sockets []laneView
	Omitted uint64
}

type laneView struct {
	Cookie uint64
	Local  string
	Owner  string
	Opened string
	Closed string
	States string
	Cause  string
}

type alertView struct {
	Time, Kind, Text string
}

type destView struct {
	Dest, Name, Owner                 string
	Attempts, OK, Failed, Streak      uint64
	Failures, FailingSince, LastCause string
	Failing                           bool
}

type leakView struct {
	Owner, Oldest, Peers string
	Count                int
}

type listenView struct {
	Listener, Owner, What string
}

type lossView struct {
	Time, What string
	N          uint64
}

func (c *collector) view(files []string, version string) *view {
	h := &c.hdr
	a := axis{t0: c.first, t1: c.last}
	if a.t1 <= a.t0 {
		a.t1 = a.t0 + int64(time.Second)
	}
	v := &view{Title: "socktrace report: " + h.Host, DNSMore: c.dnsMore}
	span := "(nothing recorded)"
	if c.first != 0 {
		span = fmt.Sprintf("%s to %s (%s)", time.Unix(0, c.first).Local().Format(time.DateTime+".000"),
			time.Unix(0, c.last).Local().Format(time.DateTime+".000"), time.Duration(c.last-c.first).Round(time.Millisecond))
	}
	zone, _ := time.Now().Zone()
	v.Facts = [][2]string{
		{"Host", h.Host}, {"Kernel", h.Kernel}, {"Recorded by", "socktrace " + h.Socktrace},
		{"Capture format", fmt.Sprint(h.Format)}, {"Started", h.Started.Local().Format(time.DateTime)},
		{"Time span", span}, {"Times in", zone},
		{"Filters", h.Filter}, {"Command line", strings.Join(h.Args, " ")}, {"Attach", h.Attach},
		{"Network namespace", h.Netns}, {"Files", strings.Join(files, ", ")},
		{"Transitions", fmt.Sprint(c.trans)}, {"Snapshot sockets", fmt.Sprint(c.snapSocks)},
		{"Packet events", fmt.Sprintf("%d retransmits, %d resets sent, %d resets received, %d errors, %d drops",
			c.packets[events.KindRetransmit], c.packets[events.KindResetSent], c.packets[events.KindResetReceived], c.packets[events.KindError], c.packets[events.KindDrop])},
		{"Report made by", "socktrace " + version},
	}
	for _, r := range c.recorded {
		if r.trigger {
			// A flight recording: the alert it was made for.
			v.Facts = append([][2]string{{"Flight recording of", fmt.Sprintf("%s %s at %s", r.kind, r.subject, clock(r.at))}}, v.Facts...)
		}
	}
	v.Attempts = c.attemptsSVG(a)
	var used []tcpstate.State
	v.States, used = c.statesSVG(a)
	for _, s := range used {
		v.Used = append(v.Used, s.String())
	}
	shown, _, _ := c.rows()
	for _, d := range shown {
		if !d.failing {
			continue
		}
		lanes := c.lanesOf(d)
		f := failingView{Label: destLabel(d), Lanes: c.swimlanesSVG(d, lanes, c.last), Omitted: d.omitted}
		for _, l := range lanes {
			lv := laneView{Cookie: l.cookie, Local: l.local, Owner: l.owner, Cause: l.cause, Opened: clock(time.Unix(0, l.segs[0].from))}
			if l.end != 0 {
				lv.Closed = clock(time.Unix(0, l.end))
			} else {
				lv.Closed = "(open)"
			}
			var st []string
			for _, s := range l.segs {
				st = append(st, s.state.String())
			}
			lv.States = strings.Join(st, " → ")
			f.Sockets = append(f.Sockets, lv)
		}
		v.Failing = append(v.Failing, f)
	}
	for i := range c.alerts {
		al := &c.alerts[i]
		v.Alerts = append(v.Alerts, alertView{Time: clock(al.a.Time), Kind: al.a.Kind.String(), Text: strings.TrimSpace(al.text)})
	}
	if s := c.summary; s != nil {
		for i := range s.Dests {
			d := &s.Dests[i]
			dv := destView{Dest: netip.AddrPortFrom(d.Addr, d.Port).String(), Attempts: d.Attempts, OK: d.Successes,
				Failed: d.Failed(), Streak: d.Streak, Failing: d.Failing}
			if d.DNS != nil {
				dv.Name = d.DNS.Name
			}
			if d.OwnerKnown {
				dv.Owner = fmt.Sprintf("%s/%d", d.Comm, d.PID)
			}
			var fs []string
			for _, o := range analysis.Failures {
				if n := d.Failures[o]; n > 0 {
					fs = append(fs, fmt.Sprintf("%d %s", n, o))
				}
			}
			dv.Failures = strings.Join(fs, ", ")
			if d.Failing {
				dv.FailingSince = clock(d.FailingSince)
			}
			if d.Failed() > 0 || d.Attempts > d.Successes {
				dv.LastCause = d.Last.Cause()
			}
			v.Dests = append(v.Dests, dv)
		}
		for _, l := range s.CloseWait {
			lv := leakView{Count: l.Count, Oldest: output.Age(l.Oldest)}
			if l.OldestAtLeast {
				lv.Oldest = "≥ " + lv.Oldest
			}
			if l.OwnerKnown {
				lv.Owner = fmt.Sprintf("%s/%d", l.Comm, l.PID)
			}
			var ps []string
			for _, p := range l.Peers {
				ps = append(ps, fmt.Sprintf("%s:%d (%d)", p.Addr, p.Port, p.N))
			}
			lv.Peers = strings.Join(ps, ", ")
			v.Leaks = append(v.Leaks, lv)
		}
		for _, l := range s.Listeners {
			lv := listenView{Listener: netip.AddrPortFrom(l.Addr, l.Port).String(),
				What: fmt.Sprintf("accept queue %d/%d, %d in SYN-RECV, %d SYNs dropped", l.AcceptQ, l.Backlog, l.SynRecv, l.Drops)}
			if l.OwnerKnown {
				lv.Owner = fmt.Sprintf("%s/%d", l.Comm, l.PID)
			}
			v.Listen = append(v.Listen, lv)
		}
		v.Summary = c.sumText
	}
	for i := range c.alerts {
		al := &c.alerts[i]
		if al.a.Listen != nil {
			v.Listen = append(v.Listen, listenView{Listener: "", What: clock(al.a.Time) + " " + strings.TrimSpace(al.text)})
		}
	}
	for _, l := range c.losses {
		lv := lossView{What: l.what, N: l.n}
		if !l.at.IsZero() {
			lv.Time = clock(l.at)
		}
		v.Losses = append(v.Losses, lv)
	}
	return v
}
