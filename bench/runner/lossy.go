package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The lossy scenario: the same trials as the throughput scenario, on a
// link that drops a share of the data packets (an nftables rule in the
// load's namespace), so that TCP retransmits and socktrace's retransmit
// hook runs as well as its state one.

type lossyConfig struct {
	drop     int // percent of the packets longer than 200 bytes dropped
	rate     float64
	write    int
	workers  int
	streams  int
	duration time.Duration
	rounds   int
}

// lossyShape is one load of the scenario.
type lossyShape struct {
	label string
	mtu   int // the namespace's loopback MTU, and no segmentation offload; 0: loopback as it is (65536, offloads on)
	opts  func(c *config) trialOpts
}

func lossyShapes(lc lossyConfig) []lossyShape {
	return []lossyShape{
		{fmt.Sprintf("churn %.0f conn/s, %d KiB each", lc.rate, lc.write>>10), 0, func(c *config) trialOpts {
			return trialOpts{rate: lc.rate, dur: lc.duration, workers: lc.workers, extra: []string{"-write", strconv.Itoa(lc.write)}}
		}},
		{fmt.Sprintf("bulk: %d streams, MTU %d, no offload", lc.streams, bulkMTU), bulkMTU, func(c *config) trialOpts {
			return trialOpts{dur: lc.duration, workers: lc.streams, extra: []string{"-stream"}}
		}},
	}
}

// lossyTracers are the tools compared: socktrace without and with
// --events retransmit, and tcpstates (which traces states only).
func lossyTracers(c *config) []string {
	out := []string{"socktrace-nosnap", "socktrace-events"}
	if c.hasPeers["tcpstates"] {
		out = append(out, "tcpstates")
	}
	return out
}

// nftRule drops drop percent of the namespace's packets longer than 200
// bytes (data; not SYNs, ACKs or FINs alone), at random, as they arrive.
// Not as they leave (the output hook): a packet dropped there fails
// tcp_transmit_skb with EPERM, and TCP sends it again later as new data,
// not as a retransmit; dropped on input it is lost on the wire.
func nftRule(drop int) string {
	return fmt.Sprintf("table inet lossy {\n\tchain in {\n\t\ttype filter hook input priority 0;\n\t\tmeta length > 200 numgen random mod 100 < %d drop\n\t}\n}\n", drop)
}

// bulkMTU is the loopback MTU of the bulk load, with segmentation offload
// off (gso_max_segs 1): a link's usual packets, so that the streams send,
// lose and retransmit packets of a real link's size, one segment each
// (one retransmit hook run each, as RetransSegs counts). At loopback's
// own MTU, or with GSO, a hook run covers many segments and the streams
// make far fewer retransmits (bench/README.md, *Lossy link*, has the
// figures).
const bulkMTU = 1500

func addLoss(drop, mtu int) func(ns string) error {
	return func(ns string) error {
		if mtu > 0 {
			args := []string{"--net=" + ns, "ip", "link", "set", "lo", "mtu", strconv.Itoa(mtu), "gso_max_size", strconv.Itoa(mtu), "gso_max_segs", "1"}
			if b, err := exec.Command("nsenter", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s in %s: %v: %s", strings.Join(args[1:], " "), ns, err, tail(string(b), 300))
			}
		}
		cmd := exec.Command("nsenter", "--net="+ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(nftRule(drop))
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft in %s: %v: %s", ns, err, tail(string(b), 300))
		}
		return nil
	}
}

func lossy(c *config) []trial {
	lc := c.lossy
	if _, err := exec.LookPath("nft"); err != nil {
		logf("lossy: nft not found (apt-get install nftables): skipped")
		return nil
	}
	var out []trial
	names := lossyTracers(c)
	for round := 1; round <= lc.rounds; round++ {
		for si, sh := range lossyShapes(lc) {
			for _, name := range rotate(names, round+si) {
				o := sh.opts(c)
				o.setup, o.keep = addLoss(lc.drop, sh.mtu), true
				res := runTrial(c, tracerByName(name), o)
				res.Scenario, res.Target, res.Round = "lossy", sh.label, round
				if res.outputPath != "" {
					if name == "socktrace-events" {
						var err error
						res.RetransRecs, res.EventsLost, err = countPackets(res.outputPath)
						if err != nil && res.Err == "" {
							res.Err = err.Error()
						}
					}
					os.Remove(res.outputPath)
				}
				ns, cnt, _ := retransHook(res)
				logf("lossy round %d %s %-16s conns %5d expected %7d reported %7d missing %4d retrans %6d (%.0f/s) records %6d events lost %d cpu %.2fs bpf %.0f ns/transition, retransmit hook %d runs %.0f ns %s",
					round, sh.label, res.Tracer, res.Conns, res.Expected, res.Counted, res.Missing, res.TCP["RetransSegs"], retransRate(res),
					res.RetransRecs, res.EventsLost, res.CPU, bpfPerTransition(res), cnt, ratioF(float64(ns), float64(cnt)), res.Err)
				out = append(out, res)
				settle()
			}
		}
	}
	return out
}

