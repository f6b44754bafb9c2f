package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/vmtest/internal/proto"
)

// vmConfig says how to run qemu.
type vmConfig struct {
	accel   string // "tcg" or "kvm"
	memMiB  int
	cpus    int
	timeout time.Duration
	echo    io.Writer // the console as it comes, or nil
}

// cmdline is the kernel command line: the console on the first serial
// port; a panic (the init dying) ends the VM at once, as does the init's
// power-off; only warnings and worse from the kernel on the console.
const cmdline = "console=ttyS0 panic=-1 oops=panic loglevel=4 mitigations=off"

func qemuArgs(cfg vmConfig, kernel, initrd string) []string {
	args := []string{
		"-nographic", "-serial", "mon:stdio",
		"-no-reboot",
		"-m", fmt.Sprint(cfg.memMiB), "-smp", fmt.Sprint(cfg.cpus),
		"-nic", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", cmdline,
	}
	if cfg.accel == "kvm" {
		return append(args, "-accel", "kvm", "-cpu", "host")
	}
	return append(args, "-accel", "tcg", "-cpu", "max")
}

// testResult is one test binary's outcome in one VM.
type testResult struct {
	Name     string
	Begun    bool
	Ended    bool
	Exit     int
	Passed   int
	Failed   int
	Skipped  int
	Secs     float64
	Failures []string // failed tests and subtests
	Skips    []skip
	output   []string // its console lines, for the failure report
}

type skip struct{ Name, Reason string }

func (t *testResult) ok() bool { return t.Ended && t.Exit == 0 && t.Failed == 0 }

// vmResult is what one VM run gave.
type vmResult struct {
	Release  string // uname -r in the VM
	Booted   bool
	Boot     time.Duration // from qemu's start to the init's boot marker
	Done     bool
	TimedOut bool
	Wall     time.Duration // qemu's whole run
	Errors   []string      // setup errors and module failures
	Tests    []*testResult // in plan order
	QemuErr  error
	Log      string // console log file
	tail     []string
}

// pass says whether every planned test ran and passed.
func (r *vmResult) pass() bool {
	if !r.Done || r.TimedOut || len(r.Errors) > 0 {
		return false
	}
	for _, t := range r.Tests {
		if !t.ok() {
			return false
		}
	}
	return true
}

func (r *vmResult) count() (passed, failed, skipped int) {
	for _, t := range r.Tests {
		passed += t.Passed
		failed += t.Failed
		skipped += t.Skipped
	}
	return
}

// console follows the console output of one VM.
type console struct {
	mu       sync.Mutex
	res      *vmResult
	start    time.Time
	byName   map[string]*testResult
	current  *testResult
	progress func(string)
	onDone   func()
}

func newConsole(res *vmResult, plan proto.Plan, start time.Time, progress func(string)) *console {
	c := &console{res: res, start: start, byName: map[string]*testResult{}, progress: progress}
	for _, t := range plan.Tests {
		tr := &testResult{Name: t.Name}
		res.Tests = append(res.Tests, tr)
		c.byName[t.Name] = tr
	}
	return c
}

const maxOutput = 4000 // lines of a test binary's output kept for the report

