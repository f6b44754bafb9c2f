package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/socktrace/socktrace/internal/witness"
)

// A tracer is one of the tools compared: how to start it on the
// benchmark's namespace, how to know it is attached, and how to count
// what it reported.
type tracer struct {
	name  string // short name, used in -tracers
	label string // as shown in tables
	argv  func(c *config, ns, readyFile string) []string
	// ready reports whether the started process is attached.
	ready func(pid int, outPath, readyFile string) bool
	// count returns the benchmark's transitions in the output, and the
	// transitions the tool itself reported lost.
	count func(outPath, errPath string, marker []byte) (events, lost, skipped int64, err error)
}

var tracers = []*tracer{
	{
		name: "socktrace", label: "socktrace -o json --netns",
		argv: func(c *config, ns, rf string) []string {
			return []string{c.socktrace, "-o", "json", "--netns", ns, "--ready-file", rf}
		},
		ready: readyByFile,
		count: func(out, _ string, _ []byte) (int64, int64, int64, error) { return countJSON(out) },
	},
	{
		name: "socktrace-nosnap", label: "socktrace -o json --netns --no-snapshot",
		argv: func(c *config, ns, rf string) []string {
			return []string{c.socktrace, "-o", "json", "--netns", ns, "--no-snapshot", "--ready-file", rf}
		},
		ready: readyByFile,
		count: func(out, _ string, _ []byte) (int64, int64, int64, error) { return countJSON(out) },
	},
	{
		// The lossy scenario's: retransmit records too.
		name: "socktrace-events", label: "socktrace -o json --netns --no-snapshot --events retransmit",
		argv: func(c *config, ns, rf string) []string {
			return []string{c.socktrace, "-o", "json", "--netns", ns, "--no-snapshot", "--events", "retransmit", "--ready-file", rf}
		},
		ready: readyByFile,
		count: func(out, _ string, _ []byte) (int64, int64, int64, error) { return countJSON(out) },
	},
	{
		// The host-wide scenario's: the whole host, as the peers trace
		// it; the lines with the benchmark's address are counted.
		name: "socktrace-host", label: "socktrace -o json --no-snapshot (host-wide)",
		argv: func(c *config, _, rf string) []string {
			return []string{c.socktrace, "-o", "json", "--no-snapshot", "--summary", "--ready-file", rf}
		},
		ready: readyByFile,
		count: func(out, _ string, marker []byte) (int64, int64, int64, error) {
			return countJSONMarked(out, []byte(`"`+string(bytes.TrimSpace(marker))+`"`))
		},
	},
	{
		// libbpf-tools' tcpstates cannot filter by namespace, and its
		// port filters (-L, -D) are ANDed, which would keep one side of
		// each connection only: it traces everything, and the lines with
		// the benchmark's address are counted. Its stdout is a file, so
		// stdio buffers it in blocks, its fastest way.
		name: "tcpstates", label: "tcpstates (libbpf-tools, C)",
		argv: func(c *config, _, _ string) []string { return []string{c.tcpstates} },
		// It opens its perf buffer's epoll right after attaching; its
		// header line stays in the stdio buffer until 4 KiB are written.
		ready: func(pid int, _, _ string) bool { return hasFdLink(pid, "anon_inode:[eventpoll]") },
		count: func(out, errp string, marker []byte) (int64, int64, int64, error) {
			n, err := countMarked(out, marker)
			return n, sumMatches(reLostTcpstates, errp), 0, err
		},
	},
	{
		name: "bpftrace", label: "bpftrace tcpstates.bt",
		argv: func(c *config, _, _ string) []string { return []string{c.bpftrace, c.btScript} },
		// BEGIN prints the header once every probe is attached; bpftrace
		// flushes each line.
		ready: func(_ int, out, _ string) bool { return fileHasLine(out, "TIME") },
		count: func(out, errp string, marker []byte) (int64, int64, int64, error) {
			n, err := countMarked(out, marker)
			return n, sumMatches(reLostBpftrace, out, errp), 0, err
		},
	},
}

