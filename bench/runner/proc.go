package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// usage is what a finished process used.
type usage struct {
	CPU    time.Duration // user + system
	MaxRSS int64         // KiB, peak resident set (ru_maxrss)
	Nvcsw  int64         // voluntary context switches: times it slept
}

func rusageOf(ps *os.ProcessState) usage {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return usage{}
	}
	return usage{
		CPU:    time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		MaxRSS: ru.Maxrss,
		Nvcsw:  ru.Nvcsw,
	}
}

// schedCPU is the CPU time a live process has used so far, in
// nanoseconds, summed over its threads (/proc/PID/task/*/schedstat).
func schedCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

// ioField reads a field of /proc/PID/io (syscw: write system calls).
func ioField(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// ctxSwitches sums voluntary context switches over a live process's threads.
func ctxSwitches(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// statusKiB reads a "Vm...:  123 kB" field of /proc/PID/status.
func statusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line[len(field)+1:])
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// bpfStats sums, over the BPF programs a process holds, their run time
// and run count (fdinfo shows them while kernel.bpf_stats_enabled is 1)
// and their recursion misses: runs the kernel skipped because the
// program (for a tracepoint program: any kprobe or tracepoint program)
// was already running on that CPU, interrupted by a softirq that made
// another transition. The tool never sees those transitions.
func bpfStats(pid int) (ns, cnt, misses uint64) {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	for _, f := range fds {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte("prog_type:")) {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch k {
			case "run_time_ns":
				ns += n
			case "run_cnt":
				cnt += n
			case "recursion_misses":
				misses += n
			}
		}
	}
	return ns, cnt, misses
}

// progStat is one BPF program of a process: its name (from the kernel,
// at most 15 characters), runs, time and recursion misses.
type progStat struct {
	ID     uint32 `json:"id"`
	Name   string `json:"name"`
	NS     uint64 `json:"run_ns"`
	Cnt    uint64 `json:"run_cnt"`
	Misses uint64 `json:"misses"`
}

// progStats lists the BPF programs the process holds (fdinfo), each once,
// with its name (BPF_OBJ_GET_INFO_BY_FD of the program by its id).
func progStats(pid int) []progStat {
	var out []progStat
	seen := map[uint32]bool{}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	for _, f := range fds {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte("prog_type:")) {
			continue
		}
		var p progStat
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch k {
			case "prog_id":
				p.ID = uint32(n)
			case "run_time_ns":
				p.NS = n
			case "run_cnt":
				p.Cnt = n
			case "recursion_misses":
				p.Misses = n
			}
		}
		if p.ID == 0 || seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		if prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(p.ID)); err == nil {
			if info, err := prog.Info(); err == nil {
				p.Name = info.Name
			}
			prog.Close()
		}
		out = append(out, p)
	}
	return out
}

// countPackets counts socktrace's retransmit records and the records of
// events (not transitions) it said it lost.
func countPackets(path string) (retrans, lost int64, err error) {
	err = scanLines(path, func(l []byte) {
		switch {
		case bytes.HasPrefix(l, prefixRetransmit):
			retrans++
		case bytes.HasPrefix(l, prefixLostEvents):
			if m := reLostJSON.FindSubmatch(l); m != nil {
				n, _ := strconv.ParseInt(string(m[1]), 10, 64)
				lost += n
			}
		}
	})
	return retrans, lost, err
}

// hasFdLink reports whether the process has an fd whose link contains s
// (e.g. "anon_inode:[eventpoll]").
func hasFdLink(pid int, s string) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, f := range fds {
		if l, err := os.Readlink(f); err == nil && strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// alive reports whether the process runs (it is neither gone nor a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// stopProc sends sig, waits up to timeout, then kills.
func stopProc(cmd *exec.Cmd, sig os.Signal, timeout time.Duration) (usage, error) {
	cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		err = fmt.Errorf("%s did not stop within %s after %v: killed", filepath.Base(cmd.Path), timeout, sig)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = nil // a signal exit is how we stop them
	}
	return rusageOf(cmd.ProcessState), err
}

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// ---- the load generator ----

type readyMsg struct {
	Event      string `json:"event"`
	PID        int    `json:"pid"`
	Netns      string `json:"netns"`
	NetnsInode uint64 `json:"netns_inode"`
	Addr       string `json:"addr"`
	Port       int    `json:"port"`
	Sockets    int64  `json:"sockets"`
}

type doneMsg struct {
	Event         string  `json:"event"`
	Connections   int64   `json:"connections"`
	Failed        int64   `json:"failed"`
	ConnectFailed int64   `json:"connect_failed"` // of the failed: connect() itself
	Seconds       float64 `json:"seconds"`
	Rate          float64 `json:"rate"`
	Behind        float64 `json:"behind_seconds"`
	// The namespace's TCP counters that are not 0 (RetransSegs, ...).
	TCP map[string]int64 `json:"tcp"`
	// The same when the load's duration ended, and that duration.
	TCPAtEnd    map[string]int64 `json:"tcp_at_end"`
	LoadSeconds float64          `json:"load_seconds"`
}

type loadgen struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
	ready  readyMsg
}

