package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// rotate returns xs starting at index k, wrapping: successive rounds run
// the tools in a different order, so none always runs first or after
// the same neighbour.
func rotate[T any](xs []T, k int) []T {
	if len(xs) == 0 {
		return xs
	}
	k %= len(xs)
	return append(append([]T{}, xs[k:]...), xs[:k]...)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// ---- calibration ----

// calibration holds the breakdown that fixes perConn.
type calibration struct {
	Conns   int64
	Total   int64 // transitions socktrace reported
	Misses  uint64
	ByKind  map[string]int64
	PerConn int64
}

// calibrate traces a small run with socktrace and checks that each
// connection makes the same transitions. A transition the kernel did not
// run the program for (nested on a CPU, see bpfStats) is missing from
// the output but counted in the program's recursion misses, so the
// reported ones and the misses must add up; with other traffic on the
// host they may not, and it tries again.
func calibrate(c *config) (*calibration, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var cal *calibration
		if cal, err = calibrateOnce(c); err == nil {
			return cal, nil
		}
		logf("%v", err)
	}
	return nil, err
}

func calibrateOnce(c *config) (*calibration, error) {
	res := runTrial(c, tracerByName("socktrace"), trialOpts{rate: 1000, dur: time.Minute, conns: 2000, keep: true})
	if res.outputPath != "" {
		defer os.Remove(res.outputPath)
	}
	if res.Err != "" {
		return nil, fmt.Errorf("calibration: %s", res.Err)
	}
	cal := &calibration{Conns: res.Conns, Misses: res.KMiss, ByKind: map[string]int64{}}
	err := scanLines(res.outputPath, func(l []byte) {
		var r struct {
			Type     string `json:"type"`
			OldState string `json:"old_state"`
			NewState string `json:"new_state"`
		}
		if json.Unmarshal(l, &r) != nil || r.Type != "transition" {
			return
		}
		cal.Total++
		cal.ByKind[r.OldState+" -> "+r.NewState]++
	})
	if err != nil {
		return nil, err
	}
	all := cal.Total + int64(cal.Misses) - listenerTransitions
	if all < 0 || all%cal.Conns != 0 {
		return cal, fmt.Errorf("calibration: %d transitions reported and %d skipped by the kernel for %d connections: not a whole number each (%v)", cal.Total, cal.Misses, cal.Conns, cal.ByKind)
	}
	cal.PerConn = all / cal.Conns
	for k, n := range cal.ByKind {
		if k == "close -> listening" || k == "listening -> close" {
			if n != 1 {
				return cal, fmt.Errorf("calibration: %s seen %d times, want once", k, n)
			}
			continue
		}
		if n > cal.Conns || n < cal.Conns-int64(cal.Misses) {
			return cal, fmt.Errorf("calibration: %s seen %d times for %d connections (%d skipped)", k, n, cal.Conns, cal.Misses)
		}
	}
	if cal.PerConn != 10 {
		return cal, fmt.Errorf("calibration: %d transitions a connection, want 10 (%v)", cal.PerConn, cal.ByKind)
	}
	return cal, nil
}

// ---- throughput and cost ----

func throughput(c *config) []trial {
	var out []trial
	names := append([]string{"none"}, c.tracers...)
	for round := 1; round <= c.rounds; round++ {
		for ri, r := range c.rates {
			for _, name := range rotate(names, round+ri) {
				var tr *tracer
				if name != "none" {
					tr = tracerByName(name)
				}
				res := runTrial(c, tr, trialOpts{rate: r.perSec, dur: c.duration})
				res.Scenario, res.Target, res.Round = "throughput", r.label, round
				logf("throughput round %d rate %s %-16s conn/s %6.0f expected %7d reported %7d missing %6d (said lost %6d, kernel skipped %4d) cpu %.2fs %s",
					round, r.label, res.Tracer, res.ConnRate, res.Expected, res.Counted, res.Missing, res.Reported, res.KMiss, res.CPU, res.Err)
				out = append(out, res)
				settle()
			}
		}
	}
	return out
}

