package pipeline

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/flight"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
)

// Options is a command line checked and parsed: what to trace, list or
// replay, and how to show it. The commands fill it from their flags.
type Options struct {
	Filter    filter.Filter
	Output    string // "table" or "json"
	Table     output.TableOptions
	Duration  time.Duration
	ReadyFile string
	Tracer    events.Options
	Expr      filter.Expr // from the positional arguments; nil: none
	Once      bool        // snapshot only
	Mem       bool        // -m: socket memory in the listing (ss -m); -i (Table.Info) asks for tcp_info
	Snapshot  bool        // list existing sockets first
	Netns     string      // "": our namespace; a path; or "all"
	NetnsHold *os.File    // keeps the --netns namespace (and its inode) alive

	Summary        bool          // summary at the end
	Interval       time.Duration // summary every interval; 0: never
	Analysis       analysis.Options
	CloseWaitAfter time.Duration
	History        int // closed sockets remembered

	// ReconcileEvery: how often the live table is checked against the
	// kernel (0: only after losses and when a namespace goes away).
	ReconcileEvery time.Duration
	// MaxSockets caps the live sockets remembered (0: DefaultMaxSockets).
	MaxSockets int
	// Gauges: each reconciliation also counts time-wait sockets and
	// measures the pressure (CLOSE-WAIT leaks, full listeners), with
	// their owners: what the agent's metrics show. A trace does without,
	// which makes its reconciliations cheaper (its summary takes a look
	// of its own).
	Gauges bool

	Write   string          // -w: record to this file
	Capture capture.Options // how
	Quiet   bool            // -q: record only, no live output
	// Flight: the flight recorder (--flight-recorder; off when its
	// Window is 0).
	Flight flight.Options
	Follow bool // read --follow
	// AlertsOnly: write alerts, losses and reconciliations, not every
	// transition nor the snapshot's sockets (the agent without --stream).
	AlertsOnly bool
	// Tee also gets every byte written to stdout (the agent's OTLP log
	// export); it must not block. nil: none.
	Tee  io.Writer
	Args []string // the filter expression as given

	// Version of socktrace, for capture headers.
	Version string

	// HostRoot: where the host's / is ("" or "/": ours), for /proc and
	// the cgroup mount; KubeletLogDir: the parent of the kubelet's pods/
	// and containers/ log directories, under HostRoot ("": no pod names).
	// CRISocket: the runtime's CRI socket, under HostRoot, asked first
	// ("": the first of cri.Sockets found; identity.NoCRI: none).
	HostRoot      string
	KubeletLogDir string
	CRISocket     string

	// NoDNS: no passive DNS, no dns_name (--no-dns); NoDNSLookup: never
	// ask a DNS server itself whether a name moved (--no-dns-lookup).
	NoDNS, NoDNSLookup bool
}

// DefaultReconcileEvery is how often a trace checks its live table
// against the kernel, unless told otherwise.
const DefaultReconcileEvery = 30 * time.Second

// DefaultMaxSockets is how many live sockets a trace remembers at most.
const DefaultMaxSockets = 262144

// Describe renders the filters in effect, for capture headers.
func (o *Options) Describe() string {
	var parts []string
	f := &o.Filter
	if f.States != 0 {
		parts = append(parts, "--state "+f.States.String())
	}
	ports := func(flag string, rs []events.PortRange) {
		var items []string
		for _, r := range rs {
			if r.Lo == r.Hi {
				items = append(items, strconv.Itoa(int(r.Lo)))
			} else {
				items = append(items, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
			}
		}
		if len(items) > 0 {
			parts = append(parts, flag+" "+strings.Join(items, ","))
		}
	}
	ports("--sport", f.SPorts)
	ports("--dport", f.DPorts)
	for _, p := range f.Src {
		parts = append(parts, "--src "+p.String())
	}
	for _, p := range f.Dst {
		parts = append(parts, "--dst "+p.String())
	}
	for _, p := range f.PIDs {
		parts = append(parts, "--pid "+strconv.Itoa(int(p)))
	}
	for _, c := range f.Comms {
		parts = append(parts, "--comm "+c)
	}
	if f.IPv4 && !f.IPv6 {
		parts = append(parts, "-4")
	}
	if f.IPv6 && !f.IPv4 {
		parts = append(parts, "-6")
	}
	if o.Netns != "" {
		parts = append(parts, "--netns "+o.Netns)
	}
	if o.Expr != nil {
		parts = append(parts, "'"+o.Expr.String()+"'")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// Match applies the flags and the expression.
func (o *Options) Match(s *filter.Subject) bool {
	return o.Filter.Match(s) && (o.Expr == nil || o.Expr.Match(s))
}

// keepSocket applies the filter to a socket of a pressure dump.
// One Subject is reused: built for each socket, it escaped to the heap
// (the expression's Match is an interface call), an allocation per
// socket of every reconciliation.
func (o *Options) keepSocket(owners procs.Table) func(*snapshot.Socket) bool {
	var mu sync.Mutex
	subj := new(filter.Subject)
	return func(s *snapshot.Socket) bool {
		var users []procs.Owner
		if s.Inode != 0 {
			users = owners[s.Inode]
		}
		mu.Lock()
		defer mu.Unlock()
		*subj = filter.OfSocket(s, users)
		return o.Match(subj)
	}
}