func startLoadgen(bin string, args ...string) (*loadgen, error) {
	l := &loadgen{cmd: exec.Command(bin, args...)}
	l.cmd.SysProcAttr = sysProcAttr()
	l.cmd.Stderr = &l.stderr
	var err error
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := l.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	l.out = bufio.NewReader(out)
	if err := l.cmd.Start(); err != nil {
		return nil, err
	}
	line, err := l.out.ReadBytes('\n')
	if err != nil {
		l.cmd.Process.Kill()
		l.cmd.Wait()
		return nil, fmt.Errorf("loadgen %s: no ready line: %v: %s", strings.Join(args, " "), err, l.stderr.String())
	}
	if err := json.Unmarshal(line, &l.ready); err != nil || l.ready.Event != "ready" {
		l.cmd.Process.Kill()
		l.cmd.Wait()
		return nil, fmt.Errorf("loadgen: bad ready line %q", line)
	}
	return l, nil
}

// run starts the work and waits for its report and exit.
func (l *loadgen) run() (doneMsg, error) {
	var d doneMsg
	if _, err := io.WriteString(l.stdin, "go\n"); err != nil {
		return d, err
	}
	line, err := l.out.ReadBytes('\n')
	werr := l.cmd.Wait()
	if err != nil {
		return d, fmt.Errorf("loadgen: no result: %v (%v): %s", err, werr, l.stderr.String())
	}
	if err := json.Unmarshal(line, &d); err != nil || d.Event != "done" {
		return d, fmt.Errorf("loadgen: bad result line %q", line)
	}
	return d, werr
}

// close ends a holder (stdin EOF) and waits for it.
func (l *loadgen) close() {
	l.stdin.Close()
	done := make(chan struct{})
	go func() { l.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		l.cmd.Process.Kill()
		<-done
	}
}

// ---- counting tracer output ----

// scanLines calls fn for each line of the file at path.
func scanLines(path string, fn func(line []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	return sc.Err()
}

var (
	prefixTransition = []byte(`{"type":"transition"`)
	prefixLost       = []byte(`{"type":"lost"`)
	prefixLostEvents = []byte(`{"type":"lost","records":"events"`)
	prefixRetransmit = []byte(`{"type":"retransmit"`)
	prefixSocket     = []byte(`{"type":"socket"`)
	prefixSkipped    = []byte(`{"type":"skipped"`)
	reLostJSON       = regexp.MustCompile(`"count":(\d+)`)
	reLostTcpstates  = regexp.MustCompile(`lost (\d+) events`)
	reLostBpftrace   = regexp.MustCompile(`Lost (\d+) events`)
)

// countJSON counts socktrace's transition records, the transitions its
// lost records report, and those its skipped records report (the kernel's
// recursion misses, which socktrace reports itself since 17e089b).
func countJSON(path string) (events, lost, skipped int64, err error) {
	return countJSONWhere(path, nil)
}

// countJSONMarked is countJSON for a tool that traced the whole host:
// only the transitions whose lines contain marker (the benchmark's
// address, quoted) are counted; lost and skipped counts are the tool's
// whole.
func countJSONMarked(path string, marker []byte) (events, lost, skipped int64, err error) {
	return countJSONWhere(path, marker)
}

// countJSONWhere counts the transitions (those containing marker, if not
// nil) and adds up the lost and skipped records.
func countJSONWhere(path string, marker []byte) (events, lost, skipped int64, err error) {
	err = scanLines(path, func(l []byte) {
		switch {
		case bytes.HasPrefix(l, prefixTransition):
			if marker == nil || bytes.Contains(l, marker) {
				events++
			}
		case bytes.HasPrefix(l, prefixLostEvents):
			// retransmit, reset or error records lost: not transitions
		case bytes.HasPrefix(l, prefixLost), bytes.HasPrefix(l, prefixSkipped):
			if m := reLostJSON.FindSubmatch(l); m != nil {
				n, _ := strconv.ParseInt(string(m[1]), 10, 64)
				if l[9] == 'l' {
					lost += n
				} else {
					skipped += n
				}
			}
		}
	})
	return events, lost, skipped, err
}

var reRing = regexp.MustCompile(`"ring":\{"size_bytes":([0-9]+),"peak_bytes":([0-9]+)\}`)

// ringOf reads the ring buffer's size and peak from socktrace's last
// summary record in the output (0, 0 without one).
func ringOf(path string) (size, peak int64) {
	scanLines(path, func(l []byte) {
		if bytes.HasPrefix(l, []byte(`{"type":"summary"`)) {
			if m := reRing.FindSubmatch(l); m != nil {
				size, _ = strconv.ParseInt(string(m[1]), 10, 64)
				peak, _ = strconv.ParseInt(string(m[2]), 10, 64)
			}
		}
	})
	return size, peak
}

// countMarked counts the lines that contain marker (the benchmark's own
// address: other lines are the rest of the host's traffic).
func countMarked(path string, marker []byte) (events int64, err error) {
	err = scanLines(path, func(l []byte) {
		if bytes.Contains(l, marker) {
			events++
		}
	})
	return events, err
}

// sumMatches adds up the first group of re over the files.
func sumMatches(re *regexp.Regexp, paths ...string) int64 {
	var n int64
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			v, _ := strconv.ParseInt(string(m[1]), 10, 64)
			n += v
		}
	}
	return n
}

func countAllLines(path string) (n int64) {
	scanLines(path, func([]byte) { n++ })
	return n
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// fileHasLine reports whether the file at path has a line starting with
// prefix within its first 64 KiB.
func fileHasLine(path, prefix string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, b)
	for _, l := range strings.Split(string(b[:n]), "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