// settle lets the kernel tear down the last namespace (its time-wait
// sockets) before the next trial.
func settle() { time.Sleep(300 * time.Millisecond) }

// memory runs memConns connections (10 transitions each) as fast as
// they go under each tracer and reads the tracer's VmHWM at the end.
func memory(c *config) []trial {
	var out []trial
	names := c.memTracers
	for round := 1; round <= c.memRounds; round++ {
		for _, name := range rotate(names, round) {
			res := runTrial(c, tracerByName(name), trialOpts{conns: c.memConns})
			res.Scenario, res.Target, res.Round = "memory", "max", round
			logf("memory round %d %-16s transitions %d counted %d VmHWM %d KiB %s", round, res.Tracer, res.Expected, res.Counted, res.HWM, res.Err)
			out = append(out, res)
			settle()
		}
	}
	return out
}

// ---- snapshot ----

type snapRun struct {
	Sockets int     `json:"sockets"` // established sockets held
	Cmd     string  `json:"cmd"`
	Round   int     `json:"round"`
	Wall    float64 `json:"wall_s"`
	CPU     float64 `json:"cpu_s"`
	MaxRSS  int64   `json:"maxrss_kib"`
	Rows    int64   `json:"rows"` // sockets listed
	Want    int64   `json:"want"`
	Err     string  `json:"error,omitempty"`
}

type snapCmd struct {
	label string
	argv  func(c *config, ns string) []string
	rows  func(path string) int64
}

var snapCmds = []snapCmd{
	{"socktrace --once -o json --netns", func(c *config, ns string) []string {
		return []string{c.socktrace, "--once", "-o", "json", "--netns", ns}
	}, func(p string) (n int64) {
		scanLines(p, func(l []byte) {
			if len(l) > len(prefixSocket) && string(l[:len(prefixSocket)]) == string(prefixSocket) {
				n++
			}
		})
		return n
	}},
	{"ss -tan", func(c *config, ns string) []string {
		return []string{"nsenter", "--net=" + ns, c.ss, "-tan"}
	}, func(p string) int64 { return countAllLines(p) - 1 }},
	{"socktrace --once -n --netns", func(c *config, ns string) []string {
		return []string{c.socktrace, "--once", "-n", "--netns", ns}
	}, func(p string) (n int64) {
		scanLines(p, func(l []byte) {
			if len(l) > 0 && !strings.HasPrefix(string(l), "State ") {
				n++
			}
		})
		return n
	}},
	{"ss -tanp", func(c *config, ns string) []string {
		return []string{"nsenter", "--net=" + ns, c.ss, "-tanp"}
	}, func(p string) int64 { return countAllLines(p) - 1 }},
	// socktrace's ss, without and with the sockets' holders.
	{"socktrace ss -tan", func(c *config, ns string) []string {
		return []string{"nsenter", "--net=" + ns, c.socktrace, "ss", "-tan"}
	}, func(p string) int64 { return countAllLines(p) - 1 }},
	{"socktrace ss -tanp", func(c *config, ns string) []string {
		return []string{"nsenter", "--net=" + ns, c.socktrace, "ss", "-tanp"}
	}, func(p string) int64 { return countAllLines(p) - 1 }},
}