func ratioF(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
}

// retransHook sums the runs of the tool's retransmit programs (socktrace's
// tp_btf_retransmit[_err] or raw_retransmit[_err]; the kernel keeps 15
// characters of a name).
func retransHook(t trial) (ns, cnt, misses uint64) {
	for _, p := range t.Progs {
		if strings.Contains(p.Name, "retrans") {
			ns, cnt, misses = ns+p.NS, cnt+p.Cnt, misses+p.Misses
		}
	}
	return ns, cnt, misses
}

// bpfPerTransition is the kernel's time in all of the tool's programs
// (the state one and the hooks) per transition the load made.
func bpfPerTransition(t trial) float64 {
	var ns uint64
	for _, p := range t.Progs {
		ns += p.NS
	}
	return ratioF(float64(ns), float64(t.Expected))
}

// retransRate is the retransmits a second the load made while it ran
// (RetransSegs when its duration ended, over that duration), or, from a
// load that did not say, over its whole run.
func retransRate(t trial) float64 {
	if t.LoadSeconds > 0 && t.TCPAtEnd != nil {
		return ratioF(float64(t.TCPAtEnd["RetransSegs"]), t.LoadSeconds)
	}
	return ratioF(float64(t.TCP["RetransSegs"]), t.Seconds)
}

// lossyMarkdown writes the scenario's section.
func (r *report) lossyMarkdown(w func(string, ...any)) {
	if len(r.lossy) == 0 {
		return
	}
	lc := r.cfg.lossy
	w("## Lossy link: retransmits\n\n")
	w("Each trial: a fresh namespace in which an nftables rule drops %d %% of the packets longer than 200 bytes (data, not bare SYNs, ACKs or FINs) at random as they arrive (`meta length > 200 numgen random mod 100 < %d drop` in the input hook; this kernel has no sch_netem; dropped in the output hook a packet fails to send, with EPERM, and TCP sends it again later as new data, not as a retransmit), so TCP retransmits; then as in the throughput scenario (tool attached, %s of load, drained, SIGINT, output on tmpfs), over %d rounds, alternating the tools. Two loads: *churn*, %d workers making %.0f connections a second that each write %d KiB (the server reads them, then closes first), and *bulk*, %d connections each writing for the whole trial, with the namespace's loopback MTU set to %d and segmentation offload off (`ip link set lo mtu %d gso_max_size %d gso_max_segs 1`: a link's packets, each retransmitted segment one hook run). Every connection still makes 10 transitions. *Retransmits/s* is the namespace's RetransSegs (from 0: a fresh namespace) when the load's duration ended, over that duration (the bulk streams then take seconds more to drain and close through the lossy link). *BPF ns per transition* is the kernel's time in all of the tool's programs (for socktrace the state program and the retransmit, reset and error hooks) over the transitions made; the retransmit hook's runs and time are also given alone. socktrace runs as `-o json --netns P --no-snapshot`, once more with `--events retransmit` (one record a retransmit: received vs RetransSegs, which counts segments, and a retransmitted skb of the bulk load may carry several for one hook run and one record; *events lost*: its `{\"type\":\"lost\",\"records\":\"events\"}` count). tcpstates traces states only, host-wide. Medians over the rounds.\n\n",
		lc.drop, lc.drop, lc.duration, lc.rounds, lc.workers, lc.rate, lc.write>>10, lc.streams, bulkMTU, bulkMTU, bulkMTU)
	w("| load | tool | conn/s | transitions reported / expected | missing (kernel-skipped) | retransmits/s made | CPU s | CPU s per M transitions | CPU ms per 1k retransmits | BPF ns per transition (all programs) | retransmit hook: runs, ns per run (misses) | retransmit records / RetransSegs | events lost | errors |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, sh := range lossyShapes(lc) {
		for _, name := range lossyTracers(r.cfg) {
			g := group(r.lossy, name, sh.label)
			if len(g) == 0 {
				continue
			}
			med := func(f func(trial) float64) float64 { return median(field(g, f)) }
			hook := "-"
			if name != "tcpstates" {
				hook = fmt.Sprintf("%s, %s (%s)",
					thousands(med(func(t trial) float64 { _, n, _ := retransHook(t); return float64(n) })),
					f0(med(func(t trial) float64 { ns, n, _ := retransHook(t); return ratioF(float64(ns), float64(n)) })),
					thousands(med(func(t trial) float64 { _, _, m := retransHook(t); return float64(m) })))
			}
			recs, lost := "-", "-"
			if name == "socktrace-events" {
				var per []string
				for _, t := range g {
					per = append(per, fmt.Sprintf("%d / %d", t.RetransRecs, t.TCP["RetransSegs"]))
				}
				recs = strings.Join(per, "; ")
				lost = thousands(med(func(t trial) float64 { return float64(t.EventsLost) }))
			}
			errs := 0
			for _, t := range g {
				if t.Err != "" {
					errs++
				}
			}
			w("| %s | %s | %s | %s / %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d |\n", sh.label, r.label(name),
				thousands(med(func(t trial) float64 { return t.ConnRate })),
				thousands(med(func(t trial) float64 { return float64(t.Counted) })),
				thousands(med(func(t trial) float64 { return float64(t.Expected) })),
				thousands(med(func(t trial) float64 { return float64(t.Missing) })),
				thousands(med(func(t trial) float64 { return float64(t.KMiss) })),
				thousands(med(retransRate)),
				f2(med(func(t trial) float64 { return t.CPU })),
				f2(med(cpuPerM)),
				f2(med(func(t trial) float64 { return ratioF(t.CPU*1e6, float64(t.TCP["RetransSegs"])) })),
				f0(med(bpfPerTransition)), hook, recs, lost, errs, len(g))
		}
	}
	var errs []string
	for _, t := range r.lossy {
		if t.Err != "" {
			errs = append(errs, fmt.Sprintf("- round %d, %s, %s: %s", t.Round, t.Target, t.Tracer, t.Err))
		}
	}
	if len(errs) > 0 {
		w("\n%s\n", strings.Join(errs, "\n"))
	}
	w("\n")
}

