package main

import (
	"fmt"
	"math"
	"os"
	"strings"
)

// The host-wide scenario: socktrace tracing the whole host (no --netns),
// as the peers always do, at the loopback's maximum churn, its output
// going to a file on tmpfs, to a file on a disk, and to a slow consumer
// (a pipe read at a fixed, low rate): whether anything is lost, and
// whether what is lost is exactly what the tool says.

type hostConfig struct {
	rounds  int
	diskDir string
	slow    int // bytes a second the slow consumer reads
	// witness: run internal/witness beside each tool to count what the
	// kernel hands to BPF programs on inet_sock_set_state.
	witness bool
}

// hostOutput is where a trial's output goes.
type hostOutput struct {
	label string
	opts  func(c *config) (outDir string, slow int)
}

func hostOutputs() []hostOutput {
	return []hostOutput{
		{"tmpfs file", func(c *config) (string, int) { return c.work, 0 }},
		{"disk file", func(c *config) (string, int) { return c.host.diskDir, 0 }},
		{"slow consumer", func(c *config) (string, int) { return c.work, c.host.slow }},
	}
}

func hostTracers(c *config) []string {
	out := []string{"socktrace-host"}
	for _, p := range []string{"tcpstates", "bpftrace"} {
		if c.hasPeers[p] {
			out = append(out, p)
		}
	}
	return out
}

func hostwide(c *config) []trial {
	if err := os.MkdirAll(c.host.diskDir, 0o700); err != nil {
		logf("host-wide: %v: the disk output left out", err)
	}
	defer os.RemoveAll(c.host.diskDir)
	var out []trial
	names := hostTracers(c)
	for round := 1; round <= c.host.rounds; round++ {
		for oi, ho := range hostOutputs() {
			for _, name := range rotate(names, round+oi) {
				dir, slow := ho.opts(c)
				res := runTrial(c, tracerByName(name), trialOpts{dur: c.duration, outDir: dir, slow: slow, witness: c.host.witness})
				res.Scenario, res.Target, res.Round = "hostwide", ho.label, round
				logf("host-wide round %d %-13s %-14s conn/s %6.0f expected %7d reported %7d missing %6d (kernel-skipped %d, own %d, said lost %d, not run %s, unaccounted %d) cpu %.2fs drain %.1fs %s",
					round, ho.label, res.Tracer, res.ConnRate, res.Expected, res.Counted, res.Missing, kernelSkipped(res), toolLoss(res), res.Reported, notRunText(res), unaccounted(res), res.CPU, res.Drain, res.Err)
				out = append(out, res)
				settle()
			}
		}
	}
	return out
}

// hostwideMarkdown writes the scenario's section.
func (r *report) hostwideMarkdown(w func(string, ...any)) {
	if len(r.hostwide) == 0 {
		return
	}
	w("## Host-wide: the whole host at maximum churn\n\n")
	w("Each trial as in the throughput scenario at maximum churn (%s of load, %d workers), but every tool traces the whole host: socktrace as `-o json --no-snapshot` without `--netns`, like the peers; the transitions with the benchmark's address are counted (lost and skipped counts are the tool's whole). The output goes to a file on tmpfs (%s), to a file on a disk (%s), or through a pipe to a *slow consumer* that reads %s a second into a tmpfs file (a terminal, a slow log shipper); the load is the same in all three. %d rounds, alternating the tools. *Kernel-skipped*: transitions the kernel ran none of the tool's state programs for (socktrace: its primary's recursion misses less those its backup program emitted, as it reports them; the peers: their program's recursion misses). *Own loss*: the rest of the missing ones that the tool's program did run for (its buffer was full); *said lost*: what the tool itself reported lost; *not run*: transitions the load made that the kernel ran no BPF program on `inet_sock_set_state` for, and counted no miss, as counted by an independent witness run beside each tool (internal/witness: its own tp_btf program on the same tracepoint and on `tcp_destroy_sock`; expected less what it saw and its recursion misses; \"-\" without it). On this VM the kernel runs no BPF program while its supervisor process (PID 1) is the current task, softirqs included: a transition a packet makes there is seen by no BPF tool (bench/README.md, \"Reading the counts\"); *unaccounted*: missing, less kernel-skipped, less own loss, less not run (none of these). A tool accounts exactly for what it lost when *said lost* equals *own loss* (tcpstates counts perf-buffer records, not transitions: close to it).\n\n",
		r.cfg.duration, r.cfg.workers, r.cfg.work, r.cfg.host.diskDir, byteRate(r.cfg.host.slow), r.cfg.host.rounds)
	w("*Ring peak*: the most socktrace's ring buffer held at once (its summary's `ring.peak_bytes`, `--summary` at the end), of its default size.\n\n")
	w("| output | tool | transitions/s made | per round: missing / kernel-skipped / own loss / said lost / not run / unaccounted | rounds with nothing lost | CPU s per M reported | transitions per write() | drain s | ring peak (largest round) | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, ho := range hostOutputs() {
		for _, name := range hostTracers(r.cfg) {
			g := group(r.hostwide, name, ho.label)
			if len(g) == 0 {
				continue
			}
			var per []string
			clean, errs := 0, 0
			for _, t := range g {
				per = append(per, fmt.Sprintf("%s / %s / %s / %s / %s / %s", thousands(float64(t.Missing)), thousands(float64(kernelSkipped(t))),
					thousands(float64(toolLoss(t))), thousands(float64(t.Reported)), notRunText(t), thousands(float64(unaccounted(t)))))
				if t.Err != "" {
					errs++
				} else if t.Missing == 0 && t.Reported == 0 {
					clean++
				}
			}
			ring := ""
			var peak, size int64
			for _, t := range g {
				if t.RingPeak > peak {
					peak, size = t.RingPeak, t.RingSize
				}
			}
			if size > 0 {
				ring = fmt.Sprintf("%.2f of %.0f MiB (%.0f%%)", float64(peak)/(1<<20), float64(size)/(1<<20), 100*float64(peak)/float64(size))
			}
			w("| %s | %s | %s | %s | %d/%d | %s | %s | %s | %s | %d/%d |\n", ho.label, r.label(name),
				thousands(median(field(g, func(t trial) float64 { return t.ConnRate * float64(perConn) }))),
				strings.Join(per, "; "), clean, len(g),
				f2(median(field(g, cpuPerM))),
				f1(median(field(g, func(t trial) float64 { return ratio(t.Counted, t.Writes) }))),
				f1(median(field(g, func(t trial) float64 { return t.Drain }))), ring, errs, len(g))
		}
	}
	w("\n")
}

