package main

// The agent inside a memory cgroup whose limit is the DaemonSet's: a
// churn with overload bursts over thousands of held sockets must never
// get it killed, and whatever it loses it counts (the gauge still equals
// ss, the connect counters what the load made).

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/socktrace/socktrace/internal/owner/cgroups"
	"github.com/socktrace/socktrace/internal/testkit/k8smanifest"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// memCgroup is a memory cgroup made for a test: under cgroup2 when its
// memory controller is available there, else under cgroup v1's memory
// hierarchy (hybrid hosts, like this kind of VM, have it only there).
type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup creates a memory cgroup limited to limit bytes (swap
// included, where the kernel has swap accounting), removed when the test
// ends.
func newMemCgroup(t *testing.T, limit int64) *memCgroup {
	t.Helper()
	testnet.RequireRoot(t)
	name := fmt.Sprintf("socktrace-test-%d", os.Getpid())
	var c *memCgroup
	if mount := cgroups.New("/").Mount(); mount != "" {
		if b, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers")); err == nil && strings.Contains(" "+string(b)+" ", " memory ") {
			// Let the root's children have the controller (it may be on).
			os.WriteFile(filepath.Join(mount, "cgroup.subtree_control"), []byte("+memory"), 0)
			c = &memCgroup{dir: filepath.Join(mount, name), v2: true}
		}
	}
	if c == nil {
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		var own string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.SplitN(l, ":", 3); len(f) == 3 && strings.Contains(","+f[1]+",", ",memory,") {
				own = f[2]
			}
		}
		root := "/sys/fs/cgroup/memory"
		if _, err := os.Stat(filepath.Join(root, "memory.limit_in_bytes")); err != nil || own == "" {
			testnet.Skip(t, "no memory controller: neither in the cgroup2 mount's cgroup.controllers nor a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
		}
		c = &memCgroup{dir: filepath.Join(root, own, name)}
	}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		t.Fatalf("create memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		// Its processes are gone by now (the agent's cleanup ran first);
		// retry while the kernel finishes tearing them down.
		for i := 0; i < 50; i++ {
			if err := os.Remove(c.dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("remove memory cgroup %s: still busy", c.dir)
	})
	lim := strconv.FormatInt(limit, 10)
	if c.v2 {
		c.write(t, "memory.max", lim)
		c.writeIfThere(t, "memory.swap.max", "0")
	} else {
		c.write(t, "memory.limit_in_bytes", lim)
		c.writeIfThere(t, "memory.memsw.limit_in_bytes", lim)
	}
	return c
}

func (c *memCgroup) write(t *testing.T, file, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(value), 0); err != nil {
		t.Fatalf("memory cgroup: write %s to %s: %v", value, file, err)
	}
}

func (c *memCgroup) writeIfThere(t *testing.T, file, value string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(c.dir, file)); err == nil {
		c.write(t, file, value)
	}
}

// command runs argv inside the cgroup: a shell moves itself in, then
// execs argv.
func (c *memCgroup) command(argv ...string) *exec.Cmd {
	return exec.Command("sh", append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, c.dir}, argv...)...)
}

// number reads a file of one number; keyed: the value of the line
// "key N" of a flat-keyed file.
func (c *memCgroup) number(t *testing.T, file, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		t.Fatalf("memory cgroup: %v", err)
	}
	s := strings.TrimSpace(string(b))
	if key != "" {
		s = ""
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == key {
				s = f[1]
			}
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("memory cgroup: %s %s: %q: %v", file, key, s, err)
	}
	return n
}

// peak is the most the cgroup was charged, and kernel the kernel memory
// (BPF maps and ring buffers among it) it is charged now.
func (c *memCgroup) peak(t *testing.T) int64 {
	if c.v2 {
		return c.number(t, "memory.peak", "")
	}
	return c.number(t, "memory.max_usage_in_bytes", "")
}

func (c *memCgroup) kernel(t *testing.T) int64 {
	if c.v2 {
		return c.number(t, "memory.stat", "kernel")
	}
	return c.number(t, "memory.kmem.usage_in_bytes", "")
}