// lossyTargets returns the scenario's rows of the Targets table.
func (r *report) lossyTargets(yes func(bool) string) []string {
	if len(r.lossy) == 0 {
		return nil
	}
	var lines []string
	churn := lossyShapes(r.cfg.lossy)[0].label
	st := median(field(group(r.lossy, "socktrace-nosnap", churn), cpuPerM))
	tc := median(field(group(r.lossy, "tcpstates", churn), cpuPerM))
	if !math.IsNaN(st) && !math.IsNaN(tc) {
		lines = append(lines, fmt.Sprintf("| CPU per million transitions on the lossy link ≤ 0.6× tcpstates (%s, `--no-snapshot`) | %s vs %s CPU s per million (%.2f×) | %s |", churn, f2(st), f2(tc), st/tc, yes(st <= 0.6*tc)))
	}
	// The load with the most retransmits a second; in every round of it,
	// socktrace --events must have recorded every retransmit and lost none.
	best, bestRate := "", math.NaN()
	for _, sh := range lossyShapes(r.cfg.lossy) {
		g := group(r.lossy, "socktrace-events", sh.label)
		if v := median(field(g, retransRate)); len(g) > 0 && (math.IsNaN(bestRate) || v > bestRate) {
			best, bestRate = sh.label, v
		}
	}
	if best != "" {
		g := group(r.lossy, "socktrace-events", best)
		whole := true
		var per []string
		for _, t := range g {
			// RetransSegs counts segments, and a retransmitted skb may carry
			// several (one hook run, one record): a record for every
			// retransmit is a record for every segment or for every run.
			segs := t.TCP["RetransSegs"]
			_, runs, _ := retransHook(t)
			if t.Err != "" || t.EventsLost != 0 || t.RetransRecs < min(segs, int64(runs)) {
				whole = false
			}
			per = append(per, fmt.Sprintf("%s/s: %d records, %d hook runs, %d RetransSegs, %d lost", thousands(retransRate(t)), t.RetransRecs, runs, segs, t.EventsLost))
		}
		verdict := yes(whole && bestRate >= 10000)
		if whole && bestRate < 10000 {
			verdict = fmt.Sprintf("**not met**: the load reached only %s retransmits/s (all recorded, none lost)", thousands(bestRate))
		}
		lines = append(lines, fmt.Sprintf("| retransmit hooks: ≥ 10k retransmits/s recorded without loss (`--events retransmit`, %s) | %s | %s |", best, strings.Join(per, "; "), verdict))
	}
	return lines
}
