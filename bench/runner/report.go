package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

type report struct {
	cfg               *config
	started, finished time.Time
	waited            string
	machine           [][2]string
	loadStart         string
	loadEnd           string
	loadAfter         []string
	cal               *calibration
	throughput        []trial
	lossy             []trial
	storm             []stormTrial
	reports           []reportRun
	hostwide          []trial
	memory            []trial
	snapshot          []snapRun
	startup           []startRun
	soak              *soakResult
	soakOTLP          *otlpSoak // -soak-otlp: soak is its Plain
	profile           *profile
	micro             []microResult
	microCmd          string
	notes             []string
}

func run(name string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func describeMachine(c *config) [][2]string {
	cpu, flags := "?", ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if k == "model name" && cpu == "?" {
				cpu = v
			}
			if k == "flags" && flags == "" {
				flags = v
			}
		}
	}
	if strings.Contains(" "+flags+" ", " hypervisor ") {
		cpu += " (virtual machine)"
	}
	mem := "?"
	if kib := meminfoKiB("MemTotal"); kib > 0 {
		mem = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
	}
	commit := run("git", "-C", c.repo, "rev-parse", "HEAD")
	cmd := exec.Command("git", "-C", c.repo, "status", "--porcelain", "--untracked-files=no")
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0") // read only: no index refresh
	if b, err := cmd.Output(); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		commit += " (with uncommitted changes to tracked files)"
	}
	pkgs := run("dpkg-query", "-W", "-f=${Package} ${Version}, ", "libbpf-tools", "bpftrace", "iproute2", "linux-perf")
	return [][2]string{
		{"CPU", cpu},
		{"cores", fmt.Sprint(runtime.NumCPU())},
		{"kernel", run("uname", "-r")},
		{"memory", mem},
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
		{"socktrace commit", commit},
		{"socktrace --version", run(c.socktrace, "--version")},
		{"peers (Debian packages)", strings.TrimSuffix(pkgs, ",")},
		{"bpftrace script", c.btScript},
		{"Go", run(c.goBin, "version")},
	}
}

