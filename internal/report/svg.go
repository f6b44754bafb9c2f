package report

import (
	"fmt"
	"html"
	"html/template"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Geometry of the charts, in SVG units (the SVGs scale to the page).
const (
	chartW   = 1000 // plot width
	labelW   = 260  // the labels' column at the left
	rowH     = 30   // a destination's row
	columns  = 250  // time columns marks are binned into (4 units each)
	laneH    = 14   // a socket's lane
	maxRows  = 8    // destinations shown beside the failing ones; the rest folded
	axisH    = 28
	stateH   = 220 // the live sockets chart
	maxLanes = lanesPerDest
)

func esc(s string) string { return html.EscapeString(s) }

// axis maps times to x.
type axis struct{ t0, t1 int64 }

func (a axis) x(t int64) float64 {
	if a.t1 <= a.t0 {
		return labelW
	}
	f := float64(t-a.t0) / float64(a.t1-a.t0)
	if f < 0 {
		f = 0
	} else if f > 1 {
		f = 1
	}
	return labelW + f*chartW
}

func (a axis) col(t int64) int {
	c := int((a.x(t) - labelW) / chartW * columns)
	if c >= columns {
		c = columns - 1
	}
	if c < 0 {
		c = 0
	}
	return c
}

func (a axis) colTime(c int) time.Time {
	return time.Unix(0, a.t0+int64(float64(a.t1-a.t0)*float64(c)/columns))
}

func clock(t time.Time) string { return t.Local().Format("15:04:05.000") }

// ticks draws the time axis at y.
func (a axis) ticks(b *strings.Builder, y float64) {
	fmt.Fprintf(b, `<line class="axis" x1="%d" y1="%.0f" x2="%d" y2="%.0f"/>`, labelW, y, labelW+chartW, y)
	for i := 0; i <= 5; i++ {
		x := labelW + float64(chartW*i)/5
		t := time.Unix(0, a.t0+(a.t1-a.t0)*int64(i)/5)
		fmt.Fprintf(b, `<line class="grid" x1="%.0f" y1="0" x2="%.0f" y2="%.0f"/>`, x, x, y)
		anchor := "middle"
		if i == 0 {
			anchor = "start"
		} else if i == 5 {
			anchor = "end"
		}
		fmt.Fprintf(b, `<text class="tick" x="%.0f" y="%.0f" text-anchor="%s">%s</text>`, x, y+16, anchor, clock(t))
	}
}

var outcomeY = [...]float64{analysis.Established: 22, analysis.Refused: 6, analysis.Timeout: 10, analysis.Unreachable: 14, analysis.Aborted: 18}

// destLabel names a destination: address:port, and its DNS name.
func destLabel(d *destData) string {
	s := netip.AddrPortFrom(d.key.Addr, d.key.Port).String()
	if d.name != "" {
		s += " (" + d.name + ")"
	}
	return s
}

// rows chooses the destinations drawn: every failing one, then the
// others by failures and attempts up to maxRows; the rest are folded
// into one row.
func (c *collector) rows() (shown []*destData, folded *destData, nFolded int) {
	var all []*destData
	for _, d := range c.dests {
		if len(d.attempts) > 0 || d.failing {
			all = append(all, d)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.failing != b.failing {
			return a.failing
		}
		if a.failures != b.failures {
			return a.failures > b.failures
		}
		if len(a.attempts) != len(b.attempts) {
			return len(a.attempts) > len(b.attempts)
		}
		return destLabel(a) < destLabel(b)
	})
	for _, d := range all {
		if d.failing || len(shown) < maxRows {
			shown = append(shown, d)
			continue
		}
		if folded == nil {
			folded = &destData{}
		}
		nFolded++
		folded.attempts = append(folded.attempts, d.attempts...)
		folded.drops = append(folded.drops, d.drops...)
		folded.failures += d.failures
	}
	return shown, folded, nFolded
}

// attemptsSVG draws connect attempts over time, one row a destination.
func (c *collector) attemptsSVG(a axis) template.HTML {
	shown, folded, nFolded := c.rows()
	if len(shown) == 0 {
		return template.HTML(`<p class="none">No connect attempts in the capture.</p>`)
	}
	rows := append([]*destData(nil), shown...)
	if folded != nil {
		rows = append(rows, folded)
	}
	h := float64(len(rows)*rowH) + axisH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="attempts-chart" viewBox="0 0 %d %.0f" role="img" aria-label="connect attempts over time by destination">`, labelW+chartW+10, h)
	byName := map[string][]*dnsAnswer{}
	for i := range c.dns {
		// A destination's name may be any of the chain's: the asked
		// name, or a CNAME's target.
		a := &c.dns[i]
		byName[a.name] = append(byName[a.name], a)
		for _, n := range a.chain {
			if n != a.name {
				byName[n] = append(byName[n], a)
			}
		}
	}
	for i, d := range rows {
		y := float64(i * rowH)
		label := destLabel(d)
		cls := "row"
		if d.failing {
			cls += " failing"
		}
		if d == folded {
			label = fmt.Sprintf("%d other destinations", nFolded)
			cls += " folded"
		}
		fmt.Fprintf(&b, `<g class="%s" data-dest="%s"><rect class="rowbg" x="0" y="%.0f" width="%d" height="%d"/>`, cls, esc(label), y, labelW+chartW, rowH)
		fmt.Fprintf(&b, `<text class="label" x="4" y="%.0f"><title>%s: %d attempts, %d failed</title>%s</text>`, y+18, esc(label), len(d.attempts), d.failures, esc(trim(label, 36)))
		// Attempts, binned by column and outcome.
		var bins [columns][len(outcomeY)]int
		for _, m := range d.attempts {
			bins[a.col(m.at)][m.outcome]++
		}
		for col := range bins {
			for o, n := range bins[col] {
				if n == 0 {
					continue
				}
				x := labelW + float64(col*chartW/columns)
				from := a.colTime(col)
				fmt.Fprintf(&b, `<rect class="m o-%s" x="%.0f" y="%.0f" width="4" height="4"><title>%s: %d %s</title></rect>`,
					analysis.Outcome(o), x, y+outcomeY[o], clock(from), n, analysis.Outcome(o))
			}
		}
		// Drops, binned.
		var drops [columns]int
		for _, t := range d.drops {
			drops[a.col(t)]++
		}
		for col, n := range drops {
			if n > 0 {
				x := labelW + float64(col*chartW/columns) + 2
				fmt.Fprintf(&b, `<path class="drop" d="M%.0f %.0fl-3 -5h6z"><title>%s: %d packets dropped on this host</title></path>`,
					x, y+rowH-1, clock(a.colTime(col)), n)
			}
		}
		// The DNS answers for the destination's name, all of them.
		if d.name != "" {
			for _, ans := range byName[d.name] {
				x := a.x(ans.at.UnixNano())
				fmt.Fprintf(&b, `<path class="dnsmark" d="M%.1f %.0fl3 3l-3 3l-3 -3z"><title>%s DNS answer: %s</title></path>`,
					x, y+0, clock(ans.at), esc(ans.text()))
			}
		}
		b.WriteString(`</g>`)
	}
	// Alerts across every row, all of them.
	for i := range c.alerts {
		al := &c.alerts[i]
		x := a.x(al.a.Time.UnixNano())
		fmt.Fprintf(&b, `<line class="alert a-%s" x1="%.1f" y1="0" x2="%.1f" y2="%.0f"><title>%s</title></line>`,
			al.a.Kind, x, x, h-axisH, esc(strings.TrimSpace(al.text)))
	}
	a.ticks(&b, h-axisH)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func (ans *dnsAnswer) text() string {
	var addrs []string
	for _, a := range ans.addrs {
		addrs = append(addrs, a.String())
	}
	s := ans.name
	for _, n := range ans.chain {
		s += " -> " + n
	}
	if len(addrs) == 0 {
		return s + " " + ans.typ + ": " + ans.rcode + ", no address"
	}
	return s + " -> " + strings.Join(addrs, ", ") + fmt.Sprintf(" (TTL %ds)", ans.ttl)
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// statesSVG draws the live sockets by state over time.
func (c *collector) statesSVG(a axis) (template.HTML, []tcpstate.State) {
	if len(c.samples) == 0 {
		return template.HTML(`<p class="none">No sockets in the capture.</p>`), nil
	}
	var max int32 = 1
	var used []tcpstate.State
	for s := tcpstate.State(0); s <= tcpstate.Last; s++ {
		any := false
		for i := range c.samples {
			if n := c.samples[i].counts[s]; n > 0 {
				any = true
				if n > max {
					max = n
				}
			}
		}
		if any && s != tcpstate.Close {
			used = append(used, s)
		}
	}
	h := float64(stateH + axisH)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="states-chart" viewBox="0 0 %d %.0f" role="img" aria-label="live sockets by state over time">`, labelW+chartW+10, h)
	fmt.Fprintf(&b, `<text class="label" x="4" y="14">%d</text><text class="label" x="4" y="%d">0</text>`, max, stateH)
	for i, s := range used {
		fmt.Fprintf(&b, `<g class="st s-%s">`, s)
		var pts strings.Builder
		prev := int32(-1)
		for j := range c.samples {
			n := c.samples[j].counts[s]
			if n < 0 {
				n = 0
			}
			x := a.x(c.samples[j].at)
			y := stateH - float64(n)/float64(max)*(stateH-10)
			if prev >= 0 {
				// steps: the count holds until the next sample
				py := stateH - float64(prev)/float64(max)*(stateH-10)
				fmt.Fprintf(&pts, "%.1f,%.1f ", x, py)
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
			prev = n
		}
		last := a.x(a.t1)
		fmt.Fprintf(&pts, "%.1f,%.1f", last, stateH-float64(max0(prev))/float64(max)*(stateH-10))
		fmt.Fprintf(&b, `<polyline points="%s"><title>%s</title></polyline>`, pts.String(), s)
		fmt.Fprintf(&b, `<text class="slegend" x="40" y="%d">%s</text></g>`, 30+i*14, s)
	}
	a.ticks(&b, stateH)
	b.WriteString(`</svg>`)
	return template.HTML(b.String()), used
}

func max0(n int32) int32 {
	if n < 0 {
		return 0
	}
	return n
}

// lanesOf are a destination's sockets, oldest first: the closed ones
// kept and those still open.
func (c *collector) lanesOf(d *destData) []*lane {
	var out []*lane
	out = append(out, d.lanes...)
	for _, l := range c.lanes {
		if l.dest == d {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].segs[0].from < out[j].segs[0].from })
	if len(out) > maxLanes {
		d.omitted += uint64(len(out) - maxLanes)
		out = out[len(out)-maxLanes:]
	}
	return out
}