func snapshotBench(c *config) ([]snapRun, error) {
	var out []snapRun
	for _, size := range c.snapSizes {
		pairs := size / 2
		t0 := time.Now()
		h, err := startLoadgen(c.loadgen, "hold", "-pairs", strconv.Itoa(pairs))
		if err != nil {
			return out, err
		}
		logf("snapshot: %d sockets held in %s (%.1fs to set up)", 2*pairs, h.ready.Netns, time.Since(t0).Seconds())
		want := h.ready.Sockets // the listeners too
		for round := 1; round <= c.snapRounds; round++ {
			for _, sc := range rotate(snapCmds, round) {
				r := snapRun{Sockets: 2 * pairs, Cmd: sc.label, Round: round, Want: want}
				path := filepath.Join(c.work, "snap.out")
				f, _ := os.Create(path)
				argv := sc.argv(c, h.ready.Netns)
				// A child that Go starts shares the runner's memory until it
				// execs (vfork), and the kernel counts that in its
				// ru_maxrss: GNU time, which forks, gives the command's own.
				tfile := filepath.Join(c.work, "time.out")
				if c.gnuTime != "" {
					argv = append([]string{c.gnuTime, "-f", "%M", "-o", tfile}, argv...)
				}
				cmd := exec.Command(argv[0], argv[1:]...)
				cmd.Stdout, cmd.SysProcAttr = f, sysProcAttr()
				var stderr strings.Builder
				cmd.Stderr = &stderr
				start := time.Now()
				err := cmd.Run()
				r.Wall = time.Since(start).Seconds()
				f.Close()
				if cmd.ProcessState != nil {
					u := rusageOf(cmd.ProcessState)
					r.CPU, r.MaxRSS = u.CPU.Seconds(), u.MaxRSS
				}
				if c.gnuTime != "" {
					b, _ := os.ReadFile(tfile)
					f := strings.Fields(string(b))
					if len(f) > 0 {
						r.MaxRSS, _ = strconv.ParseInt(f[len(f)-1], 10, 64)
					}
					os.Remove(tfile)
				}
				if err != nil {
					r.Err = fmt.Sprintf("%v: %s", err, tail(stderr.String(), 300))
				}
				r.Rows = sc.rows(path)
				if r.Rows != want && r.Err == "" {
					r.Err = fmt.Sprintf("listed %d sockets, want %d", r.Rows, want)
				}
				os.Remove(path)
				logf("snapshot %d round %d %-34s %7.1f ms  rss %6d KiB  rows %d %s", 2*pairs, round, sc.label, r.Wall*1000, r.MaxRSS, r.Rows, r.Err)
				out = append(out, r)
			}
		}
		h.close()
		// The namespace's sockets are torn down after the holder exits:
		// give the kernel time before measuring anything else.
		time.Sleep(3 * time.Second)
	}
	return out, nil
}

// ---- start-up ----

type startRun struct {
	Tool   string  `json:"tool"`
	Round  int     `json:"round"`
	Attach float64 `json:"attach_s"`
	CPU    float64 `json:"cpu_s"`
	MaxRSS int64   `json:"maxrss_kib"`
	Err    string  `json:"error,omitempty"`
}

type startTool struct {
	label string
	argv  func(c *config, readyFile string) []string
	// line: attached when a stdout line starts with this; "" uses the
	// ready file.
	line string
	// exit: done when it exits (--once: listed), not when attached.
	exit bool
}

var startTools = []startTool{
	{"socktrace -o json (--ready-file)", func(c *config, rf string) []string {
		return []string{c.socktrace, "-o", "json", "--ready-file", rf}
	}, "", false},
	{"socktrace -o json --no-snapshot (--ready-file)", func(c *config, rf string) []string {
		return []string{c.socktrace, "-o", "json", "--no-snapshot", "--ready-file", rf}
	}, "", false},
	{"socktrace agent (--ready-file)", func(c *config, rf string) []string {
		return []string{c.socktrace, "agent", "--listen", "127.0.0.1:0", "--ready-file", rf}
	}, "", false},
	{"socktrace --once -o json (until it exits)", func(c *config, rf string) []string {
		return []string{c.socktrace, "--once", "-o", "json"}
	}, "", true},
	{"tcpstates (header line)", func(c *config, _ string) []string {
		return []string{"stdbuf", "-oL", c.tcpstates}
	}, "SKADDR", false},
	{"bpftrace tcpstates.bt (header line)", func(c *config, _ string) []string {
		return []string{c.bpftrace, c.btScript}
	}, "TIME", false},
}

func startup(c *config) []startRun {
	var out []startRun
	tools := startTools
	if !c.hasPeers["tcpstates"] || !c.hasPeers["bpftrace"] {
		tools = nil
		for _, t := range startTools {
			if (strings.HasPrefix(t.label, "tcpstates") && !c.hasPeers["tcpstates"]) || (strings.HasPrefix(t.label, "bpftrace") && !c.hasPeers["bpftrace"]) {
				continue
			}
			tools = append(tools, t)
		}
	}
	for round := 1; round <= c.startRounds; round++ {
		for _, t := range rotate(tools, round) {
			r := startOnce(c, t)
			r.Round = round
			logf("start-up round %d %-45s %7.1f ms  cpu %.0f ms  rss %d KiB %s", round, t.label, r.Attach*1000, r.CPU*1000, r.MaxRSS, r.Err)
			out = append(out, r)
			settle()
		}
	}
	return out
}

