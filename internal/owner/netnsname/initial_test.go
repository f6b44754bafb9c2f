package netnsname

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// The test binary started by childNames finds these in its environment.
const (
	childEnv      = "SOCKTRACE_TEST_NETNSNAME_CHILD" // "mask", "pidns" or "plain"
	childFixedEnv = "SOCKTRACE_TEST_NETNSNAME_FIXED" // "0": behave as kernels without the fixed inode
	childOtherEnv = "SOCKTRACE_TEST_NETNSNAME_OTHER" // a namespace inode to name too
)

func TestMain(m *testing.M) {
	if how := os.Getenv(childEnv); how != "" {
		os.Exit(child(how))
	}
	os.Exit(m.Run())
}

// childNames is what a child reports: the names of its own namespace
// and of the other one it was given.
type childNames struct {
	Own      uint32 `json:"own"`
	OwnName  string `json:"own_name"`
	Other    string `json:"other_name"`
	ReadPID1 bool   `json:"read_pid1"` // it could read /proc/1/ns/net
}

// child runs in a network namespace and a mount namespace of its own
// (and a PID namespace with "pidns"): it hides /proc/1/ns ("mask") or
// mounts a /proc of its PID namespace ("pidns", where it is PID 1 and
// /proc/1/ns/net is its own), then names namespaces as socktrace would.
func child(how string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "netnsname child:", err); return 2 }
	// Nothing mounted here may reach the test's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make mounts private: %w", err))
	}
	switch how {
	case "mask":
		if err := unix.Mount("none", "/proc/1/ns", "tmpfs", 0, ""); err != nil {
			return fail(fmt.Errorf("hide /proc/1/ns: %w", err))
		}
	case "pidns":
		if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
			return fail(fmt.Errorf("mount /proc: %w", err))
		}
	}
	if os.Getenv(childFixedEnv) == "0" {
		initNetnsIno = 0
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return fail(err)
	}
	var out childNames
	out.Own = uint32(st.Ino)
	out.ReadPID1 = syscall.Stat("/proc/1/ns/net", &st) == nil
	other, _ := strconv.ParseUint(os.Getenv(childOtherEnv), 10, 32)
	r := New("/", nil)
	out.OwnName, out.Other = r.Name(out.Own), r.Name(uint32(other))
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return fail(err)
	}
	return 0
}

// TestHostOnlyWhenKnown: "host" names the initial network namespace
// only when socktrace knows which that is. Children started in a
// namespace of their own name theirs after a process, never "host",
// whether /proc/1/ns is hidden (a sandbox), readable and their own (a
// container's init), or readable and the host's; the test's namespace
// (the initial one) is "host" when the kernel's fixed inode says so or
// PID 1's namespace could be read and entered, never else. Each case
// runs as the kernels with the fixed inode number and as those without.
func TestHostOnlyWhenKnown(t *testing.T) {
	testnet.RequireRoot(t)
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	ours := uint32(st.Ino)
	// The test runs in the initial namespace (on the host, in the VMs).
	if v := ownNetns(); !v.ok || v.ino != ours || v.init != yes {
		t.Fatalf("own namespace %+v, want inode %d and the initial one", v, ours)
	}
	fixedKernel := ours == 0xEFFFFFF9
	pid1Readable := syscall.Stat("/proc/1/ns/net", &st) == nil
	for _, c := range []struct {
		how   string
		flags uintptr
	}{
		{"mask", syscall.CLONE_NEWNET | syscall.CLONE_NEWNS},
		{"plain", syscall.CLONE_NEWNET | syscall.CLONE_NEWNS},
		{"pidns", syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID},
	} {
		for _, fixed := range []bool{true, false} {
			name := fmt.Sprintf("%s, fixed inode %v", c.how, fixed)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+c.how, childOtherEnv+"="+strconv.FormatUint(uint64(ours), 10),
				childFixedEnv+"="+map[bool]string{true: "1", false: "0"}[fixed])
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: c.flags}
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: child: %v", name, err)
			}
			var got childNames
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: child said %q: %v", name, out, err)
			}
			if got.Own == ours {
				t.Fatalf("%s: the child is in the test's namespace", name)
			}
			if got.OwnName == "host" || got.OwnName == "" {
				t.Errorf("%s: the child's own namespace (not the initial one) is named %q", name, got.OwnName)
			}
			if got.ReadPID1 != (c.how == "pidns" || c.how == "plain" && pid1Readable) {
				t.Errorf("%s: the child could read /proc/1/ns/net: %v", name, got.ReadPID1)
			}
			switch wantHost := fixed && fixedKernel || c.how == "plain" && pid1Readable; {
			case c.how == "pidns":
				if got.Other != "" { // its /proc shows no process of ours
					t.Errorf("%s: the test's namespace, which no process the child sees lives in, is named %q", name, got.Other)
				}
			case wantHost && got.Other != "host":
				t.Errorf("%s: the test's namespace (the initial one) is named %q, want host", name, got.Other)
			case !wantHost && (got.Other == "host" || got.Other == ""):
				t.Errorf("%s: the test's namespace is named %q; socktrace cannot know it is the host's: want a process living there", name, got.Other)
			}
		}
	}
}

// TestInitialAt: entering a namespace tells the initial one from another,
// on every kernel (the fixed inode number aside).
func TestInitialAt(t *testing.T) {
	ns := testnet.New(t)
	saved := initNetnsIno
	defer func() { initNetnsIno = saved }()
	for _, fixed := range []bool{true, false} {
		if !fixed {
			initNetnsIno = 0
		}
		if v := initialAt("/proc/thread-self/ns/net"); v != yes {
			t.Errorf("fixed inode %v: the test's namespace (the initial one): %v, want yes", fixed, v)
		}
		if v := initialAt(ns.Path()); v != no {
			t.Errorf("fixed inode %v: a new namespace: %v, want no", fixed, v)
		}
		ns.Run(t, func() error {
			if v := initialHere(); v != no {
				return fmt.Errorf("a new namespace, asked from inside: %v, want no", v)
			}
			return nil
		})
		var v verdict
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			v = initialHere()
			close(done)
		}()
		<-done
		if v != yes {
			t.Errorf("the test's namespace, asked from inside: %v, want yes", v)
		}
	}
}
