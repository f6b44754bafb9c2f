package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/flight"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/netnsname"
	"github.com/socktrace/socktrace/internal/pipeline"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// flags holds the command line as typed, grouped by the concern that
// parses it (see parse).
type flags struct {
	// filter: which sockets (filterOptions)
	states, sports, dports, srcs, dsts, pids, comms []string
	units, containers, pods, namespaces             []string // who owns the socket beyond its process
	ipv4, ipv6                                      bool

	// output: how they are shown (outputOptions)
	output  string
	numeric bool
	resolve bool
	info    bool // -i
	mem     bool // -m

	// analysis: connect attempts, leaks and the summary (analysisOptions)
	summary        bool
	interval       time.Duration
	failAfter      int
	closeWaitAfter time.Duration
	history        int
	maxDests       int

	// capture: recording with -w and reading it back (captureOptions)
	write       string
	force       bool
	rotateSize  string
	rotateCount int
	quiet       bool
	follow      bool

	// flight recorder: the last minutes, written on an alert (flightOptions)
	flightRecorder time.Duration
	flightSize     string
	flightDir      string
	flightAfter    time.Duration
	flightMaxFiles int

	// tracer: the live trace and what it reads from the host (tracerOptions)
	duration                time.Duration
	readyFile               string
	ringSize                string
	attach                  string
	kernelBTF               string
	events                  []string // --events
	bpfMaxSockets           int
	reconcileEvery          time.Duration
	maxSockets              int
	hostRoot, kubeletLogDir string
	criSocket               string
	noDNS, noDNSLookup      bool
	netns                   string // resolved last, by openNetns

	// what to do: list and exit, or list first (checkOnce)
	once       bool
	noSnapshot bool

	cpuProfile, memProfile string // hidden, for developers
}

// parse checks every flag value and returns the options they make; each
// error names the flag, the bad value and what is accepted. The --once
// contradictions come first, then each concern in turn; the network
// namespace comes last, as it is held open once resolved.
func (f *flags) parse(args []string) (*pipeline.Options, error) {
	if err := f.checkOnce(); err != nil {
		return nil, err
	}
	an, err := f.analysisOptions()
	if err != nil {
		return nil, err
	}
	capt, err := f.captureOptions()
	if err != nil {
		return nil, err
	}
	fl, err := f.flightOptions()
	if err != nil {
		return nil, err
	}
	filt, expr, err := f.filterOptions(args)
	if err != nil {
		return nil, err
	}
	table, err := f.outputOptions()
	if err != nil {
		return nil, err
	}
	tracer, err := f.tracerOptions()
	if err != nil {
		return nil, err
	}
	ns, err := f.openNetns()
	if err != nil {
		return nil, err
	}
	filt.Netns = ns.inode
	tracer.Filter = filt.Kernel() // what of the filter the kernel side can apply
	return &pipeline.Options{
		Filter: filt, Expr: expr,
		Output: f.output, Table: table, Mem: f.mem,
		Summary: f.summary || f.interval > 0, Interval: f.interval,
		Analysis: an, CloseWaitAfter: f.closeWaitAfter, History: f.history,
		Write: f.write, Capture: capt, Quiet: f.quiet, Follow: f.follow,
		Flight: fl, Gauges: fl.Window > 0, // the flight recorder's close-wait alerts need the pressure picture
		Tracer: tracer, Duration: f.duration, ReadyFile: f.readyFile,
		ReconcileEvery: f.reconcileEvery, MaxSockets: f.maxSockets,
		HostRoot: f.hostRoot, KubeletLogDir: f.kubeletLogDir, CRISocket: f.criSocket,
		NoDNS: f.noDNS, NoDNSLookup: f.noDNSLookup,
		Netns: ns.path, NetnsHold: ns.hold,
		Once: f.once, Snapshot: !f.noSnapshot, Args: args, Version: version,
	}, nil
}

// checkOnce rejects what contradicts --once: it lists the sockets that
// exist and exits, so it neither traces nor records.
func (f *flags) checkOnce() error {
	if !f.once {
		return nil
	}
	switch {
	case f.noSnapshot:
		return fmt.Errorf("--once and --no-snapshot contradict each other: --once lists the sockets that exist and exits")
	case f.duration != 0 || f.readyFile != "":
		return fmt.Errorf("--once lists the sockets that exist and exits: --duration and --ready-file do not apply")
	case f.summary || f.interval > 0:
		return fmt.Errorf("--once lists the sockets that exist and exits: --summary and --interval need a trace")
	case f.write != "":
		return fmt.Errorf("--once lists the sockets that exist and exits: it does not record; use --write without --once")
	}
	return nil
}

