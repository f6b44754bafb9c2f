package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// outputTail is how many lines of a failed test binary's output the
// report shows; the console log has all of it.
const outputTail = 150

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// result is a kernel's verdict in one word.
func (r *vmResult) result() string {
	switch {
	case r.pass():
		return "PASS"
	case r.TimedOut:
		return "TIMEOUT"
	case !r.Booted:
		return "NO BOOT"
	case !r.Done:
		return "CRASHED"
	}
	return "FAIL"
}

// report prints what failed and why, then the summary tables, then one
// closing line with the totals.
func report(w io.Writer, cfg vmConfig, runs []*kernelRun, elapsed time.Duration) {
	totalPassed, totalFailed, totalSkipped := 0, 0, 0
	for _, r := range runs {
		res := r.res
		name := r.k.Series.Name
		for _, t := range res.Tests {
			if t.ok() {
				continue
			}
			fmt.Fprintf(w, "\n--- %s: %s failed", name, t.Name)
			switch {
			case !t.Begun:
				fmt.Fprintf(w, ": never started\n")
				continue
			case !t.Ended:
				fmt.Fprintf(w, ": never finished\n")
			default:
				fmt.Fprintf(w, " (exit %d): %s\n", t.Exit, strings.Join(t.Failures, ", "))
			}
			out := t.output
			if len(out) > outputTail {
				fmt.Fprintf(w, "    [... %d lines; all in %s]\n", len(out)-outputTail, res.Log)
				out = out[len(out)-outputTail:]
			}
			for _, l := range out {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
		if !res.pass() && (!res.Done || len(res.Errors) > 0) {
			fmt.Fprintf(w, "\n--- %s: %s", name, res.result())
			if res.QemuErr != nil {
				fmt.Fprintf(w, " (%v)", res.QemuErr)
			}
			fmt.Fprintln(w)
			for _, e := range res.Errors {
				fmt.Fprintf(w, "    error: %s\n", e)
			}
			if !res.Done {
				fmt.Fprintf(w, "    last console lines (all in %s):\n", res.Log)
				tail := res.tail
				if len(tail) > 40 {
					tail = tail[len(tail)-40:]
				}
				for _, l := range tail {
					fmt.Fprintf(w, "    | %s\n", l)
				}
			}
		}
	}

	fmt.Fprintf(w, "\n=== vmtest: socktrace on Debian kernels (qemu %s, %d CPUs, %d MiB; %s in all) ===\n", cfg.accel, cfg.cpus, cfg.memMiB, elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tRELEASE\tRESULT\tPASSED\tFAILED\tSKIPPED\tBOOT\tTESTS\tVM\tDOWNLOAD\tTOTAL\t")
	for _, r := range runs {
		res := r.res
		p, f, s := res.count()
		for _, t := range res.Tests {
			if !t.ok() && t.Failed == 0 {
				f++ // crashed, timed out or never ran: a failure too
			}
		}
		if !res.Booted {
			f++
		}
		totalPassed, totalFailed, totalSkipped = totalPassed+p, totalFailed+f, totalSkipped+s
		release := res.Release
		if release == "" {
			release = r.k.Release
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n", r.k.Series.Name, release, res.result(), p, f, s,
			secs(res.Boot), secs(res.Wall-res.Boot), secs(res.Wall), secs(r.k.Prepare), secs(r.total))
	}
	tw.Flush()
	fmt.Fprintln(w, "(PASSED/FAILED/SKIPPED: top-level tests; BOOT: qemu start to the init's first word; TESTS: the test binaries;")
	fmt.Fprintln(w, " VM: BOOT+TESTS; DOWNLOAD: finding, downloading and unpacking the kernel, 0 when cached; TOTAL: DOWNLOAD+initramfs+VM)")

	// Test binaries by kernel.
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "TEST BINARY"
	for _, r := range runs {
		header += "\t" + r.k.Series.Name
	}
	fmt.Fprintln(tw, header+"\t")
	var names []string
	if len(runs) > 0 {
		for _, t := range runs[0].res.Tests {
			names = append(names, t.Name)
		}
	}
	for _, n := range names {
		row := n
		for _, r := range runs {
			row += "\t" + cell(r.res, n)
		}
		fmt.Fprintln(tw, row+"\t")
	}
	tw.Flush()

	// Skips, with their reasons.
	for _, r := range runs {
		for _, t := range r.res.Tests {
			for _, s := range t.Skips {
				fmt.Fprintf(w, "skipped on %s: %s %s: %s\n", r.k.Series.Name, t.Name, s.Name, s.Reason)
			}
		}
	}
	for _, r := range runs {
		fmt.Fprintf(w, "console log %s: %s\n", r.k.Series.Name, r.res.Log)
	}
	fmt.Fprintf(w, "\nvmtest: %d passed, %d failed, %d skipped\n", totalPassed, totalFailed, totalSkipped)
}

func cell(res *vmResult, name string) string {
	for _, t := range res.Tests {
		if t.Name != name {
			continue
		}
		switch {
		case !t.Begun:
			return "not run"
		case !t.Ended:
			return "crashed"
		case t.ok():
			s := fmt.Sprintf("ok %d", t.Passed)
			if t.Skipped > 0 {
				s += fmt.Sprintf(" (%d skipped)", t.Skipped)
			}
			return s + fmt.Sprintf(" %.1fs", t.Secs)
		default:
			return fmt.Sprintf("FAIL %d/%d", t.Failed, t.Passed+t.Failed+t.Skipped)
		}
	}
	return "-"
}