// swimlanesSVG draws a failing destination's sockets, one lane each.
func (c *collector) swimlanesSVG(d *destData, lanes []*lane, end int64) template.HTML {
	if len(lanes) == 0 {
		return template.HTML(`<p class="none">No socket of this destination in the capture.</p>`)
	}
	a := axis{t0: lanes[0].segs[0].from, t1: end}
	for _, l := range lanes {
		if e := l.end; e > a.t1 {
			a.t1 = e
		}
	}
	if a.t1 <= a.t0 {
		a.t1 = a.t0 + int64(time.Millisecond)
	}
	h := float64(len(lanes)*laneH) + axisH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart lanes" viewBox="0 0 %d %.0f" role="img" aria-label="sockets of %s">`, labelW+chartW+10, h, esc(destLabel(d)))
	for i, l := range lanes {
		y := float64(i * laneH)
		fmt.Fprintf(&b, `<g class="lane" data-cookie="%d"><text class="label" x="4" y="%.0f">%s</text>`, l.cookie, y+11, esc(trim(laneLabel(l), 40)))
		for j, s := range l.segs {
			if s.state == tcpstate.Close {
				continue
			}
			to := l.end
			if j+1 < len(l.segs) {
				to = l.segs[j+1].from
			} else if to == 0 {
				to = end
			}
			x0, x1 := a.x(s.from), a.x(to)
			w := x1 - x0
			if w < 2 { // a refused connect lasts microseconds: still seen
				w = 2
			}
			fmt.Fprintf(&b, `<rect class="bar s-%s" x="%.1f" y="%.0f" width="%.1f" height="%d"><title>%s</title></rect>`,
				s.state, x0, y+2, w, laneH-4, esc(fmt.Sprintf("%s for %s from %s; %s", s.state, time.Duration(to-s.from).Round(time.Microsecond), clock(time.Unix(0, s.from)), laneDetail(l))))
		}
		b.WriteString(`</g>`)
	}
	a.ticks(&b, h-axisH)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func laneLabel(l *lane) string {
	s := fmt.Sprintf("cookie %d", l.cookie)
	if l.local != "" {
		s = l.local
	}
	return s
}

func laneDetail(l *lane) string {
	var parts []string
	if l.cause != "" {
		parts = append(parts, "cause: "+l.cause)
	}
	if l.owner != "" {
		parts = append(parts, "owner: "+l.owner)
	} else {
		parts = append(parts, "owner unknown")
	}
	return strings.Join(parts, "; ")
}
