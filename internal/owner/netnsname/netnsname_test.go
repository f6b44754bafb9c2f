package netnsname_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/netnsname"
	"github.com/socktrace/socktrace/internal/testkit/testcgroup"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
	"github.com/socktrace/socktrace/internal/testkit/testpods"
)

// bind names the namespace of process pid as ip netns does: a bind
// mount at /run/netns/NAME, removed when the test ends.
func bind(t *testing.T, pid int) (name string) {
	t.Helper()
	name = fmt.Sprintf("socktrace-test-%d", pid)
	path := "/run/netns/" + name
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/net", pid), path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		t.Fatalf("bind the namespace of %d at %s: %v", pid, path, err)
	}
	t.Cleanup(func() {
		unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
	})
	return name
}

func processComm(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func inode(t *testing.T, path string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// TestNames: the host's namespace (this test's) is "host"; a pod's is
// the pod's, though ip netns named it too; an ip netns one is its name;
// one only a process lives in is that process.
func TestNames(t *testing.T) {
	testnet.RequireRoot(t)
	const uid = "0f1e2d3c-4b5a-6978-8899-aabbccddeeff"
	ctr := strings.Repeat("ab", 32)
	logs := t.TempDir()
	testpods.Write(t, logs, testpods.Pod{Namespace: "shop", Name: "checkout-1", UID: uid, Containers: map[string]string{"app": ctr}})
	// Each sleeper is made in a namespace of its own; ip netns names
	// the pod's and the plain one.
	pod := testcgroup.New(t, "/kubepods/besteffort/pod"+uid+"/"+ctr).Start(t, "new")
	plain := testcgroup.New(t, "/socktrace-test-netnsname-plain.scope").Start(t, "new")
	lone := testcgroup.New(t, "/socktrace-test-netnsname.scope").Start(t, "new")
	bind(t, pod.Process.Pid)
	plainName := bind(t, plain.Process.Pid)
	podIno := inode(t, fmt.Sprintf("/proc/%d/ns/net", pod.Process.Pid))
	plainIno := inode(t, fmt.Sprintf("/proc/%d/ns/net", plain.Process.Pid))
	loneIno := inode(t, fmt.Sprintf("/proc/%d/ns/net", lone.Process.Pid))

	want := map[uint32]string{
		inode(t, "/proc/thread-self/ns/net"): "host", // /proc/self: the main thread, which may have entered another
		podIno:                               "pod:shop/checkout-1",
		plainIno:                             "netns:" + plainName,
	}
	want[loneIno] = processComm(t, lone.Process.Pid) + "/" + strconv.Itoa(lone.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	var r *netnsname.Resolver
	for ino, w := range want {
		var got string
		for {
			r = netnsname.New("/", identity.NewResolver("/", logs, identity.NoCRI))
			if got = r.Name(ino); got == w || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got != w {
			t.Errorf("namespace %d: %q, want %q", ino, got, w)
		}
	}
	pid, ino, ok := r.FindPod("shop", "checkout-1")
	if !ok || ino != podIno || int(pid) != pod.Process.Pid {
		t.Errorf("FindPod: pid %d ino %d %v; want pid %d ino %d", pid, ino, ok, pod.Process.Pid, podIno)
	}
	if _, _, ok := r.FindPod("shop", "nope"); ok {
		t.Error("found a pod that does not exist")
	}
	if n := r.Name(1); n != "" {
		t.Errorf("a namespace nobody lives in: %q", n)
	}
}
