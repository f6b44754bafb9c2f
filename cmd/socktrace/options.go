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
	"github.com/socktrace/socktrace/internal/identity"
	"github.com/socktrace/socktrace/internal/netnsname"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/pipeline"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// flags holds the command line as typed.
type flags struct {
	states     []string
	sports     []string
	dports     []string
	srcs       []string
	dsts       []string
	pids       []string
	comms      []string
	ipv4       bool
	ipv6       bool
	output     string
	numeric    bool
	resolve    bool
	duration   time.Duration
	readyFile  string
	ringSize   string
	attach     string
	kernelBTF  string
	once       bool
	noSnapshot bool
	netns      string

	summary        bool
	interval       time.Duration
	failAfter      int
	closeWaitAfter time.Duration
	history        int

	write       string
	force       bool
	rotateSize  string
	rotateCount int
	quiet       bool
	follow      bool

	reconcileEvery time.Duration
	maxSockets     int
	info           bool     // -i
	mem            bool     // -m
	events         []string // --events

	units, containers, pods, namespaces []string // who owns the socket beyond its process
	hostRoot, kubeletLogDir             string
	noDNS, noDNSLookup                  bool
	maxDests, bpfMaxSockets             int

	cpuProfile, memProfile string // hidden, for developers
}

// parse checks every flag value; each error names the flag, the bad value
// and what is accepted.
func (f *flags) parse(args []string) (*pipeline.Options, error) {
	o := &pipeline.Options{Output: f.output, Duration: f.duration, ReadyFile: f.readyFile,
		Once: f.once, Snapshot: !f.noSnapshot, Netns: f.netns, Version: version}
	var err error
	if f.once && f.noSnapshot {
		return nil, fmt.Errorf("--once and --no-snapshot contradict each other: --once lists the sockets that exist and exits")
	}
	if f.once && (f.duration != 0 || f.readyFile != "") {
		return nil, fmt.Errorf("--once lists the sockets that exist and exits: --duration and --ready-file do not apply")
	}
	o.Summary, o.Interval, o.CloseWaitAfter, o.History = f.summary || f.interval > 0, f.interval, f.closeWaitAfter, f.history
	o.Analysis = analysis.Options{FailAfter: f.failAfter, MaxDests: f.maxDests}
	if f.maxDests < 0 {
		return nil, fmt.Errorf("bad --max-destinations value %d: want 1 or more destinations", f.maxDests)
	}
	if f.failAfter < 1 {
		return nil, fmt.Errorf("bad --fail-after value %d: want 1 or more connects in a row", f.failAfter)
	}
	if f.interval < 0 {
		return nil, fmt.Errorf("bad --interval value %s: want a positive duration such as 30s or 5m", f.interval)
	}
	if f.closeWaitAfter < 0 {
		return nil, fmt.Errorf("bad --close-wait-after value %s: want 0 or a positive duration such as 30s", f.closeWaitAfter)
	}
	o.ReconcileEvery, o.MaxSockets = f.reconcileEvery, f.maxSockets
	if f.reconcileEvery < 0 {
		return nil, fmt.Errorf("bad --reconcile-every value %s: want 0 (only after losses) or a duration such as 30s", f.reconcileEvery)
	}
	if f.maxSockets < 0 {
		return nil, fmt.Errorf("bad --max-sockets value %d: want 0 (the default, %d) or more", f.maxSockets, pipeline.DefaultMaxSockets)
	}
	if f.history < 0 {
		return nil, fmt.Errorf("bad --history value %d: want 0 or more closed sockets", f.history)
	}
	if f.once && (f.summary || f.interval > 0) {
		return nil, fmt.Errorf("--once lists the sockets that exist and exits: --summary and --interval need a trace")
	}
	o.Write, o.Quiet, o.Follow, o.Args = f.write, f.quiet, f.follow, args
	o.Capture = capture.Options{Force: f.force, RotateCount: f.rotateCount}
	if f.rotateSize != "" {
		n, err := parseBytes(f.rotateSize)
		if err != nil {
			return nil, fmt.Errorf("bad --rotate-size value %q: %w", f.rotateSize, err)
		}
		o.Capture.RotateSize = n
	}
	if f.rotateCount < 0 {
		return nil, fmt.Errorf("bad --rotate-count value %d: want 0 (keep all files) or more", f.rotateCount)
	}
	if f.write == "" && (f.rotateSize != "" || f.rotateCount != 0 || f.force || f.quiet) {
		return nil, fmt.Errorf("--rotate-size, --rotate-count, --force and --quiet go with --write FILE")
	}
	if f.rotateCount > 0 && f.rotateSize == "" {
		return nil, fmt.Errorf("--rotate-count needs --rotate-size: files are rotated by size")
	}
	if f.write != "" && f.once {
		return nil, fmt.Errorf("--once lists the sockets that exist and exits: it does not record; use --write without --once")
	}
	if o.Expr, err = filter.ParseExpr(args); err != nil {
		return nil, err
	}
	for _, s := range f.states {
		m, err := tcpstate.ParseList(s)
		if err != nil {
			return nil, fmt.Errorf("bad --state value %q: %w", s, err)
		}
		o.Filter.States |= m
	}
	if o.Filter.SPorts, err = parseEach("--sport", f.sports, filter.ParsePorts); err != nil {
		return nil, err
	}
	if o.Filter.DPorts, err = parseEach("--dport", f.dports, filter.ParsePorts); err != nil {
		return nil, err
	}
	if o.Filter.Src, err = parseEach("--src", f.srcs, filter.ParsePrefixes); err != nil {
		return nil, err
	}
	if o.Filter.Dst, err = parseEach("--dst", f.dsts, filter.ParsePrefixes); err != nil {
		return nil, err
	}
	if o.Filter.PIDs, err = parseEach("--pid", f.pids, filter.ParsePIDs); err != nil {
		return nil, err
	}
	if o.Filter.Comms, err = parseEach("--comm", f.comms, filter.ParseComms); err != nil {
		return nil, err
	}
	o.Filter.IPv4, o.Filter.IPv6 = f.ipv4, f.ipv6
	o.Filter.Units, o.Filter.Containers = splitList(f.units), splitList(f.containers)
	o.Filter.Pods, o.Filter.Namespaces = splitList(f.pods), splitList(f.namespaces)
	if f.hostRoot != "" {
		if st, err := os.Stat(f.hostRoot + "/proc/1"); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("bad --host-root value %q: no %s/proc/1 there (want the directory where the host's / is mounted, e.g. /host)", f.hostRoot, f.hostRoot)
		}
	}
	o.HostRoot, o.KubeletLogDir = f.hostRoot, f.kubeletLogDir
	o.NoDNS, o.NoDNSLookup = f.noDNS, f.noDNSLookup

	switch f.output {
	case "table", "json":
	default:
		return nil, fmt.Errorf("bad --output value %q: use one of %s", f.output, strings.Join(output.Formats, ", "))
	}
	// tcp_info only with -i, as ss: at 100,000 sockets it made --once -o
	// json's dump 1.7 times as large and its wall time 1.17 times as long.
	o.Table = output.TableOptions{Numeric: f.numeric, Resolve: f.resolve, Info: f.info}
	o.Mem = f.mem
	if f.duration < 0 {
		return nil, fmt.Errorf("bad --duration value %s: want a positive duration such as 30s or 5m", f.duration)
	}

	ring, err := parseSize(f.ringSize)
	if err != nil {
		return nil, fmt.Errorf("bad --ring-size value %q: %w", f.ringSize, err)
	}
	if ns, pod, ok := strings.Cut(f.netns, "pod:"); ok && ns == "" {
		path, err := podNetns(pod, f.hostRoot, f.kubeletLogDir)
		if err != nil {
			return nil, fmt.Errorf("bad --netns value %q: %w", f.netns, err)
		}
		f.netns, o.Netns = path, path
	}
	if f.netns != "" && f.netns != "all" {
		const want = "want an ip netns name, a path such as /run/netns/NAME or /proc/PID/ns/net, pod:NAMESPACE/NAME, or all"
		path, err := netnsname.Path(f.netns, f.hostRoot)
		if err != nil {
			return nil, fmt.Errorf("bad --netns value %q: %w; %s", f.netns, err, want)
		}
		ino, err := snapshot.NetnsInode(path)
		if err != nil {
			return nil, fmt.Errorf("bad --netns value %q: %w (%s)", f.netns, err, want)
		}
		o.Filter.Netns = ino
		// Hold the namespace open while we trace it: a namespace that
		// dies frees its inode number, which the next one may get.
		if o.NetnsHold, err = os.Open(path); err != nil {
			return nil, fmt.Errorf("bad --netns value %q: %w", f.netns, err)
		}
		f.netns, o.Netns = path, path
	}
	kinds, err := parseKinds(f.events)
	if err != nil {
		return nil, err
	}
	o.Tracer = events.Options{
		Filter:     o.Filter.Kernel(),
		RingSize:   ring,
		MaxSockets: f.bpfMaxSockets,
		Attach:     f.attach,
		KernelBTF:  f.kernelBTF,
		Kinds:      kinds,
	}
	if !contains(events.AttachMethods, f.attach) {
		return nil, fmt.Errorf("bad --attach value %q: use one of %s", f.attach, strings.Join(events.AttachMethods, ", "))
	}
	return o, nil
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

// parseKinds reads --events: retransmit, reset, error.
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
			case "all":
				ks |= events.KindsOf(events.KindRetransmit, events.KindResetSent, events.KindResetReceived, events.KindError)
			default:
				return 0, fmt.Errorf("bad --events value %q: use retransmit, reset, error or all, comma separated", v)
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
// log directories.
func podNetns(pod, hostRoot, kubeletLogDir string) (string, error) {
	ns, name, ok := strings.Cut(pod, "/")
	if !ok || ns == "" || name == "" {
		return "", fmt.Errorf("want pod:NAMESPACE/NAME")
	}
	r := netnsname.New(hostRoot, identity.NewResolver(hostRoot, kubeletLogDir))
	pid, _, ok := r.FindPod(ns, name)
	if !ok {
		return "", fmt.Errorf("no process of pod %s/%s found (pods are named from the kubelet's logs in %s/pods; see --kubelet-log-dir and --host-root)", ns, name, kubeletLogDir)
	}
	return fmt.Sprintf("%s/proc/%d/ns/net", strings.TrimSuffix(hostRoot, "/"), pid), nil
}