// analysisOptions checks the analysis' thresholds and the summary's
// timing.
func (f *flags) analysisOptions() (analysis.Options, error) {
	switch {
	case f.maxDests < 0:
		return analysis.Options{}, fmt.Errorf("bad --max-destinations value %d: want 1 or more destinations", f.maxDests)
	case f.failAfter < 1:
		return analysis.Options{}, fmt.Errorf("bad --fail-after value %d: want 1 or more connects in a row", f.failAfter)
	case f.interval < 0:
		return analysis.Options{}, fmt.Errorf("bad --interval value %s: want a positive duration such as 30s or 5m", f.interval)
	case f.closeWaitAfter < 0:
		return analysis.Options{}, fmt.Errorf("bad --close-wait-after value %s: want 0 or a positive duration such as 30s", f.closeWaitAfter)
	case f.history < 0:
		return analysis.Options{}, fmt.Errorf("bad --history value %d: want 0 or more closed sockets", f.history)
	}
	return analysis.Options{FailAfter: f.failAfter, MaxDests: f.maxDests}, nil
}

// captureOptions checks how -w records: rotation goes with --write, by
// size.
func (f *flags) captureOptions() (capture.Options, error) {
	o := capture.Options{Force: f.force, RotateCount: f.rotateCount}
	if f.rotateSize != "" {
		n, err := parseBytes(f.rotateSize)
		if err != nil {
			return o, fmt.Errorf("bad --rotate-size value %q: %w", f.rotateSize, err)
		}
		o.RotateSize = n
	}
	switch {
	case f.rotateCount < 0:
		return o, fmt.Errorf("bad --rotate-count value %d: want 0 (keep all files) or more", f.rotateCount)
	case f.write == "" && (f.rotateSize != "" || f.rotateCount != 0 || f.force || f.quiet):
		return o, fmt.Errorf("--rotate-size, --rotate-count, --force and --quiet go with --write FILE")
	case f.rotateCount > 0 && f.rotateSize == "":
		return o, fmt.Errorf("--rotate-count needs --rotate-size: files are rotated by size")
	}
	return o, nil
}

// flightOptions checks the flight recorder's flags.
func (f *flags) flightOptions() (flight.Options, error) {
	o := flight.Options{Window: f.flightRecorder, Dir: f.flightDir, After: f.flightAfter, MaxFiles: f.flightMaxFiles}
	if f.flightRecorder == 0 {
		if f.flightDir != "" {
			return flight.Options{}, fmt.Errorf("--flight-dir goes with --flight-recorder D: how much to keep before an alert, such as 10m")
		}
		return flight.Options{}, nil
	}
	n, err := parseBytes(f.flightSize)
	if err != nil {
		return o, fmt.Errorf("bad --flight-recorder-size value %q: %w", f.flightSize, err)
	}
	o.Size = n
	return o, o.Check()
}

// filterOptions parses the filter flags and the filter expression of the
// arguments; the network namespace is openNetns's.
func (f *flags) filterOptions(args []string) (filter.Filter, filter.Expr, error) {
	var o filter.Filter
	expr, err := filter.ParseExpr(args)
	if err != nil {
		return o, nil, err
	}
	for _, s := range f.states {
		m, err := tcpstate.ParseList(s)
		if err != nil {
			return o, nil, fmt.Errorf("bad --state value %q: %w", s, err)
		}
		o.States |= m
	}
	if o.SPorts, err = parseEach("--sport", f.sports, filter.ParsePorts); err != nil {
		return o, nil, err
	}
	if o.DPorts, err = parseEach("--dport", f.dports, filter.ParsePorts); err != nil {
		return o, nil, err
	}
	if o.Src, err = parseEach("--src", f.srcs, filter.ParsePrefixes); err != nil {
		return o, nil, err
	}
	if o.Dst, err = parseEach("--dst", f.dsts, filter.ParsePrefixes); err != nil {
		return o, nil, err
	}
	if o.PIDs, err = parseEach("--pid", f.pids, filter.ParsePIDs); err != nil {
		return o, nil, err
	}
	if o.Comms, err = parseEach("--comm", f.comms, filter.ParseComms); err != nil {
		return o, nil, err
	}
	o.IPv4, o.IPv6 = f.ipv4, f.ipv6
	o.Units, o.Containers = splitList(f.units), splitList(f.containers)
	o.Pods, o.Namespaces = splitList(f.pods), splitList(f.namespaces)
	return o, expr, nil
}

