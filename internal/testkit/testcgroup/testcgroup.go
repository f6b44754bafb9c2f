// Package testcgroup gives tests real cgroups under the host's cgroup2
// mount, named as a container runtime or systemd would name them, and
// starts processes in them.
package testcgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/owner/cgroups"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// Cgroup is a cgroup made for a test.
type Cgroup struct {
	Path  string // relative to the cgroup2 mount, starting with /
	Dir   string // the directory
	Mount string // the cgroup2 mount
	ID    uint64 // its cgroup v2 id (the directory's inode)
}

// New creates the cgroup at path (relative to the cgroup2 mount, its
// parents too) and removes them when the test ends (after its processes
// have gone). Without cgroup2, the test is skipped (or fails, under
// SOCKTRACE_REQUIRE_ROOT).
func New(t testing.TB, path string) *Cgroup {
	t.Helper()
	testnet.RequireRoot(t)
	mount := cgroups.New("/").Mount()
	if mount == "" {
		testnet.Skip(t, "no cgroup2 mount in /proc/mounts")
	}
	dir := filepath.Join(mount, path)
	// Remove what we create, innermost first.
	var made []string
	for p := dir; p != mount; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		made = append(made, p)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create cgroup %s: %v", path, err)
	}
	t.Cleanup(func() {
		for _, p := range made {
			os.Remove(p)
		}
	})
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return &Cgroup{Path: "/" + strings.TrimPrefix(path, "/"), Dir: dir, Mount: mount, ID: st.Ino}
}

// Command returns cmd, to be started, that runs argv inside the cgroup
// (and in the network namespace at netnsPath, unless ""): a shell moves
// itself in through cgroup.procs, then execs argv. It needs sh and
// nsenter (the host has them; the test VMs do not: use Start there).
// Kill it before the test ends: the cgroup is removed then.
func (c *Cgroup) Command(netnsPath string, argv ...string) *exec.Cmd {
	script := fmt.Sprintf(`echo $$ > %q && exec "$@"`, filepath.Join(c.Dir, "cgroup.procs"))
	args := append([]string{"sh", "-c", script, "sh"}, argv...)
	if netnsPath != "" {
		args = append([]string{"nsenter", "--net=" + netnsPath}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	return cmd
}

// Start starts a process that sleeps inside the cgroup until the test
// ends, in the network namespace at netnsPath ("": ours; "new": one of
// its own). It needs no other program: it is the test binary itself,
// created straight into the cgroup (clone3 CLONE_INTO_CGROUP), which
// this package's init makes wait (see sleepEnv).
func (c *Cgroup) Start(t testing.TB, netnsPath string) *exec.Cmd {
	t.Helper()
	dir, err := os.Open(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), sleepEnv+"=1", netnsEnv+"="+netnsPath)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if netnsPath == "new" {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in %s: %v", c.Path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// A test binary started by Start finds these in its environment.
const (
	sleepEnv = "SOCKTRACE_TESTCGROUP_SLEEP"
	netnsEnv = "SOCKTRACE_TESTCGROUP_NETNS"
)

// init turns a test binary started by Start into a sleeper, before any
// test runs: on the main thread (the one /proc/PID/ns/net shows), it
// enters the namespace asked for, then waits to be killed.
func init() {
	if os.Getenv(sleepEnv) == "" {
		return
	}
	runtime.LockOSThread() // in init: the main thread
	if p := os.Getenv(netnsEnv); p != "" && p != "new" {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "testcgroup sleeper: enter %s: %v\n", p, err)
			os.Exit(2)
		}
	}
	for {
		time.Sleep(time.Hour)
	}
}

// Join moves the calling process (all its threads) into the cgroup,
// and back where it was when the test ends, before the cgroup goes.
func (c *Cgroup) Join(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	was, ok := cgroups.ParseProcCgroup(string(b), true)
	if !ok {
		t.Fatalf("no cgroup v2 line in /proc/self/cgroup:\n%s", b)
	}
	home := filepath.Join(c.Mount, was)
	c.Move(t, os.Getpid())
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(home, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0); err != nil {
			t.Errorf("move back to %s: %v", was, err)
		}
	})
}

// Move moves process pid into the cgroup.
func (c *Cgroup) Move(t testing.TB, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.Dir, "cgroup.procs"), []byte(fmt.Sprint(pid)), 0); err != nil {
		t.Fatalf("move %d into %s: %v", pid, c.Path, err)
	}
}