func readyByFile(_ int, _, rf string) bool {
	_, err := os.Stat(rf)
	return err == nil
}

func tracerByName(name string) *tracer {
	for _, t := range tracers {
		if t.name == name {
			return t
		}
	}
	return nil
}

// trial is one run of the load generator with one tracer (or none).
type trial struct {
	Scenario    string  `json:"scenario"`
	Tracer      string  `json:"tracer"`
	Target      string  `json:"target"` // target rate: "5000" or "max"
	Round       int     `json:"round"`
	Conns       int64   `json:"conns"`
	Failed      int64   `json:"failed"`
	Seconds     float64 `json:"seconds"`
	ConnRate    float64 `json:"conn_rate"`
	Behind      float64 `json:"behind_s"`
	Expected    int64   `json:"expected"`
	Counted     int64   `json:"counted"`
	Reported    int64   `json:"reported_lost"`
	SaidSkipped int64   `json:"said_skipped"` // socktrace's own skipped records
	Missing     int64   `json:"missing"`
	CPU         float64 `json:"cpu_s"`       // tracer CPU from go to exit
	Drain       float64 `json:"drain_s"`     // from the end of the load to quiet output
	HWM         int64   `json:"vmhwm_kib"`   // VmHWM just before stop
	MaxRSS      int64   `json:"maxrss_kib"`  // ru_maxrss at exit
	BPFns       uint64  `json:"bpf_run_ns"`  // kernel time in the tracer's BPF programs
	BPFcnt      uint64  `json:"bpf_run_cnt"` // their runs
	KMiss       uint64  `json:"bpf_misses"`  // runs the kernel skipped (nested on a CPU)
	AttachSec   float64 `json:"attach_s"`    // from launch to attached
	Sleeps      int64   `json:"sleeps"`      // voluntary context switches from go to exit
	Writes      int64   `json:"writes"`      // write system calls from go to the stop
	Load1       float64 `json:"loadavg1"`    // 1-minute load average at the start
	// The namespace's TCP counters at the end of the load (a fresh
	// namespace: from 0), and the tool's BPF programs one by one.
	TCP map[string]int64 `json:"tcp,omitempty"`
	// The same when the load's duration ended, and that duration.
	TCPAtEnd    map[string]int64 `json:"tcp_at_end,omitempty"`
	LoadSeconds float64          `json:"load_seconds,omitempty"`
	Progs       []progStat       `json:"progs,omitempty"`
	// socktrace --events: retransmit records received, and the records
	// of events (not transitions) it said it lost.
	RetransRecs int64 `json:"retransmit_records,omitempty"`
	// socktrace with --summary: its ring buffer's size and the most it
	// held at once.
	RingSize   int64 `json:"ring_size,omitempty"`
	RingPeak   int64 `json:"ring_peak,omitempty"`
	EventsLost int64 `json:"events_lost,omitempty"`
	// Witness: the witness's counts, when it ran beside the tool.
	Witness    *witnessCounts
	Err        string `json:"error,omitempty"`
	outputPath string
}

// perConn is the number of inet_sock_set_state transitions each
// loadgen connection makes (asserted by the calibration); the listener
// adds listenerTransitions.
var perConn int64 = 10

const listenerTransitions = 2

// trialOpts describe the load of a trial.
type trialOpts struct {
	rate  float64 // connections a second; 0: max
	dur   time.Duration
	conns int64 // 0: no limit
	// during, if set, is called once the tracer is attached, with its
	// pid; what it returns is called once its output is quiet.
	during func(pid int) func()
	keep   bool // keep the output file (for the calibration)
	// The lossy scenario's: loadgen workers instead of -workers, more
	// loadgen arguments, and setup, run on the namespace before the
	// tracer starts (the packet-dropping rule).
	workers int
	extra   []string
	setup   func(netns string) error
	// The host-wide scenario's: the directory of the output file (""
	// for -work), and, when slow > 0, the tool writes into a pipe that
	// a reader empties at most slow bytes a second into that file.
	outDir string
	slow   int
	// witness: run the witness (internal/witness), attached before the
	// tool and read after it.
	witness bool
}