func startOnce(c *config, t startTool) (r startRun) {
	r.Tool = t.label
	rf := filepath.Join(c.work, "start.ready")
	os.Remove(rf)
	defer os.Remove(rf)
	argv := t.argv(c, rf)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = sysProcAttr()
	if t.exit {
		// Peak RSS from GNU time, as in the snapshot scenario (ru_maxrss
		// of a child Go starts includes the runner's).
		tfile := filepath.Join(c.work, "time.out")
		if c.gnuTime != "" {
			argv = append([]string{c.gnuTime, "-f", "%M", "-o", tfile}, argv...)
			cmd = exec.Command(argv[0], argv[1:]...)
			cmd.SysProcAttr = sysProcAttr()
		}
		start := time.Now()
		err := cmd.Run()
		r.Attach = time.Since(start).Seconds()
		if cmd.ProcessState != nil {
			r.CPU = rusageOf(cmd.ProcessState).CPU.Seconds()
		}
		if b, rerr := os.ReadFile(tfile); rerr == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				r.MaxRSS, _ = strconv.ParseInt(f[len(f)-1], 10, 64)
			}
			os.Remove(tfile)
		}
		if err != nil {
			r.Err = err.Error()
		}
		return r
	}
	lines := make(chan string, 16)
	if t.line != "" {
		pr, err := cmd.StdoutPipe()
		if err != nil {
			r.Err = err.Error()
			return r
		}
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				default:
				}
			}
			close(lines)
		}()
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.Err = err.Error()
		return r
	}
	deadline := time.After(60 * time.Second)
wait:
	for {
		if t.line == "" {
			if _, err := os.Stat(rf); err == nil {
				break
			}
			if !alive(cmd.Process.Pid) {
				r.Err = "exited before it was attached"
				break
			}
			select {
			case <-deadline:
				r.Err = "not attached after 60s"
				break wait
			case <-time.After(500 * time.Microsecond):
			}
			continue
		}
		select {
		case l, ok := <-lines:
			if !ok {
				r.Err = "exited before it was attached"
				break wait
			}
			if strings.HasPrefix(strings.TrimSpace(l), t.line) {
				break wait
			}
		case <-deadline:
			r.Err = "not attached after 60s"
			break wait
		}
	}
	r.Attach = time.Since(start).Seconds()
	// bpftrace ignores a SIGINT that comes too soon after BEGIN.
	time.Sleep(300 * time.Millisecond)
	// VmHWM of the tool itself (with stdbuf, the process is tcpstates by
	// now): ru_maxrss of a child Go started includes the runner's.
	hwm := statusKiB(cmd.Process.Pid, "VmHWM")
	u, err := stopProc(cmd, syscall.SIGINT, 20*time.Second)
	r.CPU, r.MaxRSS = u.CPU.Seconds(), hwm
	if err != nil && r.Err == "" {
		r.Err = err.Error()
	}
	return r
}

// ---- profile ----

type profEntry struct {
	Pct float64
	Sym string
}

type profile struct {
	Events  int64
	Seconds float64
	CPU     float64
	Self    []profEntry // by symbol, self time
	Total   []profEntry // by symbol, with callees (socktrace's own and the Go runtime's chief ones)
	Err     string
}

var rePerfLine = regexp.MustCompile(`^\s+([0-9.]+)%\s+(?:([0-9.]+)%\s+)?\[([.k])\]\s+(.+?)\s*$`)

