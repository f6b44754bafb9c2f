package main

// Unit tests of the command line checks: no root, no network, no binary.
// Run them alone with: go test -run 'TestParse|TestOptions' ./cmd/socktrace/

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/pipeline"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// optDefaults is the flags struct as root.go fills it when no flag is
// given (TestOptionsDefaultsMatchRoot keeps the two in step).
func optDefaults() *flags {
	return &flags{
		output:         "table",
		ringSize:       "8M",
		attach:         events.AttachAuto,
		failAfter:      analysis.DefaultFailAfter,
		closeWaitAfter: 30 * time.Second,
		history:        timeline.DefaultClosedCap,
	}
}

func TestOptionsDefaultsMatchRoot(t *testing.T) {
	fl := newRootCmd().Flags()
	d := optDefaults()
	want := map[string]string{
		"state": "[]", "sport": "[]", "dport": "[]", "src": "[]", "dst": "[]", "pid": "[]", "comm": "[]",
		"ipv4": "false", "ipv6": "false",
		"output":               d.output,
		"numeric":              "false",
		"resolve":              "false",
		"duration":             d.duration.String(),
		"ready-file":           d.readyFile,
		"ring-size":            d.ringSize,
		"attach":               d.attach,
		"once":                 "false",
		"no-snapshot":          "false",
		"netns":                d.netns,
		"kernel-btf":           d.kernelBTF,
		"summary":              "false",
		"interval":             d.interval.String(),
		"fail-after":           "3",
		"close-wait-after":     d.closeWaitAfter.String(),
		"history":              "10000",
		"cri-socket":           d.criSocket,
		"flight-recorder":      "0s",
		"flight-recorder-size": "64M",
		"flight-dir":           "",
		"flight-after":         "1m0s",
		"flight-max-files":     "100",
	}
	if d.failAfter != 3 || d.history != 10000 {
		t.Errorf("defaults: fail-after %d, history %d", d.failAfter, d.history)
	}
	for name, def := range want {
		f := fl.Lookup(name)
		if f == nil {
			t.Errorf("root.go registers no --%s", name)
			continue
		}
		if f.DefValue != def {
			t.Errorf("--%s defaults to %q in root.go, %q here", name, f.DefValue, def)
		}
	}
	if sh := fl.ShorthandLookup("o"); sh == nil || sh.Name != "output" {
		t.Errorf("-o is not --output")
	}
	for short, long := range map[string]string{"4": "ipv4", "6": "ipv6", "n": "numeric", "r": "resolve"} {
		if sh := fl.ShorthandLookup(short); sh == nil || sh.Name != long {
			t.Errorf("-%s is not --%s", short, long)
		}
	}
}

// optView is the part of options the tests compare; the expression is
// compared by its canonical text.
type optView struct {
	filter         filter.Filter
	output         string
	table          output.TableOptions
	duration       time.Duration
	readyFile      string
	tracer         events.Options
	expr           string
	once           bool
	snapshot       bool
	netns          string
	summary        bool
	interval       time.Duration
	failAfter      int
	closeWaitAfter time.Duration
	history        int
}

func viewOf(o *pipeline.Options) optView {
	v := optView{
		filter: o.Filter, output: o.Output, table: o.Table, duration: o.Duration,
		readyFile: o.ReadyFile, tracer: o.Tracer, once: o.Once, snapshot: o.Snapshot,
		netns: o.Netns, summary: o.Summary, interval: o.Interval,
		failAfter: o.Analysis.FailAfter, closeWaitAfter: o.CloseWaitAfter, history: o.History,
	}
	if o.Expr != nil {
		v.expr = o.Expr.String()
	}
	return v
}

// baseView is what the defaults parse to.
func baseView() optView {
	return optView{
		output:         "table",
		tracer:         events.Options{RingSize: 8 << 20, Attach: events.AttachAuto},
		snapshot:       true,
		failAfter:      3,
		closeWaitAfter: 30 * time.Second,
		history:        10000,
	}
}