func loadArgs(c *config, o trialOpts) []string {
	dur := o.dur
	if o.conns > 0 && dur == 0 {
		dur = 10 * time.Minute
	}
	workers := c.workers
	if o.workers > 0 {
		workers = o.workers
	}
	args := []string{"churn", "-wait", "-workers", strconv.Itoa(workers),
		"-rate", strconv.FormatFloat(o.rate, 'f', -1, 64), "-duration", dur.String()}
	if o.conns > 0 {
		args = append(args, "-conns", strconv.FormatInt(o.conns, 10))
	}
	return append(args, o.extra...)
}

// runTrial runs one trial: start the load generator (it sets up its
// namespace and waits), attach the tracer, make the load, wait until the
// tracer's output is quiet, stop it, and count.
func runTrial(c *config, tr *tracer, o trialOpts) (res trial) {
	res.Tracer = "none"
	if tr != nil {
		res.Tracer = tr.name
	}
	res.Load1 = loadavg1()
	lg, err := startLoadgen(c.loadgen, loadArgs(c, o)...)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	if o.setup != nil {
		if err := o.setup(lg.ready.Netns); err != nil {
			lg.cmd.Process.Kill()
			lg.cmd.Wait()
			res.Err = err.Error()
			return res
		}
	}
	if tr == nil {
		d, err := lg.run()
		fillLoad(&res, d, err)
		return res
	}
	dir := c.work
	if o.outDir != "" {
		dir = o.outDir
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%d", tr.name, time.Now().UnixNano()))
	outPath, errPath, rf := base+".out", base+".err", base+".ready"
	outF, _ := os.Create(outPath)
	errF, _ := os.Create(errPath)
	cmd := exec.Command(tr.argv(c, lg.ready.Netns, rf)[0], tr.argv(c, lg.ready.Netns, rf)[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = outF, errF, sysProcAttr()
	var slowDone chan struct{}
	var pw *os.File
	if o.slow > 0 {
		pr, w, err := os.Pipe()
		if err != nil {
			res.Err = err.Error()
			return res
		}
		pw, cmd.Stdout = w, w
		slowDone = make(chan struct{})
		go func() {
			slowCopy(outF, pr, o.slow)
			pr.Close()
			close(slowDone)
		}()
	}
	var wit *witness.Witness
	if o.witness {
		var err error
		if wit, err = startWitness(lg.ready.Addr); err != nil {
			logf("witness: %v (left out of this trial)", err)
		}
	}
	launched := time.Now()
	if err := cmd.Start(); err != nil {
		stopWitness(wit)
		outF.Close()
		errF.Close()
		if pw != nil {
			pw.Close()
			<-slowDone
		}
		lg.cmd.Process.Kill()
		lg.cmd.Wait()
		res.Err = err.Error()
		return res
	}
	if pw != nil {
		pw.Close() // the tool holds the writing end now
	} else {
		outF.Close()
	}
	errF.Close()
	defer func() {
		if !o.keep {
			os.Remove(outPath)
		} else {
			res.outputPath = outPath
		}
		os.Remove(errPath)
		os.Remove(rf)
	}()
	pid := cmd.Process.Pid
	for !tr.ready(pid, outPath, rf) {
		if !alive(pid) || time.Since(launched) > 60*time.Second {
			stopProc(cmd, syscall.SIGKILL, 5*time.Second)
			stopWitness(wit)
			lg.cmd.Process.Kill()
			lg.cmd.Wait()
			b, _ := os.ReadFile(errPath)
			res.Err = fmt.Sprintf("%s did not attach: %s", tr.name, tail(string(b), 400))
			return res
		}
		time.Sleep(2 * time.Millisecond)
	}
	res.AttachSec = time.Since(launched).Seconds()
	var after func()
	if o.during != nil {
		after = o.during(pid)
	}
	cpu0, sw0, w0 := schedCPU(pid), ctxSwitches(pid), ioField(pid, "syscw")
	d, lerr := lg.run()
	loadEnd := time.Now()
	// Wait for the tracer to catch up: its output stops growing.
	last, still := fileSize(outPath), 0
	for still < 4 && time.Since(loadEnd) < 120*time.Second {
		time.Sleep(100 * time.Millisecond)
		if n := fileSize(outPath); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	res.Drain = time.Since(loadEnd).Seconds() - 0.4
	if after != nil {
		after()
	}
	res.HWM = statusKiB(pid, "VmHWM")
	res.BPFns, res.BPFcnt, res.KMiss = bpfStats(pid)
	res.Progs = progStats(pid)
	if k, ok := stateMisses(res.Progs); ok {
		res.KMiss = k
	}
	res.Writes = ioField(pid, "syscw") - w0
	u, serr := stopProc(cmd, syscall.SIGINT, 30*time.Second)
	if slowDone != nil {
		<-slowDone // the rest, at the reader's pace
		outF.Close()
	}
	if wit != nil {
		if c, err := stopWitness(wit); err != nil {
			logf("witness: %v", err)
		} else {
			res.Witness = &c
		}
	}
	res.CPU = (u.CPU - cpu0).Seconds()
	res.Sleeps = u.Nvcsw - sw0
	res.MaxRSS = u.MaxRSS
	fillLoad(&res, d, lerr)
	if serr != nil && res.Err == "" {
		res.Err = serr.Error()
	}
	marker := []byte(" " + lg.ready.Addr + " ")
	res.Counted, res.Reported, res.SaidSkipped, err = tr.count(outPath, errPath, marker)
	res.RingSize, res.RingPeak = ringOf(outPath)
	if err != nil && res.Err == "" {
		res.Err = err.Error()
	}
	res.Missing = res.Expected - res.Counted
	if c.keepOdd != "" && (res.Missing < 0 || toolLoss(res) > 0 || unaccounted(res) != 0) {
		// Keep the output of a trial that does not add up, to look into.
		os.MkdirAll(c.keepOdd, 0o755)
		dst := filepath.Join(c.keepOdd, filepath.Base(outPath))
		if b, err := os.ReadFile(outPath); err == nil {
			os.WriteFile(dst, b, 0o644)
			logf("kept the output of an odd trial in %s", dst)
		}
	}
	return res
}

func fillLoad(res *trial, d doneMsg, err error) {
	res.Conns, res.Failed, res.Seconds, res.ConnRate, res.Behind = d.Connections, d.Failed, d.Seconds, d.Rate, d.Behind
	res.TCP, res.TCPAtEnd, res.LoadSeconds = d.TCP, d.TCPAtEnd, d.LoadSeconds
	res.Expected = perConn*d.Connections + listenerTransitions
	if err != nil && res.Err == "" {
		res.Err = err.Error()
	}
	if d.Failed > 0 && res.Err == "" {
		res.Err = fmt.Sprintf("%d connections failed: transitions not exactly known", d.Failed)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func loadavg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

// slowCopy copies r to w at most rate bytes a second, in 4 KiB reads: a
// consumer that cannot keep up, like a terminal or a slow pipe.
func slowCopy(w io.Writer, r io.Reader, rate int) {
	buf := make([]byte, 4096)
	start, done := time.Now(), 0
	for {
		n, err := r.Read(buf)
		if n > 0 {
			w.Write(buf[:n])
			done += n
			if ahead := time.Duration(float64(done)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if err != nil {
			return
		}
	}
}

// stateMisses is the recursion misses of the tool's programs on the
// state tracepoint alone, when it names them (socktrace's hooks on other
// tracepoints, kfree_skb's among them, skip runs of their own, which are
// no transitions): ok is false when no program has a name.
func stateMisses(progs []progStat) (misses uint64, ok bool) {
	for _, p := range progs {
		if p.Name == "" {
			continue
		}
		ok = true
		if isHookProgram(p.Name) {
			continue
		}
		misses += p.Misses
	}
	return misses, ok
}

// isHookProgram: a socktrace program on a tracepoint other than the
// state one (retransmits, resets, errors, SYN-ACKs, drops).
func isHookProgram(name string) bool {
	for _, s := range []string{"retrans", "synack", "reset", "error", "drop", "kfree"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}