// outputOptions checks the output format and returns the table's options.
func (f *flags) outputOptions() (output.TableOptions, error) {
	switch f.output {
	case "table", "json":
	default:
		return output.TableOptions{}, fmt.Errorf("bad --output value %q: use one of %s", f.output, strings.Join(output.Formats, ", "))
	}
	// tcp_info only with -i, as ss: it makes a large listing much larger
	// and slower (the README's -i says by how much).
	return output.TableOptions{Numeric: f.numeric, Resolve: f.resolve, Info: f.info}, nil
}

// tracerOptions checks the flags of the live trace and of what it reads
// from the host; parse adds the kernel's share of the filter.
func (f *flags) tracerOptions() (events.Options, error) {
	if err := f.checkTraceLimits(); err != nil {
		return events.Options{}, err
	}
	if f.hostRoot != "" {
		if st, err := os.Stat(f.hostRoot + "/proc/1"); err != nil || !st.IsDir() {
			return events.Options{}, fmt.Errorf("bad --host-root value %q: no %s/proc/1 there (want the directory where the host's / is mounted, e.g. /host)", f.hostRoot, f.hostRoot)
		}
	}
	if f.criSocket != "" && f.criSocket != identity.NoCRI && !strings.HasPrefix(f.criSocket, "/") {
		return events.Options{}, fmt.Errorf("bad --cri-socket value %q: want an absolute path (under --host-root, e.g. /run/containerd/containerd.sock), or none", f.criSocket)
	}
	ring, err := parseSize(f.ringSize)
	if err != nil {
		return events.Options{}, fmt.Errorf("bad --ring-size value %q: %w", f.ringSize, err)
	}
	kinds, err := parseKinds(f.events)
	if err != nil {
		return events.Options{}, err
	}
	if !contains(events.AttachMethods, f.attach) {
		return events.Options{}, fmt.Errorf("bad --attach value %q: use one of %s", f.attach, strings.Join(events.AttachMethods, ", "))
	}
	return events.Options{RingSize: ring, MaxSockets: f.bpfMaxSockets, Attach: f.attach, KernelBTF: f.kernelBTF, Kinds: kinds}, nil
}

// checkTraceLimits checks how long the trace runs and how much it keeps.
func (f *flags) checkTraceLimits() error {
	switch {
	case f.reconcileEvery < 0:
		return fmt.Errorf("bad --reconcile-every value %s: want 0 (only after losses) or a duration such as 30s", f.reconcileEvery)
	case f.maxSockets < 0:
		return fmt.Errorf("bad --max-sockets value %d: want 0 (the default, %d) or more", f.maxSockets, pipeline.DefaultMaxSockets)
	case f.duration < 0:
		return fmt.Errorf("bad --duration value %s: want a positive duration such as 30s or 5m", f.duration)
	}
	return nil
}

// netnsChoice is the network namespace --netns names, resolved.
type netnsChoice struct {
	path  string   // "" (ours), "all", or the namespace's path
	inode uint32   // the one namespace's inode; 0: not one
	hold  *os.File // the one namespace, held open
}

// openNetns resolves --netns: a pod to a path, a name or path to its
// inode, which it holds open while we trace it (a namespace that dies
// frees its inode number, which the next one may get).
func (f *flags) openNetns() (netnsChoice, error) {
	ns := netnsChoice{path: f.netns}
	if before, pod, ok := strings.Cut(ns.path, "pod:"); ok && before == "" {
		path, err := podNetns(pod, f.hostRoot, f.kubeletLogDir, f.criSocket)
		if err != nil {
			return netnsChoice{}, fmt.Errorf("bad --netns value %q: %w", ns.path, err)
		}
		ns.path = path
	}
	if ns.path == "" || ns.path == "all" {
		return ns, nil
	}
	const want = "want an ip netns name, a path such as /run/netns/NAME or /proc/PID/ns/net, pod:NAMESPACE/NAME, or all"
	path, err := netnsname.Path(ns.path, f.hostRoot)
	if err != nil {
		return netnsChoice{}, fmt.Errorf("bad --netns value %q: %w; %s", ns.path, err, want)
	}
	if ns.inode, err = snapshot.NetnsInode(path); err != nil {
		return netnsChoice{}, fmt.Errorf("bad --netns value %q: %w (%s)", ns.path, err, want)
	}
	if ns.hold, err = os.Open(path); err != nil {
		return netnsChoice{}, fmt.Errorf("bad --netns value %q: %w", ns.path, err)
	}
	ns.path = path
	return ns, nil
}