func TestParseDefaults(t *testing.T) {
	o, err := optDefaults().parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := viewOf(o), baseView(); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults parse to\n%+v\nwant\n%+v", got, want)
	}
	if o.Expr != nil {
		t.Errorf("no arguments gave expression %v", o.Expr)
	}
	if o.Tracer.RingSize != events.DefaultRingSize {
		t.Errorf("default ring size %d, events.DefaultRingSize is %d", o.Tracer.RingSize, events.DefaultRingSize)
	}
}

func TestParseGood(t *testing.T) {
	pr := func(lo, hi uint16) events.PortRange { return events.PortRange{Lo: lo, Hi: hi} }
	pfx := netip.MustParsePrefix
	tests := []struct {
		name string
		set  func(f *flags)
		args []string
		want func(v *optView)
	}{
		{"state", func(f *flags) { f.states = []string{"syn-sent"} }, nil, func(v *optView) {
			v.filter.States = tcpstate.MaskOf(tcpstate.SynSent)
			v.tracer.Filter.States = v.filter.States
		}},
		{"states list and repeated", func(f *flags) { f.states = []string{"syn-sent,close-wait", "ESTAB"} }, nil, func(v *optView) {
			v.filter.States = tcpstate.MaskOf(tcpstate.SynSent, tcpstate.CloseWait, tcpstate.Established)
			v.tracer.Filter.States = v.filter.States
		}},
		{"state group", func(f *flags) { f.states = []string{"bucket"} }, nil, func(v *optView) {
			v.filter.States = tcpstate.MaskOf(tcpstate.SynRecv, tcpstate.TimeWait)
			v.tracer.Filter.States = v.filter.States
		}},
		{"state all", func(f *flags) { f.states = []string{"all"} }, nil, func(v *optView) {
			v.filter.States = tcpstate.All
			v.tracer.Filter.States = tcpstate.All
		}},
		{"dport", func(f *flags) { f.dports = []string{"9092"} }, nil, func(v *optView) {
			v.filter.DPorts = []events.PortRange{pr(9092, 9092)}
			v.tracer.Filter.DPorts = v.filter.DPorts
		}},
		{"dport colon", func(f *flags) { f.dports = []string{":9092"} }, nil, func(v *optView) {
			v.filter.DPorts = []events.PortRange{pr(9092, 9092)}
			v.tracer.Filter.DPorts = v.filter.DPorts
		}},
		{"sport ranges and names", func(f *flags) { f.sports = []string{"8000-8100,https", "22"} }, nil, func(v *optView) {
			v.filter.SPorts = []events.PortRange{pr(8000, 8100), pr(443, 443), pr(22, 22)}
			v.tracer.Filter.SPorts = v.filter.SPorts
		}},
		{"src and dst", func(f *flags) {
			f.srcs = []string{"10.1.2.3/8"}
			f.dsts = []string{"::1,[2001:db8::1]", "::ffff:192.0.2.7"}
		}, nil, func(v *optView) {
			v.filter.Src = []netip.Prefix{pfx("10.0.0.0/8")}
			v.filter.Dst = []netip.Prefix{pfx("::1/128"), pfx("2001:db8::1/128"), pfx("192.0.2.7/32")}
		}},
		{"pid and comm", func(f *flags) {
			f.pids = []string{"42,7"}
			f.comms = []string{"java", "kafka-server-start"}
		}, nil, func(v *optView) {
			v.filter.PIDs = []uint32{42, 7}
			v.filter.Comms = []string{"java", "kafka-server-st"}
		}},
		{"-4", func(f *flags) { f.ipv4 = true }, nil, func(v *optView) {
			v.filter.IPv4, v.tracer.Filter.IPv4 = true, true
		}},
		{"-6", func(f *flags) { f.ipv6 = true }, nil, func(v *optView) {
			v.filter.IPv6, v.tracer.Filter.IPv6 = true, true
		}},
		{"-4 -6", func(f *flags) { f.ipv4, f.ipv6 = true, true }, nil, func(v *optView) {
			v.filter.IPv4, v.tracer.Filter.IPv4 = true, true
			v.filter.IPv6, v.tracer.Filter.IPv6 = true, true
		}},
		{"output json", func(f *flags) { f.output = "json" }, nil, func(v *optView) { v.output = "json" }},
		{"-n -r", func(f *flags) { f.numeric, f.resolve = true, true }, nil, func(v *optView) {
			v.table = output.TableOptions{Numeric: true, Resolve: true}
		}},
		{"ring 64K", func(f *flags) { f.ringSize = "64K" }, nil, func(v *optView) { v.tracer.RingSize = 64 << 10 }},
		{"ring 64k", func(f *flags) { f.ringSize = "64k" }, nil, func(v *optView) { v.tracer.RingSize = 64 << 10 }},
		{"ring 8M", func(f *flags) { f.ringSize = "8M" }, nil, func(v *optView) { v.tracer.RingSize = 8 << 20 }},
		{"ring 4096", func(f *flags) { f.ringSize = "4096" }, nil, func(v *optView) { v.tracer.RingSize = 4096 }},
		{"ring 4K", func(f *flags) { f.ringSize = "4K" }, nil, func(v *optView) { v.tracer.RingSize = 4096 }},
		{"ring 1G", func(f *flags) { f.ringSize = "1G" }, nil, func(v *optView) { v.tracer.RingSize = 1 << 30 }},
		{"ring 1024M", func(f *flags) { f.ringSize = "1024M" }, nil, func(v *optView) { v.tracer.RingSize = 1 << 30 }},
		{"ring spaces", func(f *flags) { f.ringSize = " 256K " }, nil, func(v *optView) { v.tracer.RingSize = 256 << 10 }},
		{"ring empty", func(f *flags) { f.ringSize = "" }, nil, func(v *optView) { v.tracer.RingSize = 0 }},
		{"netns all", func(f *flags) { f.netns = "all" }, nil, func(v *optView) { v.netns = "all" }},
		{"attach tp_btf", func(f *flags) { f.attach = "tp_btf" }, nil, func(v *optView) { v.tracer.Attach = events.AttachTpBtf }},
		{"attach raw_tp", func(f *flags) { f.attach = "raw_tp" }, nil, func(v *optView) { v.tracer.Attach = events.AttachRawTp }},
		{"attach tracepoint", func(f *flags) { f.attach = "tracepoint" }, nil, func(v *optView) { v.tracer.Attach = events.AttachTracepoint }},
		{"kernel btf", func(f *flags) { f.kernelBTF = "/tmp/vmlinux.btf" }, nil, func(v *optView) { v.tracer.KernelBTF = "/tmp/vmlinux.btf" }},
		{"duration and ready file", func(f *flags) { f.duration, f.readyFile = 30*time.Second, "/tmp/ready" }, nil, func(v *optView) {
			v.duration, v.readyFile = 30*time.Second, "/tmp/ready"
		}},
		{"once", func(f *flags) { f.once = true }, nil, func(v *optView) { v.once = true }},
		{"no snapshot", func(f *flags) { f.noSnapshot = true }, nil, func(v *optView) { v.snapshot = false }},
		{"summary", func(f *flags) { f.summary = true }, nil, func(v *optView) { v.summary = true }},
		{"interval implies summary", func(f *flags) { f.interval = time.Minute }, nil, func(v *optView) {
			v.summary, v.interval = true, time.Minute
		}},
		{"fail after", func(f *flags) { f.failAfter = 1 }, nil, func(v *optView) { v.failAfter = 1 }},
		{"close wait after 0", func(f *flags) { f.closeWaitAfter = 0 }, nil, func(v *optView) { v.closeWaitAfter = 0 }},
		{"history 0", func(f *flags) { f.history = 0 }, nil, func(v *optView) { v.history = 0 }},
		{"everything kernel-side", func(f *flags) {
			f.states = []string{"connected"}
			f.sports = []string{"1-1024"}
			f.dports = []string{"9092,9093"}
			f.ipv6 = true
			f.srcs = []string{"fd00::/8"}
			f.pids = []string{"1"}
		}, nil, func(v *optView) {
			m, _ := tcpstate.ParseList("connected")
			v.filter.States = m
			v.filter.SPorts = []events.PortRange{pr(1, 1024)}
			v.filter.DPorts = []events.PortRange{pr(9092, 9092), pr(9093, 9093)}
			v.filter.IPv6 = true
			v.filter.Src = []netip.Prefix{pfx("fd00::/8")}
			v.filter.PIDs = []uint32{1}
			// Addresses and owners are for user space only.
			v.tracer.Filter = events.KernelFilter{States: m, IPv6: true,
				SPorts: v.filter.SPorts, DPorts: v.filter.DPorts}
		}},
	}
	for _, c := range tests {
		f := optDefaults()
		c.set(f)
		o, err := f.parse(c.args)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		want := baseView()
		c.want(&want)
		if got := viewOf(o); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: parsed to\n%+v\nwant\n%+v", c.name, got, want)
		}
	}
}