func (c *console) line(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	line = strings.TrimRight(line, "\r")
	c.res.tail = append(c.res.tail, line)
	if len(c.res.tail) > 200 {
		c.res.tail = c.res.tail[len(c.res.tail)-100:]
	}
	m, ok := proto.Parse(line)
	if !ok {
		if c.current != nil && len(c.current.output) < maxOutput {
			c.current.output = append(c.current.output, line)
		}
		return
	}
	t := c.byName[m.Get("test")]
	switch m.Kind {
	case proto.KindBoot:
		c.res.Booted = true
		c.res.Release = m.Get("release")
		c.res.Boot = time.Since(c.start)
		c.progress(fmt.Sprintf("booted %s in %.1fs (kernel uptime %ss)", c.res.Release, c.res.Boot.Seconds(), m.Get("uptime")))
	case proto.KindModule:
		if e := m.Get("err"); e != "" {
			c.res.Errors = append(c.res.Errors, fmt.Sprintf("load module %s: %s", m.Get("name"), e))
		}
	case proto.KindError:
		c.res.Errors = append(c.res.Errors, m.Get("msg"))
		c.progress("error: " + m.Get("msg"))
	case proto.KindBegin:
		if t != nil {
			t.Begun = true
			c.current = t
		}
	case proto.KindFail:
		if t != nil {
			t.Failures = append(t.Failures, m.Get("name"))
		}
	case proto.KindSkip:
		if t != nil {
			t.Skips = append(t.Skips, skip{m.Get("name"), m.Get("reason")})
		}
	case proto.KindEnd:
		if t != nil {
			t.Ended = true
			t.Exit, t.Passed, t.Failed, t.Skipped = m.Int("exit"), m.Int("passed"), m.Int("failed"), m.Int("skipped")
			t.Secs = m.Float("secs")
			c.current = nil
			status := "ok  "
			if !t.ok() {
				status = "FAIL"
			}
			msg := fmt.Sprintf("%s %-10s %3d passed, %d failed, %d skipped, exit %d, %.1fs", status, t.Name, t.Passed, t.Failed, t.Skipped, t.Exit, t.Secs)
			if len(t.Failures) > 0 {
				msg += ": " + strings.Join(t.Failures, ", ")
			}
			c.progress(msg)
		}
	case proto.KindDone:
		c.res.Done = true
		if c.onDone != nil {
			c.onDone()
		}
	}
}

// runVM boots one kernel with one initramfs and follows its console until
// the VM powers off, crashes or runs out of time.
func runVM(ctx context.Context, cfg vmConfig, kernel, initrd, logPath string, plan proto.Plan, progress func(string)) *vmResult {
	res := &vmResult{Log: logPath}
	logf, err := os.Create(logPath)
	if err != nil {
		res.QemuErr = err
		return res
	}
	defer logf.Close()

	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	args := qemuArgs(cfg, kernel, initrd)
	fmt.Fprintf(logf, "# qemu-system-x86_64 %s\n", strings.Join(quoteArgs(args), " "))
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.Stdin = nil // /dev/null: nothing to type into the monitor
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.WaitDelay = 5 * time.Second
	// Its own process group, so that a terminal's Ctrl-C reaches us only;
	// we kill qemu ourselves.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw

	start := time.Now()
	c := newConsole(res, plan, start, progress)
	// After the init's last word, the VM has a little time to power off.
	doneTimer := make(chan struct{})
	var once sync.Once
	c.onDone = func() { once.Do(func() { close(doneTimer) }) }
	go func() {
		select {
		case <-doneTimer:
			select {
			case <-time.After(30 * time.Second):
				cancel()
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		out := io.Writer(logf)
		if cfg.echo != nil {
			out = io.MultiWriter(logf, cfg.echo)
		}
		for sc.Scan() {
			line := sc.Text()
			io.WriteString(out, strings.TrimRight(line, "\r")+"\n")
			c.line(line)
		}
		io.Copy(io.Discard, pr)
	}()
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-readDone
		res.QemuErr = err
		return res
	}
	err = cmd.Wait()
	res.Wall = time.Since(start)
	pw.Close()
	<-readDone
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && !res.Done {
		res.TimedOut = true
	}
	if err != nil && !res.Done && !res.TimedOut {
		res.QemuErr = err
	}
	fmt.Fprintf(logf, "# qemu ended after %.1fs: %v (done=%v, timed out=%v)\n", res.Wall.Seconds(), err, res.Done, res.TimedOut)
	return res
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \"'") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

// kvmUsable says whether /dev/kvm can be opened. Whether KVM really runs
// a guest is for probeKVM to find out.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
