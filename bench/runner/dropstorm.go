package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// The drop-storm scenario: what a storm of packets the kernel drops, none
// of them TCP, costs socktrace, whose drop program runs for every packet
// the kernel frees as a drop. The load is the throughput scenario's churn
// at a fixed rate; in the storm trials loadgen udpstorm also sends UDP
// datagrams to a closed port of the same namespace (each freed with
// NO_SOCKET) for the same duration. Quiet and storm trials alternate.

type stormConfig struct {
	rate     float64 // datagrams a second
	connRate float64 // connections a second of the churn beside it
	senders  int
	rounds   int
}

// stormDone is loadgen udpstorm's result line.
type stormDone struct {
	Event   string  `json:"event"`
	Packets int64   `json:"packets"`
	Failed  int64   `json:"failed"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
}

// stormTrial is a trial of the scenario: the churn trial, and the storm's
// result when there was one.
type stormTrial struct {
	trial
	Storm *stormDone `json:"storm,omitempty"`
}

const (
	stormQuiet = "quiet"
	stormOn    = "storm"
)

func dropStorm(c *config) []stormTrial {
	sc := c.storm
	var out []stormTrial
	tr := tracerByName("socktrace")
	for round := 1; round <= sc.rounds; round++ {
		for _, variant := range rotate([]string{stormQuiet, stormOn}, round) {
			var netns string
			var storm *stormDone
			var stormErr error
			o := trialOpts{rate: sc.connRate, dur: c.duration}
			o.setup = func(ns string) error { netns = ns; return nil }
			if variant == stormOn {
				o.during = func(int) func() {
					cmd := exec.Command(c.loadgen, "udpstorm", "-netns", netns,
						"-rate", strconv.FormatFloat(sc.rate, 'f', -1, 64), "-senders", strconv.Itoa(sc.senders),
						"-duration", c.duration.String())
					var stdout, stderr bytes.Buffer
					cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = &stdout, &stderr, sysProcAttr()
					if stormErr = cmd.Start(); stormErr != nil {
						return nil
					}
					return func() {
						if err := cmd.Wait(); err != nil {
							stormErr = fmt.Errorf("udpstorm: %v: %s", err, tail(stderr.String(), 300))
							return
						}
						line, _ := bufio.NewReader(&stdout).ReadBytes('\n')
						var d stormDone
						if err := json.Unmarshal(line, &d); err != nil || d.Event != "done" {
							stormErr = fmt.Errorf("udpstorm: bad result line %q", line)
							return
						}
						storm = &d
					}
				}
			}
			res := runTrial(c, tr, o)
			res.Scenario, res.Target, res.Round = "dropstorm", variant, round
			if stormErr != nil && res.Err == "" {
				res.Err = stormErr.Error()
			}
			st := stormTrial{trial: res, Storm: storm}
			runs, ns := dropProgram(res)
			logf("drop storm round %d %-5s conn/s %6.0f datagrams/s %7.0f expected %7d reported %7d missing %4d said lost %d cpu %.2fs drop program %d runs %.0f ns/run %s",
				round, variant, res.ConnRate, st.stormRate(), res.Expected, res.Counted, res.Missing, res.Reported, res.CPU, runs, ratioF(float64(ns), float64(runs)), res.Err)
			out = append(out, st)
			settle()
		}
	}
	return out
}

// stormRate is the datagrams a second the storm sent (0: no storm).
func (s stormTrial) stormRate() float64 {
	if s.Storm == nil {
		return 0
	}
	return s.Storm.Rate
}

// dropProgram sums the runs and kernel time of socktrace's drop program
// (on skb:kfree_skb; the kernel keeps 15 characters of a name).
func dropProgram(t trial) (runs, ns uint64) {
	for _, p := range t.Progs {
		if strings.Contains(p.Name, "kfree") || strings.Contains(p.Name, "drop") {
			runs, ns = runs+p.Cnt, ns+p.NS
		}
	}
	return runs, ns
}

func stormGroup(ts []stormTrial, variant string) []stormTrial {
	var g []stormTrial
	for _, t := range ts {
		if t.Target == variant && t.Err == "" {
			g = append(g, t)
		}
	}
	return g
}

func stormField(ts []stormTrial, f func(stormTrial) float64) []float64 {
	var xs []float64
	for _, t := range ts {
		xs = append(xs, f(t))
	}
	return xs
}

// stormCost is the storm's cost to socktrace in CPU seconds a second of
// storm: the median CPU of the storm trials less that of the quiet ones,
// over the storm's median duration; ok is false without both.
func (r *report) stormCost() (perSec float64, ok bool) {
	q, s := stormGroup(r.storm, stormQuiet), stormGroup(r.storm, stormOn)
	if len(q) == 0 || len(s) == 0 {
		return 0, false
	}
	cpu := func(t stormTrial) float64 { return t.CPU }
	secs := median(stormField(s, func(t stormTrial) float64 {
		if t.Storm == nil {
			return 0
		}
		return t.Storm.Seconds
	}))
	if secs <= 0 {
		return 0, false
	}
	return (median(stormField(s, cpu)) - median(stormField(q, cpu))) / secs, true
}

func (r *report) stormMarkdown(w func(string, ...any)) {
	if len(r.storm) == 0 {
		return
	}
	sc := r.cfg.storm
	w("## Drop storm: packets the kernel drops, none of them TCP\n\n")
	w("Each trial: a fresh namespace, socktrace attached to it (`-o json --netns P`, every program attached, its drop program on skb:kfree_skb among them), the churn load at %.0f connections a second for %s, drained, SIGINT, output on tmpfs. In the *storm* trials `loadgen udpstorm` also sends small UDP datagrams to a closed port of the same namespace at a target of %.0f a second (%d unconnected sockets; each is freed as a drop, NO_SOCKET, and answered by an ICMP port unreachable), for the same %s; *quiet* trials have no storm. %d rounds, the two alternated. *CPU* is socktrace's user+system time from the start of the load to its exit (rusage); the storm's cost is the median storm CPU less the median quiet CPU over the storm's duration. *Drop program*: its runs and the kernel's time per run (kernel.bpf_stats_enabled), which the dropping workload pays, not socktrace. Medians over the rounds.\n\n",
		sc.connRate, r.cfg.duration, sc.rate, sc.senders, r.cfg.duration, sc.rounds)
	w("| trials | datagrams/s sent | conn/s | transitions reported / expected | missing | said lost | CPU s | drop program runs | ns per run | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, v := range []string{stormQuiet, stormOn} {
		g := stormGroup(r.storm, v)
		errs := 0
		for _, t := range r.storm {
			if t.Target == v && t.Err != "" {
				errs++
			}
		}
		med := func(f func(stormTrial) float64) float64 { return median(stormField(g, f)) }
		w("| %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %d/%d |\n", v,
			thousands(med(stormTrial.stormRate)),
			thousands(med(func(t stormTrial) float64 { return t.ConnRate })),
			thousands(med(func(t stormTrial) float64 { return float64(t.Counted) })),
			thousands(med(func(t stormTrial) float64 { return float64(t.Expected) })),
			thousands(med(func(t stormTrial) float64 { return float64(t.Missing) })),
			thousands(med(func(t stormTrial) float64 { return float64(t.Reported) })),
			f2(med(func(t stormTrial) float64 { return t.CPU })),
			thousands(med(func(t stormTrial) float64 { n, _ := dropProgram(t.trial); return float64(n) })),
			f0(med(func(t stormTrial) float64 { n, ns := dropProgram(t.trial); return ratioF(float64(ns), float64(n)) })),
			errs, len(g)+errs)
	}
	if cost, ok := r.stormCost(); ok {
		w("\nThe storm's cost to socktrace: %.3f CPU s a second of storm.\n", cost)
	}
	var errs []string
	for _, t := range r.storm {
		if t.Err != "" {
			errs = append(errs, fmt.Sprintf("- round %d, %s: %s", t.Round, t.Target, t.Err))
		}
	}
	if len(errs) > 0 {
		w("\n%s\n", strings.Join(errs, "\n"))
	}
	w("\n")
}

// stormTargets returns the scenario's row of the Targets table.
func (r *report) stormTargets(yes func(bool) string) []string {
	cost, ok := r.stormCost()
	if !ok {
		return nil
	}
	s := stormGroup(r.storm, stormOn)
	rate := median(stormField(s, stormTrial.stormRate))
	var lost, missing int64
	for _, t := range s {
		lost, missing = lost+t.Reported, missing+t.Missing
	}
	// The sender may not reach the rate on a small machine (each datagram
	// costs the kernel a send, a receive and an ICMP reply): the cost is
	// then scaled to the rate asked for, the drop program's cost being
	// the same for every packet.
	scaled := cost
	if rate > 0 && rate < r.cfg.storm.rate {
		scaled = cost * r.cfg.storm.rate / rate
	}
	return []string{fmt.Sprintf("| a storm of %s non-TCP drops a second costs socktrace < 0.1 CPU s a second, nothing lost | %s datagrams/s sent (the sender's most here): %.3f CPU s a second, %.3f scaled to %s/s; %d said lost, %d missing over %d trials | %s |",
		thousands(r.cfg.storm.rate), thousands(rate), cost, scaled, thousands(r.cfg.storm.rate), lost, missing, len(s),
		yes(scaled < 0.1 && lost == 0 && missing == 0))}
}