func TestParseNetnsPath(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Skipf("no /proc/self/ns/net: %v", err)
	}
	f := optDefaults()
	f.netns = "/proc/self/ns/net"
	o, err := f.parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Netns != "/proc/self/ns/net" || o.Filter.Netns != uint32(st.Ino) || o.Tracer.Filter.Netns != uint32(st.Ino) {
		t.Errorf("netns %q, filter %d, kernel filter %d; want inode %d",
			o.Netns, o.Filter.Netns, o.Tracer.Filter.Netns, st.Ino)
	}
}

func TestParseExpression(t *testing.T) {
	f := optDefaults()
	f.dports = []string{"9092"}
	o, err := f.parse([]string{"dport = :9092 and (", "state syn-sent", "or state syn-recv )"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Expr == nil {
		t.Fatal("no expression")
	}
	want, err := filter.ParseExpr([]string{"dport = :9092 and ( state syn-sent or state syn-recv )"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Expr.String() != want.String() {
		t.Errorf("expression %q, want %q", o.Expr.String(), want.String())
	}
	syn := filter.Subject{State: tcpstate.SynSent, Family: unix.AF_INET,
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), DPort: 9092}
	est := syn
	est.State = tcpstate.Established
	other := syn
	other.DPort = 9093
	for _, c := range []struct {
		s    filter.Subject
		want bool
	}{{syn, true}, {est, false}, {other, false}} {
		if got := o.Match(&c.s); got != c.want {
			t.Errorf("match(%v dport %d) = %v, want %v", c.s.State, c.s.DPort, got, c.want)
		}
	}
	// The --dport flag and the expression must both hold.
	f.dports = []string{"9093"}
	o, err = f.parse([]string{"dport", "=", ":9093"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Match(&other) || o.Match(&syn) {
		t.Errorf("flag and expression do not combine")
	}
	if o, err = optDefaults().parse([]string{"", " "}); err != nil {
		t.Errorf("blank arguments: %v", err)
	} else if o.Expr != nil {
		t.Errorf("blank arguments gave expression %q, want none", o.Expr.String())
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		set  func(f *flags)
		args []string
		want []string // substrings of the error
	}{
		{"state synsent", func(f *flags) { f.states = []string{"synsent"} }, nil,
			[]string{`bad --state value "synsent"`, `unknown TCP state "synsent"`, "syn-sent", "connected"}},
		{"state in a list", func(f *flags) { f.states = []string{"established", "syn-sent,bogus"} }, nil,
			[]string{`bad --state value "syn-sent,bogus"`, `"bogus"`}},
		{"state empty", func(f *flags) { f.states = []string{""} }, nil,
			[]string{`bad --state value ""`, "empty state name"}},
		{"state trailing comma", func(f *flags) { f.states = []string{"syn-sent,"} }, nil,
			[]string{`bad --state value "syn-sent,"`, "empty state name"}},
		{"dport 70000", func(f *flags) { f.dports = []string{"70000"} }, nil,
			[]string{`bad --dport value "70000"`, "0-65535"}},
		{"dport later value", func(f *flags) { f.dports = []string{"80", "443,65536"} }, nil,
			[]string{`bad --dport value "443,65536"`, `"65536"`, "0-65535"}},
		{"sport backwards", func(f *flags) { f.sports = []string{"8100-8000"} }, nil,
			[]string{`bad --sport value "8100-8000"`, "backwards"}},
		{"sport unknown service", func(f *flags) { f.sports = []string{"no-such-svc-xyz"} }, nil,
			[]string{`bad --sport value "no-such-svc-xyz"`}},
		{"sport empty item", func(f *flags) { f.sports = []string{"80,,81"} }, nil,
			[]string{`bad --sport value "80,,81"`, "empty port"}},
		{"src prefix", func(f *flags) { f.srcs = []string{"10.0.0.0/33"} }, nil,
			[]string{`bad --src value "10.0.0.0/33"`}},
		{"dst name", func(f *flags) { f.dsts = []string{"db.example"} }, nil,
			[]string{`bad --dst value "db.example"`, `bad address "db.example"`}},
		{"pid 0", func(f *flags) { f.pids = []string{"0"} }, nil,
			[]string{`bad --pid value "0"`, "positive"}},
		{"pid word", func(f *flags) { f.pids = []string{"java"} }, nil,
			[]string{`bad --pid value "java"`}},
		{"comm empty", func(f *flags) { f.comms = []string{"java,"} }, nil,
			[]string{`bad --comm value "java,"`, "empty process name"}},
		{"flight-dir alone", func(f *flags) { f.flightDir = "/tmp" }, nil,
			[]string{"--flight-dir goes with --flight-recorder D"}},
		{"flight-recorder without dir", func(f *flags) { f.flightRecorder, f.flightSize, f.flightMaxFiles = time.Minute, "64M", 1 }, nil,
			[]string{"--flight-recorder needs --flight-dir DIR"}},
		{"flight-recorder-size small", func(f *flags) {
			f.flightRecorder, f.flightDir, f.flightSize, f.flightMaxFiles = time.Minute, "/tmp", "1000", 1
		}, nil, []string{`bad --flight-recorder-size value "1000"`, "at least 4K"}},
		{"flight-dir missing", func(f *flags) {
			f.flightRecorder, f.flightDir, f.flightSize, f.flightMaxFiles = time.Minute, "/nonexistent/flight", "64M", 1
		}, nil, []string{"--flight-dir /nonexistent/flight", "create the directory first"}},
		{"flight-max-files 0", func(f *flags) { f.flightRecorder, f.flightDir, f.flightSize = time.Minute, "/tmp", "64M" }, nil,
			[]string{"bad --flight-max-files value 0"}},
		{"output yaml", func(f *flags) { f.output = "yaml" }, nil,
			[]string{`bad --output value "yaml": use one of table, json`}},
		{"output empty", func(f *flags) { f.output = "" }, nil,
			[]string{`bad --output value ""`}},
		{"output case", func(f *flags) { f.output = "JSON" }, nil,
			[]string{`bad --output value "JSON"`}},
		{"ring 3000", func(f *flags) { f.ringSize = "3000" }, nil,
			[]string{`bad --ring-size value "3000"`, "power of two", "64K"}},
		{"ring 2K", func(f *flags) { f.ringSize = "2K" }, nil,
			[]string{`bad --ring-size value "2K"`, "power of two from 4K to 1G"}},
		{"ring 2G", func(f *flags) { f.ringSize = "2G" }, nil,
			[]string{`bad --ring-size value "2G"`, "power of two from 4K to 1G"}},
		{"ring 0", func(f *flags) { f.ringSize = "0" }, nil,
			[]string{`bad --ring-size value "0"`}},
		{"ring 96K", func(f *flags) { f.ringSize = "96K" }, nil,
			[]string{`bad --ring-size value "96K"`, "power of two"}},
		{"ring words", func(f *flags) { f.ringSize = "big" }, nil,
			[]string{`bad --ring-size value "big"`, "want a size such as 4096, 64K or 8M"}},
		{"ring unit only", func(f *flags) { f.ringSize = "M" }, nil,
			[]string{`bad --ring-size value "M"`, "want a size"}},
		{"ring KB", func(f *flags) { f.ringSize = "64KB" }, nil,
			[]string{`bad --ring-size value "64KB"`}},
		{"ring negative", func(f *flags) { f.ringSize = "-64K" }, nil,
			[]string{`bad --ring-size value "-64K"`}},
		{"ring huge", func(f *flags) { f.ringSize = "4294967295G" }, nil,
			[]string{`bad --ring-size value "4294967295G"`}},
		{"cri-socket relative", func(f *flags) { f.criSocket = "run/containerd/containerd.sock" }, nil,
			[]string{`bad --cri-socket value "run/containerd/containerd.sock"`, "absolute path", "none"}},
		{"attach foo", func(f *flags) { f.attach = "foo" }, nil,
			[]string{`bad --attach value "foo": use one of auto, tp_btf, raw_tp, tracepoint`}},
		{"attach empty", func(f *flags) { f.attach = "" }, nil,
			[]string{`bad --attach value ""`}},
		{"once no-snapshot", func(f *flags) { f.once, f.noSnapshot = true, true }, nil,
			[]string{"--once", "--no-snapshot"}},
		{"once duration", func(f *flags) { f.once, f.duration = true, 5*time.Second }, nil,
			[]string{"--once", "--duration"}},
		{"once ready file", func(f *flags) { f.once, f.readyFile = true, "/tmp/r" }, nil,
			[]string{"--once", "--ready-file"}},
		{"once summary", func(f *flags) { f.once, f.summary = true, true }, nil,
			[]string{"--once", "--summary"}},
		{"once interval", func(f *flags) { f.once, f.interval = true, time.Minute }, nil,
			[]string{"--once", "--interval"}},
		{"negative duration", func(f *flags) { f.duration = -5 * time.Second }, nil,
			[]string{"bad --duration value -5s", "positive"}},
		{"negative interval", func(f *flags) { f.interval = -time.Second }, nil,
			[]string{"bad --interval value -1s"}},
		{"negative close-wait-after", func(f *flags) { f.closeWaitAfter = -time.Second }, nil,
			[]string{"bad --close-wait-after value -1s"}},
		{"fail-after 0", func(f *flags) { f.failAfter = 0 }, nil,
			[]string{"bad --fail-after value 0"}},
		{"negative history", func(f *flags) { f.history = -1 }, nil,
			[]string{"bad --history value -1"}},
		{"negative reconcile interval", func(f *flags) { f.reconcileEvery = -time.Second }, nil,
			[]string{"bad --reconcile-every value -1s", "30s"}},
		{"negative socket cap", func(f *flags) { f.maxSockets = -1 }, nil,
			[]string{"bad --max-sockets value -1"}},
		{"unknown event kind", func(f *flags) { f.events = []string{"retransmit,dorps"} }, nil,
			[]string{`bad --events value "retransmit,dorps"`, "retransmit, reset, error, drop or all"}},
		{"netns missing", func(f *flags) { f.netns = "/nonexistent/netns/x" }, nil,
			[]string{`bad --netns value "/nonexistent/netns/x"`, "does not exist", "all"}},
		{"netns unknown name", func(f *flags) { f.netns = "socktrace-no-such-netns" }, nil,
			[]string{`bad --netns value "socktrace-no-such-netns"`, `no network namespace named "socktrace-no-such-netns"`,
				"/run/netns/socktrace-no-such-netns", "ip netns list", "/proc/PID/ns/net"}},
		{"netns ALL", func(f *flags) { f.netns = "ALL" }, nil,
			[]string{`bad --netns value "ALL"`}},
		{"expression keyword", nil, []string{"bogus"},
			[]string{"bad filter expression", `unknown keyword "bogus"`}},
		{"expression port", nil, []string{"dport", "=", ":nosuchservice"},
			[]string{"bad filter expression", `"nosuchservice"`, "TCP service name", "dport = :nosuchservice"}},
		{"expression state", nil, []string{"state synsent"},
			[]string{"bad filter expression", `unknown TCP state "synsent"`}},
		{"expression unbalanced", nil, []string{"( dport = :80"},
			[]string{"bad filter expression", "unbalanced"}},
		{"expression missing port", nil, []string{"dport ="},
			[]string{"bad filter expression", `"dport" needs a port`}},
	}
	for _, c := range tests {
		f := optDefaults()
		if c.set != nil {
			c.set(f)
		}
		o, err := f.parse(c.args)
		if err == nil {
			t.Errorf("%s: parsed to %+v, want an error", c.name, viewOf(o))
			continue
		}
		if o != nil {
			t.Errorf("%s: options returned with the error", c.name)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
}

func TestParseExpressionErrorType(t *testing.T) {
	_, err := optDefaults().parse([]string{"dport", "=", ":nosuchservice"})
	var se *filter.SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *filter.SyntaxError", err, err)
	}
	if se.Input != "dport = :nosuchservice" || se.Token != ":nosuchservice" || se.Pos != 8 {
		t.Errorf("SyntaxError input %q token %q pos %d; want %q %q 8", se.Input, se.Token, se.Pos, "dport = :nosuchservice", ":nosuchservice")
	}
}

// TestParseErrorWrapping: flag errors keep the parser's error inside.
func TestParseErrorWrapping(t *testing.T) {
	f := optDefaults()
	f.states = []string{"synsent"}
	_, err := f.parse(nil)
	_, inner := tcpstate.Parse("synsent")
	if err == nil || inner == nil || err.Error() != `bad --state value "synsent": `+inner.Error() {
		t.Errorf("error %v, want the tcpstate error wrapped", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("error %v does not wrap", err)
	}
}

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"4096", 4096},
		{"8192", 8192},
		{"4K", 4 << 10},
		{"4k", 4 << 10},
		{"64K", 64 << 10},
		{"1M", 1 << 20},
		{"8M", 8 << 20},
		{"8m", 8 << 20},
		{"512M", 512 << 20},
		{"1G", 1 << 30},
		{"1g", 1 << 30},
		{"1073741824", 1 << 30},
		{"1048576K", 1 << 30},
		{" 64K", 64 << 10},
		{"0064K", 64 << 10},
	}
	for _, c := range good {
		got, err := parseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []string{"0", "1", "2048", "3000", "4097", "6K", "2K", "2G", "1T", "2048M",
		"K", "abc", "-4K", "+4K", "4 K", "4KB", "4KiB", "0x1000", "1.5M", "18446744073709551616"}
	for _, in := range bad {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestHelpValueNames: --help names every flag's value with a placeholder
// in capitals (D for a duration, as in the README), never with pflag's
// type name ("--duration duration").
func TestHelpValueNames(t *testing.T) {
	durations := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			name, _ := pflag.UnquoteUsage(f)
			if f.Value.Type() == "duration" {
				durations[f.Name] = true
				if name != "D" {
					t.Errorf("%s --%s shows its value as %q, want D (as the other durations)", c.CommandPath(), f.Name, name)
				}
			}
			if name != strings.ToUpper(name) {
				t.Errorf("%s --%s shows its value as %q (pflag's type name), want a placeholder in capitals: put it in backquotes in the usage", c.CommandPath(), f.Name, name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRootCmd()
	walk(root)
	if !durations["duration"] || !durations["interval"] {
		t.Fatalf("no --duration or --interval flag seen: %v", durations)
	}
	if u := root.Flags().FlagUsages(); !strings.Contains(u, "--duration D ") {
		t.Errorf("--help does not show --duration D:\n%s", u)
	}
}
