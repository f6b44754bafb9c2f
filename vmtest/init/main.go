// Command init is the /init of the vmtest initramfs: it sets up a minimal
// system (file systems, kernel modules, loopback), runs the test binaries
// the plan names, reports on the serial console in the markers of package
// proto, and powers the VM off.
//
// It is built on the host with CGO_ENABLED=0 and only makes sense as PID 1
// inside a VM; it refuses to run anywhere else.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/loopback"
	"github.com/socktrace/socktrace/vmtest/internal/gotest"
	"github.com/socktrace/socktrace/vmtest/internal/proto"
)

// console is where everything goes; the kernel gives PID 1 /dev/console.
var (
	consoleMu sync.Mutex
	console   io.Writer = os.Stdout
)

// say writes whole lines to the console in one write each, so that lines
// from the tests and markers are not cut into one another.
func say(s string) {
	consoleMu.Lock()
	defer consoleMu.Unlock()
	io.WriteString(console, s)
}

// marker prints a marker line. The harness finds one even where the
// kernel printed into its line.
func marker(kind string, kv ...any) {
	say(proto.Format(kind, kv...))
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vmtest init: this is the /init of a test VM, not a program to run (pid is not 1)")
		os.Exit(2)
	}
	defer func() {
		if r := recover(); r != nil {
			marker(proto.KindError, "msg", fmt.Sprintf("init panicked: %v\n%s", r, debug.Stack()))
		}
		powerOff()
	}()
	run()
}

func run() {
	setup()
	plan, err := readPlan()
	if err != nil {
		marker(proto.KindError, "msg", err.Error())
		return
	}
	for _, m := range plan.Modules {
		name := strings.TrimSuffix(filepath.Base(m), ".ko")
		if err := loadModule(m); err != nil {
			marker(proto.KindModule, "name", name, "err", err.Error())
		} else {
			marker(proto.KindModule, "name", name)
		}
	}
	if err := loopback.Up(); err != nil {
		marker(proto.KindError, "msg", "bring lo up: "+err.Error())
	}
	marker(proto.KindBoot, "release", release(), "uptime", uptime())
	failed := false
	for _, t := range plan.Tests {
		if !runTest(t) {
			failed = true
		}
	}
	if failed {
		dumpKernelLog()
	}
	marker(proto.KindDone, "uptime", uptime())
}

// setup mounts what the tests and socktrace need. Failures are reported
// and the run goes on: the tests will say what is missing.
func setup() {
	mounts := []struct {
		src, dir, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"bpf", "/sys/fs/bpf", "bpf", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=0700"},
		{"tracefs", "/sys/kernel/tracing", "tracefs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"debugfs", "/sys/kernel/debug", "debugfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}
	var errs []string
	for _, m := range mounts {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			errs = append(errs, fmt.Sprintf("mkdir %s: %v", m.dir, err))
			continue
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, m.flags, m.data); err != nil {
			errs = append(errs, fmt.Sprintf("mount %s on %s: %v", m.fstype, m.dir, err))
		}
	}
	// Should the kernel have found no /dev/console in the initramfs, we
	// have no stdout yet: devtmpfs has one now.
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err != nil {
		if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
			unix.Dup2(int(f.Fd()), 0)
			unix.Dup2(int(f.Fd()), 1)
			unix.Dup2(int(f.Fd()), 2)
		}
	}
	for _, e := range errs {
		marker(proto.KindError, "msg", e)
	}
	os.Setenv("PATH", "/bin")
	os.Setenv("HOME", "/root")
	os.Setenv("TMPDIR", "/tmp")
	os.MkdirAll("/root", 0o700)
	unix.Sethostname([]byte("vmtest"))
}

func readPlan() (*proto.Plan, error) {
	b, err := os.ReadFile(proto.PlanPath)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var p proto.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("read plan %s: %w", proto.PlanPath, err)
	}
	return &p, nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.ENOSYS) {
		var b []byte
		if b, err = os.ReadFile(path); err == nil {
			err = unix.InitModule(b, "")
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return nil // already there (built in, or loaded as a dependency)
	}
	return err
}

// runTest runs one test binary, copying its output to the console and
// reporting each failed or skipped test and the totals. It says whether
// the binary passed.
func runTest(t proto.Test) bool {
	marker(proto.KindBegin, "test", t.Name)
	start := time.Now()
	ctx := context.Background()
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, t.Path, t.Args...)
	cmd.Env = append(os.Environ(), t.Env...)
	cmd.Dir = t.Dir
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := gotest.NewParser()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			say(line + "\n")
			r, ok := p.Line(line)
			switch {
			case !ok:
			case r.Status == gotest.Fail:
				marker(proto.KindFail, "test", t.Name, "name", r.Name)
			case r.Status == gotest.Skip:
				marker(proto.KindSkip, "test", t.Name, "name", r.Name, "reason", r.Reason)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-copied
	exit := 0
	if err != nil {
		exit = -1
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			exit = ee.ExitCode()
		}
		if ctx.Err() != nil {
			marker(proto.KindError, "msg", fmt.Sprintf("%s: killed after the %ds timeout", t.Name, t.Timeout))
		} else if exit < 0 || (exit != 1 && p.Count(gotest.Fail) == 0) {
			marker(proto.KindError, "msg", fmt.Sprintf("%s: %v", t.Name, err))
		}
	}
	marker(proto.KindEnd, "test", t.Name, "exit", exit,
		"passed", p.Count(gotest.Pass), "failed", p.Count(gotest.Fail), "skipped", p.Count(gotest.Skip),
		"secs", fmt.Sprintf("%.2f", time.Since(start).Seconds()))
	return exit == 0 && p.Count(gotest.Fail) == 0
}

// dumpKernelLog copies the kernel's log to the console, for a failure's
// post-mortem: the console itself only shows warnings and worse.
func dumpKernelLog() {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		say(fmt.Sprintf("vmtest init: no kernel log: %v\n", err))
		return
	}
	defer unix.Close(fd)
	say("---- kernel log ----\n")
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // overwritten while we read: go on with the next record
		}
		if err != nil || n <= 0 {
			break
		}
		// "prio,seq,usecs,flags;message\n" followed by continuation lines.
		rec := string(buf[:n])
		head, msg, ok := strings.Cut(rec, ";")
		if !ok {
			continue
		}
		var usecs int64
		if f := strings.Split(head, ","); len(f) >= 3 {
			fmt.Sscan(f[2], &usecs)
		}
		msg, _, _ = strings.Cut(msg, "\n")
		say(fmt.Sprintf("[%5d.%06d] %s\n", usecs/1e6, usecs%1e6, msg))
	}
	say("---- end of kernel log ----\n")
}

func release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// uptime is the time since boot, in seconds.
func uptime() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "0"
	}
	return fmt.Sprintf("%.2f", float64(ts.Nano())/1e9)
}

func powerOff() {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Still here: say why, and let the kernel panic (the harness runs
	// qemu with -no-reboot and panic=-1, so that ends the VM too).
	say(fmt.Sprintf("vmtest init: power off: %v\n", err))
	os.Exit(1)
}