func parseEach[T any](flag string, values []string, parse func(string) ([]T, error)) ([]T, error) {
	var out []T
	for _, v := range values {
		items, err := parse(v)
		if err != nil {
			return nil, fmt.Errorf("bad %s value %q: %w", flag, v, err)
		}
		out = append(out, items...)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseBytes reads a byte count with an optional K, M or G suffix
// (powers of 1024), of at least 4K.
func parseBytes(s string) (int64, error) {
	n, ok := bytesOf(s)
	if !ok || n < 4096 {
		return 0, fmt.Errorf("want a size of at least 4K, such as 100M or 1G")
	}
	return n, nil
}

// bytesOf reads a number with an optional K, M or G suffix.
func bytesOf(s string) (int64, bool) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	if num != "" {
		switch strings.ToUpper(num[len(num)-1:]) {
		case "K":
			mult, num = 1<<10, num[:len(num)-1]
		case "M":
			mult, num = 1<<20, num[:len(num)-1]
		case "G":
			mult, num = 1<<30, num[:len(num)-1]
		}
	}
	n, err := strconv.ParseUint(num, 10, 40)
	if err != nil {
		return 0, false
	}
	return int64(n) * mult, true
}

// parseSize reads a byte count with an optional K, M or G suffix (powers
// of 1024): a power of two of at least 4K.
func parseSize(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	size, ok := bytesOf(s)
	if !ok {
		return 0, fmt.Errorf("want a size such as 4096, 64K or 8M")
	}
	if size < 4096 || size > 1<<30 || size&(size-1) != 0 {
		return 0, fmt.Errorf("the ring buffer size must be a power of two from 4K to 1G, such as 64K or 8M")
	}
	return int(size), nil
}

// parseKinds reads --events: retransmit, reset, error, drop.
func parseKinds(values []string) (events.Kinds, error) {
	var ks events.Kinds
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			switch strings.TrimSpace(item) {
			case "retransmit", "retransmits":
				ks |= events.KindsOf(events.KindRetransmit)
			case "reset", "resets":
				ks |= events.KindsOf(events.KindResetSent, events.KindResetReceived)
			case "error", "errors":
				ks |= events.KindsOf(events.KindError)
			case "drop", "drops":
				ks |= events.KindsOf(events.KindDrop)
			case "all":
				ks |= events.KindsOf(events.KindRetransmit, events.KindResetSent, events.KindResetReceived, events.KindError, events.KindDrop)
			default:
				return 0, fmt.Errorf("bad --events value %q: use retransmit, reset, error, drop or all, comma separated", v)
			}
		}
	}
	return ks, nil
}

// splitList splits comma-separated flag values into their items.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

// podNetns is the path of the network namespace of pod NAMESPACE/NAME:
// that of a process in the pod, found by its cgroup and the kubelet's
// log directories or the runtime's CRI.
func podNetns(pod, hostRoot, kubeletLogDir, criSocket string) (string, error) {
	ns, name, ok := strings.Cut(pod, "/")
	if !ok || ns == "" || name == "" {
		return "", fmt.Errorf("want pod:NAMESPACE/NAME")
	}
	r := netnsname.New(hostRoot, identity.NewResolver(hostRoot, kubeletLogDir, criSocket))
	pid, _, ok := r.FindPod(ns, name)
	if !ok {
		return "", fmt.Errorf("no process of pod %s/%s found (pods are named by the runtime's CRI socket and from the kubelet's logs in %s/pods; see --cri-socket, --kubelet-log-dir and --host-root)", ns, name, kubeletLogDir)
	}
	return fmt.Sprintf("%s/proc/%d/ns/net", strings.TrimSuffix(hostRoot, "/"), pid), nil
}