// profileKeys pick, from the inclusive profile, socktrace's own functions
// and the library, runtime and kernel ones that say where time goes.
var profileKeys = []string{"socktrace/", "main.", "ringbuf.(*Reader)", "ringbuf.(*epollPoller)", "runtime.gcBgMarkWorker",
	"runtime.mallocgc", "bufio.(*Writer).Flush", "syscall.write", "ksys_write", "do_epoll_wait", "finish_task_switch",
	"time.Time.AppendFormat", "time.Now", "runtime.mapaccess", "schedule", "netip."}

// profileSocktrace records socktrace with perf while it traces the
// highest churn, and returns where its CPU time goes.
func profileSocktrace(c *config) *profile {
	p := &profile{}
	data := filepath.Join(c.work, "perf.data")
	defer os.Remove(data)
	var perr error
	res := runTrial(c, tracerByName("socktrace"), trialOpts{dur: c.duration, during: func(pid int) func() {
		cmd := exec.Command(c.perf, "record", "-F", "1999", "-g", "-p", strconv.Itoa(pid), "-o", data)
		cmd.SysProcAttr = sysProcAttr()
		if perr = cmd.Start(); perr != nil {
			return func() {}
		}
		return func() { stopProc(cmd, syscall.SIGINT, 30*time.Second) }
	}})
	p.Events, p.Seconds, p.CPU = res.Counted, res.Seconds, res.CPU
	if perr != nil {
		p.Err = perr.Error()
		return p
	}
	if res.Err != "" {
		p.Err = res.Err
	}
	report := func(children bool) ([]profEntry, error) {
		args := []string{"report", "-i", data, "--stdio", "--sort", "sym", "-g", "none", "--percent-limit", "0.5"}
		if children {
			args = append(args, "--children")
		} else {
			args = append(args, "--no-children")
		}
		b, err := exec.Command(c.perf, args...).Output()
		if err != nil {
			return nil, err
		}
		var out []profEntry
		for _, l := range strings.Split(string(b), "\n") {
			m := rePerfLine.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			pct, _ := strconv.ParseFloat(m[1], 64)
			sym := m[4]
			if m[3] == "k" {
				sym += " [k]"
			}
			out = append(out, profEntry{pct, sym})
		}
		return out, nil
	}
	var err error
	if p.Self, err = report(false); err != nil {
		p.Err = fmt.Sprintf("perf report: %v", err)
	}
	all, err := report(true)
	if err != nil {
		p.Err = fmt.Sprintf("perf report: %v", err)
	}
	for _, e := range all {
		for _, k := range profileKeys {
			if strings.Contains(e.Sym, k) && !strings.HasPrefix(e.Sym, "main.main") && !strings.HasPrefix(e.Sym, "main.newRootCmd") {
				p.Total = append(p.Total, e)
				break
			}
		}
	}
	sort.SliceStable(p.Total, func(i, j int) bool { return p.Total[i].Pct > p.Total[j].Pct })
	if len(p.Total) > 30 {
		p.Total = p.Total[:30]
	}
	if len(p.Self) > 25 {
		p.Self = p.Self[:25]
	}
	return p
}

// ---- Go micro-benchmarks ----

type microResult struct {
	Pkg, Name string
	Metrics   []string // "48.9 ns/op", "0 B/op", ...
}

var reBench = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)

func micro(c *config) ([]microResult, string, error) {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", c.benchtime, "-count", "1",
		"./internal/events", "./internal/filter", "./internal/output", "./internal/capture"}
	cmd := exec.Command(c.goBin, args...)
	cmd.Dir = c.repo
	b, err := cmd.CombinedOutput()
	var out []microResult
	pkg := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "pkg: ") {
			pkg = strings.TrimPrefix(strings.TrimPrefix(l, "pkg: "), "github.com/socktrace/socktrace/")
			continue
		}
		m := reBench.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		var ms []string
		for i := 0; i+1 < len(f); i += 2 {
			ms = append(ms, f[i]+" "+f[i+1])
		}
		out = append(out, microResult{Pkg: pkg, Name: m[1], Metrics: ms})
	}
	cmdline := c.goBin + " " + strings.Join(args, " ")
	if err != nil {
		return out, cmdline, fmt.Errorf("%v: %s", err, tail(string(b), 1500))
	}
	return out, cmdline, nil
}