func meminfoKiB(field string) int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			var n int64
			fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(l, field+":")), &n)
			return n
		}
	}
	return 0
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minmax(xs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// group selects trials.
func group(ts []trial, tracer, target string) []trial {
	var out []trial
	for _, t := range ts {
		if t.Tracer == tracer && (target == "" || t.Target == target) {
			out = append(out, t)
		}
	}
	return out
}

func field(ts []trial, f func(trial) float64) []float64 {
	var out []float64
	for _, t := range ts {
		out = append(out, f(t))
	}
	return out
}

// toolLoss is what the tool lost itself: transitions its BPF program ran
// for that never reached its output (buffer overflow, or dropped). It is
// at most what is missing beyond the kernel's skips, and at most the
// program's runs beyond what the tool reported (runs include the rest of
// the host's transitions, so this bound is loose for tools that trace the
// whole host, exact for socktrace --netns on a quiet host).
func toolLoss(t trial) int64 {
	n := t.Missing - kernelSkipped(t)
	if t.BPFcnt > 0 {
		if runs := int64(t.BPFcnt) - t.Counted; runs < n {
			n = runs
		}
	}
	// socktrace: its primary state program's runs and misses are every
	// time the kernel fired the tracepoint (of any socket); what it
	// neither reported nor said it skipped is at most its own loss. A
	// transition the load should have made but the kernel ran no program
	// for is then unaccounted, not the tool's.
	if inv, ok := primaryInvocations(t); ok {
		if own := inv - t.Counted - kernelSkipped(t); own < n {
			n = own
		}
	}
	if n < 0 {
		n = 0
	}
	return n
}

// unaccounted is what is missing that neither the kernel counted as
// skipped nor the tool lost: transitions the program never ran for,
// uncounted. Negative: more reported than the load made.
func unaccounted(t trial) int64 { return t.Missing - kernelSkipped(t) - toolLoss(t) - notRun(t) }

// kernelSkipped is how many transitions the kernel ran none of the
// tool's state programs for. For the peers, their program's recursion
// misses. socktrace has a second program that runs for most of the
// primary's misses (its backup): its own count of skipped transitions,
// the primary's misses less those the backup emitted, is the figure (the
// misses of all its programs together count the rescued ones too).
func kernelSkipped(t trial) int64 {
	if strings.HasPrefix(t.Tracer, "socktrace") {
		return t.SaidSkipped
	}
	return int64(t.KMiss)
}

// lossless: in every round, every transition the kernel ran the tool's
// program for was reported, and the tool said it lost none.
func lossless(ts []trial) bool {
	if len(ts) == 0 {
		return false
	}
	for _, t := range ts {
		if t.Err != "" || toolLoss(t) > 0 || t.Reported != 0 {
			return false
		}
	}
	return true
}

// complete: in every round, every transition was reported.
func complete(ts []trial) bool {
	if len(ts) == 0 {
		return false
	}
	for _, t := range ts {
		if t.Err != "" || t.Missing != 0 {
			return false
		}
	}
	return true
}

func ratio(a, b int64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func cpuPerM(t trial) float64 {
	if t.Counted == 0 {
		return math.NaN()
	}
	return t.CPU / (float64(t.Counted) / 1e6)
}

func bpfPerEvent(t trial) float64 {
	if t.BPFcnt == 0 {
		return math.NaN()
	}
	return float64(t.BPFns) / float64(t.BPFcnt)
}

func f0(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.0f", x)
}

func f1(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.1f", x)
}

func f2(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

func thousands(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	s := fmt.Sprintf("%.0f", x)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func mib(kib float64) string {
	if math.IsNaN(kib) || kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", kib/1024)
}

func (r *report) label(name string) string {
	if name == "none" {
		return "(no tracer)"
	}
	if t := tracerByName(name); t != nil {
		return t.label
	}
	return name
}

// commonLosslessRate is the highest fixed rate at which every tracer
// lost nothing in every round: the fairest place to compare CPU costs.
func (r *report) commonLosslessRate() string {
	best := ""
	for _, rt := range r.cfg.rates {
		if rt.perSec == 0 {
			continue
		}
		ok := true
		for _, name := range r.cfg.tracers {
			if !lossless(group(r.throughput, name, rt.label)) {
				ok = false
			}
		}
		if ok {
			best = rt.label
		}
	}
	if best == "" && len(r.cfg.rates) > 0 {
		best = r.cfg.rates[0].label
	}
	return best
}

// highestLossless returns the highest transitions/s (median made) at a
// rate where the tracer lost nothing in every round, and whether that
// was the max rate.
func (r *report) highestLossless(name string) (float64, bool) {
	best, atMax := math.NaN(), false
	for _, rt := range r.cfg.rates {
		g := group(r.throughput, name, rt.label)
		if !lossless(g) {
			continue
		}
		v := median(field(g, func(t trial) float64 { return t.ConnRate * float64(perConn) }))
		if math.IsNaN(best) || v > best {
			best, atMax = v, rt.perSec == 0
		}
	}
	return best, atMax
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c := r.cfg
	w("# socktrace benchmark results\n\n")
	w("Made by `make bench` (bench/runner) in %s. Every scenario runs socktrace and its peers in the same run, alternating them, over several rounds; figures are medians over the rounds unless said otherwise. How it is measured: bench/README.md.\n\n", r.finished.Sub(r.started).Round(time.Second))
	w("## Machine\n\n| | |\n|---|---|\n")
	for _, kv := range r.machine {
		w("| %s | %s |\n", kv[0], strings.ReplaceAll(kv[1], "|", "\\|"))
	}
	w("| load average (1, 5, 15 min) | at start %s; after %s; at end %s |\n", r.loadStart, strings.Join(r.loadAfter, "; "), r.loadEnd)
	if r.waited != "" {
		w("| waiting for a quiet machine | %s |\n", r.waited)
	}
	w("\n")

	if r.cal != nil {
		w("## Transitions per connection\n\n")
		w("The load generator (bench/loadgen) runs client and server in a network namespace of its own, on loopback; the server closes first. Traced with socktrace, %d connections made %d transitions: **%d per connection** (5 per side) plus 2 for the listener, each kind exactly once per connection:\n\n", r.cal.Conns, r.cal.Total, r.cal.PerConn)
		kinds := make([]string, 0, len(r.cal.ByKind))
		for k := range r.cal.ByKind {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		w("| transition | count |\n|---|---|\n")
		for _, k := range kinds {
			w("| %s | %d |\n", k, r.cal.ByKind[k])
		}
		w("\nEvery later trial expects `%d × connections + 2` transitions and counts each tool's output against it.\n\n", r.cal.PerConn)
	}

	if len(r.throughput) > 0 {
		common := r.commonLosslessRate()
		none := median(field(group(r.throughput, "none", "max"), func(t trial) float64 { return t.ConnRate }))
		w("## Summary\n\n")
		w("Transitions are counted against what the load made (10 a connection). *Missing* ones split into those the kernel never ran the tool's BPF program for (*kernel-skipped*: the program was already running on that CPU when a softirq made another transition; the kernel counts these as the program's recursion misses) and the tool's own loss (its buffer overflowed, or it dropped them).\n\n")
		w("| tool | highest churn without loss of its own (transitions/s) | at max churn: missing / kernel-skipped / said lost (median of rounds) | CPU s per million transitions at %s conn/s | CPU s per million at max churn | workload conn/s at max churn (vs no tracer) | kernel BPF ns per transition | peak RSS (VmHWM) at max churn (MiB) |\n", common)
		w("|---|---|---|---|---|---|---|---|\n")
		w("| (no tracer) | | | | | %s | | |\n", thousands(none))
		for _, name := range c.tracers {
			hl, atMax := r.highestLossless(name)
			hls := thousands(hl)
			if atMax {
				hls = "≥ " + hls + " (the most the load reached)"
			} else if math.IsNaN(hl) {
				hls = "none of the rates tried"
			}
			mx := group(r.throughput, name, "max")
			cr := median(field(mx, func(t trial) float64 { return t.ConnRate }))
			all := group(r.throughput, name, "")
			w("| %s | %s | %s / %s / %s | %s | %s | %s (%+.1f%%) | %s | %s |\n", r.label(name), hls,
				thousands(median(field(mx, func(t trial) float64 { return float64(t.Missing) }))),
				thousands(median(field(mx, func(t trial) float64 { return float64(t.KMiss) }))),
				thousands(median(field(mx, func(t trial) float64 { return float64(t.Reported) }))),
				f2(median(field(group(r.throughput, name, common), cpuPerM))),
				f2(median(field(mx, cpuPerM))),
				thousands(cr), (cr/none-1)*100,
				f0(median(field(all, bpfPerEvent))),
				mib(median(field(mx, func(t trial) float64 { return float64(t.HWM) }))))
		}
		w("\n")
	}

	r.targets(w)

	if len(r.throughput) > 0 {
		w("## 1-2. Event throughput and cost\n\n")
		w("Each trial: a fresh namespace; the tool is started and waited for until attached; the load generator runs %d workers for %s at the target rate (max: as fast as they go); the tool is then left to drain until its output stops growing, and stopped with SIGINT. Output goes to a file on tmpfs. socktrace is restricted to the namespace with `--netns /proc/PID/ns/net` (in the kernel); tcpstates and bpftrace cannot be, so they trace the whole host and the lines with the benchmark's address are counted. *missing* = expected − reported transitions = *kernel-skipped* (runs the kernel did not make: the program was already running on that CPU) + the tool's *own loss* (its program ran, nothing came out: at most its runs minus what it reported) + *unaccounted* (neither: transitions the program was never run for, and the kernel did not count; seen with every tool, rarely); *said lost* = what the tool itself said it lost. CPU is the tool's user+system time from the start of the load to its exit (rusage), per million transitions it reported. *BPF ns* is the kernel's own time in the tool's BPF program per run (kernel.bpf_stats_enabled), which the traced workload pays. *Transitions per wake-up*: reported transitions per voluntary context switch of the tool (each time it slept waiting for more); *per write()*: per write system call (/proc/PID/io syscw).\n\n", c.workers, c.duration)
		w("| tool | target conn/s | conn/s made | transitions/s made | reported | missing: median (max) | kernel-skipped | tool's own loss | unaccounted | said lost | rounds without own loss | complete rounds | CPU s / M | BPF ns | transitions per wake-up | per write() | drain s | VmHWM MiB |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, rt := range c.rates {
			for _, name := range append([]string{"none"}, c.tracers...) {
				g := group(r.throughput, name, rt.label)
				if len(g) == 0 {
					continue
				}
				cr := median(field(g, func(t trial) float64 { return t.ConnRate }))
				_, mxMiss := minmax(field(g, func(t trial) float64 { return float64(t.Missing) }))
				own, full := 0, 0
				for _, t := range g {
					if lossless([]trial{t}) {
						own++
					}
					if complete([]trial{t}) {
						full++
					}
				}
				if name == "none" {
					w("| %s | %s | %s | %s | | | | | | | | | | | | | | |\n", r.label(name), rt.label, thousands(cr), thousands(cr*float64(perConn)))
					continue
				}
				w("| %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s | %d/%d | %d/%d | %s | %s | %s | %s | %s | %s |\n", r.label(name), rt.label, thousands(cr), thousands(cr*float64(perConn)),
					thousands(median(field(g, func(t trial) float64 { return float64(t.Counted) }))),
					thousands(median(field(g, func(t trial) float64 { return float64(t.Missing) }))), thousands(mxMiss),
					thousands(median(field(g, func(t trial) float64 { return float64(t.KMiss) }))),
					thousands(median(field(g, func(t trial) float64 { return float64(toolLoss(t)) }))),
					thousands(median(field(g, func(t trial) float64 { return float64(unaccounted(t)) }))),
					thousands(median(field(g, func(t trial) float64 { return float64(t.Reported) }))),
					own, len(g), full, len(g),
					f2(median(field(g, cpuPerM))), f0(median(field(g, bpfPerEvent))),
					f1(median(field(g, func(t trial) float64 { return ratio(t.Counted, t.Sleeps) }))),
					f1(median(field(g, func(t trial) float64 { return ratio(t.Counted, t.Writes) }))),
					f1(median(field(g, func(t trial) float64 { return t.Drain }))),
					mib(median(field(g, func(t trial) float64 { return float64(t.HWM) }))))
			}
		}
		w("\n")
	}

	r.lossyMarkdown(w)
	r.stormMarkdown(w)
	r.reportMarkdown(w)
	r.hostwideMarkdown(w)

	if len(r.snapshot) > 0 {
		w("## 3. Snapshot: listing established sockets\n\n")
		w("A load generator holds N/2 loopback connections (N established sockets and a listener) in its namespace. ss runs in it through `nsenter --net=/proc/PID/ns/net`; socktrace takes `--netns /proc/PID/ns/net`. Output goes to a file on tmpfs. `ss -tan` neither reads /proc nor shows processes; `ss -tanp` finds each socket's process in /proc/*/fd; socktrace (`--once` always, `socktrace ss` with -p) asks the kernel with a BPF task_file iterator (Linux 5.11+; /proc/*/fd where it cannot). Wall time from launch to exit; peak RSS is the command's own maximum resident set, from GNU time.\n\n")
		w("Target (issue 28): `socktrace --once -o json` (with owners) and `socktrace ss -tan` each at most 0.8× `ss -tan` (without owners), at every size.\n\n")
		w("| sockets | command | wall ms: median (min–max) | vs ss -tan | target ≤ 0.8× ss -tan | vs ss -tanp | CPU ms | peak RSS MiB | listed all |\n|---|---|---|---|---|---|---|---|---|\n")
		sizes := []int{}
		for _, s := range r.snapshot {
			if len(sizes) == 0 || sizes[len(sizes)-1] != s.Sockets {
				sizes = append(sizes, s.Sockets)
			}
		}
		for _, n := range sizes {
			med := map[string]float64{}
			for _, sc := range snapCmds {
				var walls []float64
				for _, s := range r.snapshot {
					if s.Sockets == n && s.Cmd == sc.label {
						walls = append(walls, s.Wall*1000)
					}
				}
				med[sc.label] = median(walls)
			}
			for _, sc := range snapCmds {
				var walls, cpus, rss []float64
				okAll := true
				for _, s := range r.snapshot {
					if s.Sockets == n && s.Cmd == sc.label {
						walls, cpus, rss = append(walls, s.Wall*1000), append(cpus, s.CPU*1000), append(rss, float64(s.MaxRSS))
						okAll = okAll && s.Err == ""
					}
				}
				if len(walls) == 0 {
					continue
				}
				lo, hi := minmax(walls)
				m := median(walls)
				target := ""
				if sc.label == "socktrace --once -o json --netns" || sc.label == "socktrace ss -tan" {
					target = metOrNot(m <= 0.8*med["ss -tan"])
				}
				w("| %s | `%s` | %s (%s–%s) | %s× | %s | %s× | %s | %s | %v |\n", thousands(float64(n)), sc.label, f1(m), f1(lo), f1(hi),
					f2(m/med["ss -tan"]), target, f2(m/med["ss -tanp"]), f0(median(cpus)), mib(median(rss)), okAll)
			}
		}
		w("\n")
	}

	if len(r.startup) > 0 {
		w("## 4. Start-up: launch to attached\n\n")
		w("socktrace: until its `--ready-file` appears (it is written once the program is attached and, by default, the socket list of its namespace taken); tcpstates (run with `stdbuf -oL` so its header is not held in a stdio buffer) and bpftrace: until they print their header line, which both do right after attaching. CPU is for the whole run (start, 0.3 s attached, SIGINT); peak RSS is VmHWM just before the SIGINT.\n\n")
		w("`socktrace --once` is timed from launch to exit (the list of its namespace written to /dev/null). Target (issue 28): socktrace ready within 150 ms on an idle host; tcpstates' time is the yardstick of the same run.\n\n")
		w("| tool | ms to attached: median (min–max) | vs tcpstates | target ≤ 150 ms | CPU ms | peak RSS MiB |\n|---|---|---|---|---|---|\n")
		var tcp float64 = math.NaN()
		for _, t := range startTools {
			if strings.HasPrefix(t.label, "tcpstates") {
				tcp = median(field2(r.startup, t.label, func(s startRun) float64 { return s.Attach * 1000 }))
			}
		}
		for _, t := range startTools {
			a := field2(r.startup, t.label, func(s startRun) float64 { return s.Attach * 1000 })
			if len(a) == 0 {
				continue
			}
			lo, hi := minmax(a)
			m := median(a)
			target := ""
			if strings.HasPrefix(t.label, "socktrace") {
				target = metOrNot(m <= 150)
			}
			w("| %s | %s (%s–%s) | %s× | %s | %s | %s |\n", t.label, f1(m), f1(lo), f1(hi), f2(m/tcp), target,
				f0(median(field2(r.startup, t.label, func(s startRun) float64 { return s.CPU * 1000 }))),
				mib(median(field2(r.startup, t.label, func(s startRun) float64 { return float64(s.MaxRSS) }))))
		}
		for _, s := range r.startup {
			if s.Err != "" {
				w("\n- round %d, %s: %s", s.Round, s.Tool, s.Err)
			}
		}
		w("\n")
	}

	if len(r.memory) > 0 {
		w("## 5. Memory after 1 million transitions\n\n")
		w("%s connections (%s transitions) as fast as the load goes, under each tool; VmHWM (peak resident set) read from /proc just before the tool is stopped.\n\n", thousands(float64(c.memConns)), thousands(float64(c.memConns*perConn+listenerTransitions)))
		w("| tool | VmHWM MiB: median (max) | missing (median) | conn/s |\n|---|---|---|---|\n")
		for _, name := range c.memTracers {
			g := group(r.memory, name, "")
			if len(g) == 0 {
				continue
			}
			h := field(g, func(t trial) float64 { return float64(t.HWM) })
			_, hi := minmax(h)
			w("| %s | %s (%s) | %s | %s |\n", r.label(name), mib(median(h)), mib(hi),
				thousands(median(field(g, func(t trial) float64 { return float64(t.Missing) }))),
				thousands(median(field(g, func(t trial) float64 { return t.ConnRate }))))
		}
		w("\n")
	}

	if r.soakOTLP != nil {
		r.soakOTLP.markdown(w)
	} else if r.soak != nil {
		r.soak.markdown(w)
	}

	if p := r.profile; p != nil {
		w("## Profile: where socktrace's CPU goes at the highest churn\n\n")
		w("`perf record -F 1999 -g -p PID` on `socktrace -o json --netns` during a max-churn trial (%s transitions reported in %.1fs of load; %.2f CPU s). ", thousands(float64(p.Events)), p.Seconds, p.CPU)
		if p.Err != "" {
			w("Note: %s. ", p.Err)
		}
		w("Sampling is by cpu-clock (no PMU in a VM): time with interrupts off in the kernel is charged where they come back on, typically `finish_task_switch` after a sleep. Self time by function ([k]: kernel):\n\n| self %% | function |\n|---|---|\n")
		for _, e := range p.Self {
			w("| %.1f | `%s` |\n", e.Pct, e.Sym)
		}
		if len(p.Total) > 0 {
			w("\nTime including callees, for socktrace's own functions and the chief library and runtime ones:\n\n| total %% | function |\n|---|---|\n")
			for _, e := range p.Total {
				w("| %.1f | `%s` |\n", e.Pct, e.Sym)
			}
		}
		w("\n")
	}

	if len(r.micro) > 0 {
		w("## Go micro-benchmarks\n\n`%s`\n\n| package | benchmark | results |\n|---|---|---|\n", r.microCmd)
		for _, m := range r.micro {
			w("| %s | %s | %s |\n", m.Pkg, m.Name, strings.Join(m.Metrics, ", "))
		}
		w("\n")
	}

	if len(r.notes) > 0 {
		w("## Notes\n\n")
		for _, n := range r.notes {
			w("- %s\n", n)
		}
		w("\n")
	}

	if len(r.throughput)+len(r.lossy)+len(r.hostwide)+len(r.memory) > 0 {
		w("## All trials\n\n| scenario | round | tool | target | conns | conn/s | expected | reported | missing | kernel-skipped | said skipped | said lost | CPU s | BPF ns | attach ms | drain s | VmHWM MiB | per wake-up | load1 | error |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, t := range append(append(append(append([]trial{}, r.throughput...), r.lossy...), r.hostwide...), r.memory...) {
			w("| %s | %d | %s | %s | %d | %s | %d | %d | %d | %d | %d | %d | %.2f | %s | %.0f | %.1f | %s | %s | %.2f | %s |\n", t.Scenario, t.Round, t.Tracer, t.Target, t.Conns, thousands(t.ConnRate),
				t.Expected, t.Counted, t.Missing, t.KMiss, t.SaidSkipped, t.Reported, t.CPU, f0(bpfPerEvent(t)), t.AttachSec*1000, t.Drain, mib(float64(t.HWM)), f1(ratio(t.Counted, t.Sleeps)), t.Load1, strings.ReplaceAll(t.Err, "|", "/"))
		}
		w("\n")
	}
	return b.String()
}

func field2(rs []startRun, tool string, f func(startRun) float64) []float64 {
	var out []float64
	for _, r := range rs {
		if r.Tool == tool && r.Err == "" {
			out = append(out, f(r))
		}
	}
	return out
}

// targets checks the figures the benchmark is judged on.
func (r *report) targets(w func(string, ...any)) {
	var lines []string
	yes := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**not met**"
	}
	if len(r.throughput) > 0 {
		for _, name := range []string{"socktrace", "socktrace-nosnap"} {
			g := group(r.throughput, name, "max")
			if len(g) == 0 {
				continue
			}
			var per []string
			for _, t := range g {
				per = append(per, fmt.Sprintf("%d (%d skipped, %d own, %d unaccounted)", t.Missing, kernelSkipped(t), toolLoss(t), unaccounted(t)))
			}
			cr := median(field(g, func(t trial) float64 { return t.ConnRate }))
			verdict := yes(complete(g))
			if !complete(g) && lossless(g) {
				verdict = "**not met** strictly (socktrace itself lost nothing: the kernel did not run its program for those)"
			}
			lines = append(lines, fmt.Sprintf("| zero loss at the highest churn the loopback makes (`%s`) | %s transitions/s made; missing in each round: %s | %s |",
				r.label(name), thousands(cr*float64(perConn)), strings.Join(per, "; "), verdict))
		}
		common := r.commonLosslessRate()
		st := median(field(group(r.throughput, "socktrace", common), cpuPerM))
		tc := median(field(group(r.throughput, "tcpstates", common), cpuPerM))
		if !math.IsNaN(st) && !math.IsNaN(tc) {
			lines = append(lines, fmt.Sprintf("| socktrace CPU per transition ≤ tcpstates (at %s conn/s, both lossless) | %s vs %s CPU s per million (%.2f×) | %s |", common, f2(st), f2(tc), st/tc, yes(st <= tc)))
		}
		stm := median(field(group(r.throughput, "socktrace", "max"), cpuPerM))
		tcm := median(field(group(r.throughput, "tcpstates", "max"), cpuPerM))
		if !math.IsNaN(stm) && !math.IsNaN(tcm) {
			lines = append(lines, fmt.Sprintf("| the same at max churn (per transition reported) | %s vs %s CPU s per million (%.2f×) | %s |", f2(stm), f2(tcm), stm/tcm, yes(stm <= tcm)))
		}
	}
	if len(r.snapshot) > 0 {
		big := 0
		for _, s := range r.snapshot {
			if s.Sockets > big {
				big = s.Sockets
			}
		}
		wall := func(cmd string) float64 {
			var xs []float64
			for _, s := range r.snapshot {
				if s.Sockets == big && s.Cmd == cmd {
					xs = append(xs, s.Wall*1000)
				}
			}
			return median(xs)
		}
		a, b := wall("socktrace --once -o json --netns"), wall("ss -tan")
		lines = append(lines, fmt.Sprintf("| `socktrace --once -o json` ≤ `ss -tan` wall time, %s sockets | %s ms vs %s ms (%.2f×) | %s |", thousands(float64(big)), f1(a), f1(b), a/b, yes(a <= b)))
		a2, b2 := wall("socktrace --once -n --netns"), wall("ss -tanp")
		lines = append(lines, fmt.Sprintf("| (with processes) `socktrace --once` vs `ss -tanp`, %s sockets | %s ms vs %s ms (%.2f×) | %s |", thousands(float64(big)), f1(a2), f1(b2), a2/b2, yes(a2 <= b2)))
	}
	if g := group(r.memory, "socktrace", ""); len(g) > 0 {
		_, hi := minmax(field(g, func(t trial) float64 { return float64(t.HWM) }))
		lines = append(lines, fmt.Sprintf("| `socktrace -o json` resident memory ≤ 24 MiB after %s transitions | VmHWM %s MiB (worst round) | %s |", thousands(float64(r.cfg.memConns*perConn)), mib(hi), yes(hi > 0 && hi <= 24*1024)))
	}
	lines = append(lines, r.soakMemoryTargets(yes)...)
	lines = append(lines, r.lossyTargets(yes)...)
	lines = append(lines, r.stormTargets(yes)...)
	lines = append(lines, r.reportTargets(yes)...)
	lines = append(lines, r.otlpTargets(yes)...)
	lines = append(lines, r.hostwideTargets(yes)...)
	if len(lines) == 0 {
		return
	}
	w("## Targets\n\n| target | measured | |\n|---|---|---|\n%s\n\n", strings.Join(lines, "\n"))
}

// primaryInvocations is how many times the kernel fired the state
// tracepoint while socktrace ran: its primary program's runs plus its
// recursion misses (the backup runs as often; the hooks are other
// tracepoints).
func primaryInvocations(t trial) (int64, bool) {
	if !strings.HasPrefix(t.Tracer, "socktrace") {
		return 0, false
	}
	for _, p := range t.Progs {
		switch p.Name {
		case "tp_btf_cookie", "tp_btf_core", "raw_tp", "tracepoint":
			return int64(p.Cnt + p.Misses), true
		}
	}
	return 0, false
}

// metOrNot says whether a target is met, for the report's target columns.
func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// soakMemoryTargets: the agent idle at most 24 MiB resident, at most 40
// MiB at any point of the soak, and no upward slope after the first
// cycle (the last cycle within 2 MiB of the second).
func (r *report) soakMemoryTargets(yes func(bool) string) []string {
	s := r.soak
	if s == nil || len(s.Cycles) == 0 {
		return nil
	}
	var lines []string
	if s.IdleRSS > 0 {
		lines = append(lines, fmt.Sprintf("| agent resident memory idle ≤ 24 MiB | VmRSS %s MiB, at its defaults, %s after ready | %s |", mib(float64(s.IdleRSS)), soakIdle, yes(s.IdleRSS <= 24*1024)))
	}
	peak := max(s.maxRSS(), s.HWM)
	lines = append(lines, fmt.Sprintf("| agent resident memory ≤ 40 MiB at any point of the soak | VmRSS at most %s MiB after a cycle; VmHWM %s MiB | %s |", mib(float64(s.maxRSS())), mib(float64(s.HWM)), yes(peak > 0 && peak <= 40*1024)))
	if len(s.Cycles) >= 2 {
		second, last := s.Cycles[1].RSS, s.Cycles[len(s.Cycles)-1].RSS
		lines = append(lines, fmt.Sprintf("| no upward slope after the first cycle: the last within 2 MiB of the second | %s MiB after cycle 2, %s MiB after cycle %d | %s |", mib(float64(second)), mib(float64(last)), len(s.Cycles), yes(last-second <= 2*1024)))
	}
	return lines
}
