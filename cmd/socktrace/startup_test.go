package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestKernelBTFParsedOnce: socktrace reads the kernel's BTF
// (/sys/kernel/btf/vmlinux) once while it starts, however many BPF
// programs it loads (the tracer, its hooks and backup, the cookie probe,
// the socket owners iterator): each read is a parse of tens of
// milliseconds, and a dozen of them were most of the time to attached.
// strace counts the opens.
func TestKernelBTFParsedOnce(t *testing.T) {
	straceBin, err := exec.LookPath("strace")
	if err != nil {
		testnet.Skip(t, "no strace (apt-get install strace)")
	}
	ns := testnet.New(t)
	dir := t.TempDir()
	log, ready := filepath.Join(dir, "strace.out"), filepath.Join(dir, "ready")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"the trace", []string{"-o", "json", "--netns", ns.Path(), "--ready-file", ready}},
		{"the agent", []string{"agent", "--netns", ns.Path(), "--listen", "127.0.0.1:" + strconv.Itoa(freePort(t)), "--ready-file", ready}},
	} {
		os.Remove(log)
		cmd := exec.Command(straceBin, append([]string{"-f", "-qq", "-e", "trace=openat", "-e", "signal=none", "-o", log,
			socktraceBin(t)}, c.args...)...)
		p := startCmd(t, cmd, ready, " (under strace)")
		// strace runs socktrace as its child: interrupt that one.
		kids, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task/" + strconv.Itoa(cmd.Process.Pid) + "/children")
		if err != nil || len(strings.Fields(string(kids))) != 1 {
			t.Fatalf("%s: cannot find socktrace under strace (%q, %v)", c.name, kids, err)
		}
		pid, _ := strconv.Atoi(strings.Fields(string(kids))[0])
		unix.Kill(pid, unix.SIGINT)
		select {
		case <-p.eof:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: socktrace did not exit within 10s of SIGINT", c.name)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: exited with %v; stderr:\n%s", c.name, err, p.stderr.String())
		}
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		opens := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `"/sys/kernel/btf/vmlinux"`) && !strings.Contains(l, "= -1") {
				opens++
			}
		}
		if opens != 1 {
			t.Errorf("%s read the kernel's BTF %d times while it started and ran, want once (shared by every BPF program it loads)", c.name, opens)
		}
	}
}
