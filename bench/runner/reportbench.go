package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The report scenario: socktrace records a capture of the churn load
// (-w), a million transitions by default, and `socktrace report` makes
// its page, several times: wall time, CPU, peak memory and the page's
// size, against the bounds (5 s, 5 MB).

type reportRun struct {
	Wall, CPU   time.Duration
	MaxRSSKiB   int64
	Bytes       int64
	Transitions int64 // in the capture (what the recording run reported)
	Err         string
}

func reportBench(c *config) []reportRun {
	capPath := filepath.Join(c.work, "report-bench.st")
	defer os.Remove(capPath)
	tr := &tracer{
		name: "socktrace-w", label: "socktrace -o json --netns --no-snapshot -w",
		argv: func(c *config, ns, rf string) []string {
			return []string{c.socktrace, "-o", "json", "--netns", ns, "--no-snapshot", "--ready-file", rf, "-w", capPath}
		},
		ready: readyByFile,
		count: func(out, _ string, _ []byte) (int64, int64, int64, error) { return countJSON(out) },
	}
	conns := c.reportConns
	res := runTrial(c, tr, trialOpts{conns: conns})
	logf("report: recorded %d transitions (expected %d, missing %d) into %s (%s MiB) %s",
		res.Counted, res.Expected, res.Missing, capPath, f1(float64(fileSize(capPath))/(1<<20)), res.Err)
	if res.Err != "" {
		return []reportRun{{Err: "recording: " + res.Err}}
	}
	var out []reportRun
	for i := 0; i < c.reportRounds; i++ {
		page := filepath.Join(c.work, "report-bench.html")
		cmd := exec.Command(c.socktrace, "report", capPath, "-o", page, "--force")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		r := reportRun{Wall: time.Since(start), Transitions: res.Counted}
		if cmd.ProcessState != nil {
			u := rusageOf(cmd.ProcessState)
			r.CPU, r.MaxRSSKiB = u.CPU, u.MaxRSS
		}
		if err != nil {
			r.Err = fmt.Sprintf("%v: %s", err, tail(stderr.String(), 300))
		}
		r.Bytes = fileSize(page)
		os.Remove(page)
		logf("report round %d: %v wall, %v CPU, %d KiB peak RSS, page %d bytes %s", i+1, r.Wall.Round(time.Millisecond), r.CPU.Round(time.Millisecond), r.MaxRSSKiB, r.Bytes, r.Err)
		out = append(out, r)
	}
	return out
}

func reportField(rs []reportRun, f func(reportRun) float64) []float64 {
	var xs []float64
	for _, r := range rs {
		if r.Err == "" {
			xs = append(xs, f(r))
		}
	}
	return xs
}

func (r *report) reportMarkdown(w func(string, ...any)) {
	if len(r.reports) == 0 {
		return
	}
	w("## `socktrace report` of a large capture\n\n")
	w("socktrace records the churn load (%s connections as fast as the workers go, 10 transitions each) with `-o json --netns P --no-snapshot -w FILE`; then `socktrace report FILE -o page.html --force` runs %d times. Wall time from launch to exit, CPU (user+system) and peak RSS from rusage, the page's size in bytes. Medians (min-max).\n\n",
		thousands(float64(r.cfg.reportConns)), r.cfg.reportRounds)
	w("| transitions in the capture | wall s | CPU s | peak RSS MiB | page MB | errors |\n|---|---|---|---|---|---|\n")
	ok := reportField(r.reports, func(x reportRun) float64 { return 1 })
	span := func(f func(reportRun) float64, format func(float64) string) string {
		xs := reportField(r.reports, f)
		if len(xs) == 0 {
			return "-"
		}
		lo, hi := minmax(xs)
		return fmt.Sprintf("%s (%s-%s)", format(median(xs)), format(lo), format(hi))
	}
	var errs []string
	for _, x := range r.reports {
		if x.Err != "" {
			errs = append(errs, "- "+x.Err)
		}
	}
	w("| %s | %s | %s | %s | %s | %d/%d |\n", thousands(float64(r.reports[0].Transitions)),
		span(func(x reportRun) float64 { return x.Wall.Seconds() }, f2),
		span(func(x reportRun) float64 { return x.CPU.Seconds() }, f2),
		span(func(x reportRun) float64 { return float64(x.MaxRSSKiB) }, mib),
		span(func(x reportRun) float64 { return float64(x.Bytes) / 1e6 }, f2),
		len(errs), len(ok)+len(errs))
	if len(errs) > 0 {
		w("\n%s\n", strings.Join(errs, "\n"))
	}
	w("\n")
}

// reportTargets returns the scenario's row of the Targets table.
func (r *report) reportTargets(yes func(bool) string) []string {
	walls := reportField(r.reports, func(x reportRun) float64 { return x.Wall.Seconds() })
	if len(walls) == 0 {
		return nil
	}
	_, worstWall := minmax(walls)
	_, worstSize := minmax(reportField(r.reports, func(x reportRun) float64 { return float64(x.Bytes) }))
	n := r.reports[0].Transitions
	return []string{fmt.Sprintf("| `socktrace report` of a capture of a million transitions ≤ 5 s and ≤ 5 MB | %s transitions: %s s wall (median, worst %s), %s MB (largest) | %s |",
		thousands(float64(n)), f2(median(walls)), f2(worstWall), f2(worstSize/1e6), yes(n >= 1_000_000 && worstWall <= 5 && worstSize <= 5e6))}
}