// ooms is how many processes the kernel's OOM killer killed in it.
func (c *memCgroup) ooms(t *testing.T) int64 {
	if c.v2 {
		return c.number(t, "memory.events", "oom_kill")
	}
	return c.number(t, "memory.oom_control", "oom_kill")
}

// daemonSetMemory is the memory limit and the environment of the
// DaemonSet's container, and its arguments.
func daemonSetMemory(t *testing.T) (limit int64, env []string, args []string) {
	t.Helper()
	m, err := k8smanifest.ReadFile(daemonSetManifest)
	if err != nil {
		t.Fatal(err)
	}
	c := m.DaemonSet.Spec.Template.Spec.Containers[0]
	q, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Fatalf("%s: no memory limit", daemonSetManifest)
	}
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return q.Value(), env, c.Args
}

func TestAgentMemoryLimit(t *testing.T) {
	limit, env, dsArgs := daemonSetMemory(t)
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	const held = 3000
	holdOpen(t, ns, held)
	cg := newMemCgroup(t, limit)

	// The DaemonSet's own flags, but for where it listens and which
	// namespaces it watches (the test's) and the host's root (ours).
	args := []string{"agent", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--netns", ns.Path()}
	for i := 1; i < len(dsArgs); i++ {
		switch dsArgs[i] {
		case "--listen", "--netns", "--host-root":
			i++
		default:
			args = append(args, dsArgs[i])
		}
	}
	addr := args[2]
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := cg.command(append([]string{socktraceBin(t)}, append(args, "--reconcile-every", "2s", "--ready-file", ready)...)...)
	cmd.Env = append(os.Environ(), env...)
	p := startCmd(t, cmd, ready, fmt.Sprintf(" agent in a memory cgroup of %d MiB", limit>>20))
	pid := p.cmd.Process.Pid

	var made, failed atomic.Int64
	dial := func() {
		if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			made.Add(1)
			c.Close()
		} else {
			failed.Add(1)
		}
	}
	// Overload bursts: as fast as 4 threads connect, each burst leaving
	// thousands of time-wait sockets behind for the agent's table and
	// its reconciliations.
	const bursts, workers, each = 6, 4, 2500
	for b := 0; b < bursts; b++ {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ns.Do(func() error {
					for i := 0; i < each; i++ {
						dial()
					}
					return nil
				})
			}()
		}
		wg.Wait()
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("burst %d: the agent is gone (%v): killed at the DaemonSet's memory limit of %d MiB? OOM kills in its cgroup: %d; stderr:\n%s",
				b+1, err, limit>>20, cg.ooms(t), p.stderr.String())
		}
		deadline := time.Now().Add(10 * time.Second)
		var sockets, ss float64
		var m map[string]float64
		for {
			sockets, _, m = gauges(t, addr, port)
			ss = float64(ssAll(t, ns))
			if sockets == ss || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("burst %d: %d connects so far; socktrace_sockets %v, ss %v; lost so far %v; RSS %d KiB; cgroup peak %d KiB, kernel memory %d KiB",
			b+1, made.Load(), sockets, ss, m["socktrace_transitions_lost_total"], rssKiB(t, pid), cg.peak(t)>>10, cg.kernel(t)>>10)
		if sockets != ss {
			t.Errorf("burst %d: socktrace_sockets sums to %v, ss counts %v", b+1, sockets, ss)
		}
	}
	time.Sleep(200 * time.Millisecond)
	_, attempts, _ := gauges(t, addr, port)
	checkConnectsCounted(t, attempts, made.Load(), failed.Load())
	if n := cg.ooms(t); n != 0 {
		t.Errorf("%d OOM kills in the agent's cgroup (limit %d MiB)", n, limit>>20)
	}
	peak := cg.peak(t)
	t.Logf("limit %d MiB (the DaemonSet's); cgroup peak %d KiB (%.0f%% of it), kernel memory %d KiB; agent VmHWM %d KiB",
		limit>>20, peak>>10, 100*float64(peak)/float64(limit), cg.kernel(t)>>10, procStatusKiB(t, pid, "VmHWM:"))
	p.stop(t)
}