// hostwideTargets returns the scenario's rows of the Targets table.
func (r *report) hostwideTargets(yes func(bool) string) []string {
	var lines []string
	for _, ho := range hostOutputs()[:2] {
		g := group(r.hostwide, "socktrace-host", ho.label)
		if len(g) == 0 {
			continue
		}
		var per []string
		ok := true
		var unrun int64
		for _, t := range g {
			per = append(per, fmt.Sprintf("%d lost, %d skipped, %d unaccounted (not run: %s)", toolLoss(t), kernelSkipped(t), unaccounted(t), notRunText(t)))
			ok = ok && t.Err == "" && toolLoss(t) == 0 && t.Reported == 0 && kernelSkipped(t) == 0 && unaccounted(t) == 0
			unrun += notRun(t)
		}
		verdict := yes(ok)
		if ok && unrun > 0 {
			verdict += fmt.Sprintf(" (and %d transitions no BPF program was run for, the witness's neither: on this VM, those a softirq makes while its supervisor, PID 1, is the current task; bench/README.md)", unrun)
		}
		lines = append(lines, fmt.Sprintf("| host-wide, maximum churn, output to a %s: every round 0 lost, 0 skipped, 0 unaccounted (`socktrace -o json --no-snapshot`) | %s | %s |",
			ho.label, strings.Join(per, "; "), verdict))
		if ho.label == "tmpfs file" {
			cpu := median(field(g, cpuPerM))
			if !math.IsNaN(cpu) {
				lines = append(lines, fmt.Sprintf("| host-wide, maximum churn: ≤ 1.0 CPU s per million transitions | %s | %s |", f2(cpu), yes(cpu <= 1.0)))
			}
		}
	}
	// The default ring: big enough for the largest burst of the bench's
	// fastest loads (not the slow consumer's, where nothing is).
	var peak, size int64
	lost := false
	for _, ho := range hostOutputs()[:2] {
		for _, t := range group(r.hostwide, "socktrace-host", ho.label) {
			if t.RingPeak > peak {
				peak, size = t.RingPeak, t.RingSize
			}
			lost = lost || toolLoss(t) > 0
		}
	}
	if size > 0 {
		lines = append(lines, fmt.Sprintf("| the default ring holds the largest burst of the host-wide maximum churn without loss | peak %.2f MiB of %.0f MiB (%.0f%%) | %s |",
			float64(peak)/(1<<20), float64(size)/(1<<20), 100*float64(peak)/float64(size), yes(!lost && peak < size)))
	}
	if g := group(r.hostwide, "socktrace-host", "slow consumer"); len(g) > 0 {
		var per []string
		ok := true
		for _, t := range g {
			per = append(per, fmt.Sprintf("own loss %d, said lost %d, unaccounted %d", toolLoss(t), t.Reported, unaccounted(t)))
			ok = ok && t.Err == "" && toolLoss(t) == t.Reported && unaccounted(t) == 0
		}
		lines = append(lines, fmt.Sprintf("| slow consumer: what is lost is exactly what socktrace says, and nothing else breaks | %s | %s |", strings.Join(per, "; "), yes(ok)))
	}
	return lines
}

// byteRate is a rate in bytes a second, in MiB or KiB.
func byteRate(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%g MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%g KiB", float64(n)/(1<<10))
}
