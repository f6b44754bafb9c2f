package pipeline

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/flight"
	"github.com/socktrace/socktrace/internal/output"
)

// The flight recorder (--flight-recorder): it sees what -w records, at
// the same places, and the alerts; an alert that makes a recording
// (failing, stale-dns, listen-overflow, close-wait) has it write a
// capture file of the window before and --flight-after after.

// startFlight starts the flight recorder, if asked for.
func (p *pipeline) startFlight(o *Options, tr *events.Tracer) {
	if o.Flight.Window <= 0 {
		return
	}
	p.flight = flight.New(o.Flight, captureHeader(o, tr.Method(), p.started, p.startK))
	p.alertBuf = &bufFlusher{}
	p.alertJSON = output.NewJSON(p.alertBuf)
	p.alertJSON.SetNetnsNames(p.netnsName)
	p.cwLeaks = map[cwKey]bool{}
}

// bufFlusher is a bytes.Buffer that output.JSON can write to.
type bufFlusher struct{ bytes.Buffer }

func (*bufFlusher) Flush() error { return nil }

// flightAlert hands an alert to the flight recorder (p.mu held), with
// its JSON record, and says where a recording it starts goes.
func (p *pipeline) flightAlert(a *analysis.Alert) error {
	if p.flight == nil || a == nil {
		return nil
	}
	p.alertBuf.Reset()
	p.alertJSON.Alert(a)
	fa := &flight.Alert{At: a.Time, Kind: a.Kind.String(), JSON: bytes.TrimSuffix(p.alertBuf.Bytes(), []byte("\n"))}
	switch a.Kind {
	case analysis.TurnedFailing, analysis.StaleDNS:
		fa.Trigger = true
	case analysis.ListenOverflow:
		fa.Trigger = true
	}
	if l := a.Listen; l != nil {
		fa.Subject = netip.AddrPortFrom(l.Addr, l.Port).String()
	} else {
		fa.Subject = netip.AddrPortFrom(a.Dest.Addr, a.Dest.Port).String()
	}
	p.flight.Alert(fa)
	return p.flightNews()
}

// cwKey is a process leaking CLOSE-WAIT sockets.
type cwKey struct {
	pid  uint32
	comm string
}

// closeWaitAlerts makes a close-wait alert for the flight recorder of
// each process whose CLOSE-WAIT leak appeared in the pressure picture
// (its sockets crossed --close-wait-after) since the last one (p.mu
// held).
func (p *pipeline) closeWaitAlerts(pr *analysis.Pressure, now time.Time) error {
	if p.flight == nil {
		return nil
	}
	seen := map[cwKey]bool{}
	for _, l := range pr.CloseWait {
		k := cwKey{l.PID, l.Comm}
		seen[k] = true
		if p.cwLeaks[k] {
			continue
		}
		subj := "unknown"
		if l.OwnerKnown {
			subj = l.Comm + "-" + strconv.FormatUint(uint64(l.PID), 10)
		}
		pid := "null"
		if l.OwnerKnown {
			pid = strconv.FormatUint(uint64(l.PID), 10)
		}
		b := append([]byte(`{"type":"alert","time":"`), now.UTC().Format(output.TimeLayout)...)
		b = append(b, `","alert":"close-wait","pid":`...)
		b = append(b, pid...)
		b = append(b, `,"comm":`...)
		b = output.AppendString(b, l.Comm)
		b = fmt.Appendf(b, `,"sockets":%d,"oldest_ns":%d,"close_wait_after_ns":%d}`, l.Count, l.Oldest.Nanoseconds(), pr.CloseWaitAfter.Nanoseconds())
		p.flight.Alert(&flight.Alert{At: now, Kind: "close-wait", Subject: subj, JSON: b, Trigger: true})
	}
	p.cwLeaks = seen
	return p.flightNews()
}

// flightNews says where flight recordings went: a line on stderr in
// every mode, a recording record in JSON (p.mu held).
func (p *pipeline) flightNews() error {
	if p.flight == nil || !p.flight.HasNews() {
		return nil
	}
	for _, n := range p.flight.News() {
		r := &output.Flight{Time: n.Time, File: n.File, Alert: n.Alert, Subject: n.Subject, From: n.From, Until: n.Until,
			Transitions: n.Transitions, Bytes: n.Bytes, Err: n.Err}
		switch {
		case n.Err != "":
			r.Status = "flight-failed"
		case n.Open:
			r.Status = "flight-started"
		default:
			r.Status = "flight-written"
		}
		fmt.Fprintln(os.Stderr, output.FlightLine(r))
		if p.quiet {
			continue
		}
		if err := p.w.Flight(r); err != nil {
			return err
		}
	}
	return nil
}

// flightTick finishes the recordings whose time is up.
func (p *pipeline) flightTick(now time.Time) error {
	if p.flight == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flight.Tick(now)
	return p.flightNews()
}

// flightClose finishes the recordings being written, at the end.
func (p *pipeline) flightClose() error {
	if p.flight == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flight.Close()
	return p.flightNews()
}

// flightSummary is the flight recorder's figures, nil without one.
func (p *pipeline) flightSummary() *analysis.FlightSummary {
	if p.flight == nil {
		return nil
	}
	s := p.flight.Stats()
	return &analysis.FlightSummary{Dir: p.o.Flight.Dir, Bytes: s.Bytes, Size: s.Size, Records: s.Records, Dropped: s.Dropped,
		Recordings: s.Recordings, Removed: s.Removed, Errors: s.Errors}
}

// FlightState is the flight recorder's state, for metrics.
type FlightState = flight.Stats
