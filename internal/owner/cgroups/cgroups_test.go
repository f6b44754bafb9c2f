package cgroups_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/owner/cgroups"
	"github.com/socktrace/socktrace/internal/testkit/testcgroup"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

func TestParseProcCgroup(t *testing.T) {
	tests := []struct {
		name, text string
		v2         bool
		want       string
		ok         bool
	}{
		{"pure v2", "0::/system.slice/nginx.service\n", true, "/system.slice/nginx.service", true},
		// This machine: hybrid, v2 at /sys/fs/cgroup/unified.
		{"hybrid", "9:name=systemd:/user.slice/a.scope\n4:memory:/x\n0::/kubepods/pod1/abc\n", true, "/kubepods/pod1/abc", true},
		{"v1 only: name=systemd", "12:pids:/docker/abc\n1:name=systemd:/docker/abc\n", false, "/docker/abc", true},
		{"v1 only: pids", "3:cpu,cpuacct:/a\n2:pids:/docker/def\n", false, "/docker/def", true},
		{"v2 line ignored without v2", "0::/\n", false, "", false},
		{"path with colons", "0::/a:b/c\n", true, "/a:b/c", true},
		{"empty", "", true, "", false},
		{"junk", "nonsense\n::\n0::relative\n", true, "", false},
	}
	for _, tc := range tests {
		got, ok := cgroups.ParseProcCgroup(tc.text, tc.v2)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestResolver: a real cgroup is found by id (after a walk), and a
// process moved into it reports it in /proc/PID/cgroup.
func TestResolver(t *testing.T) {
	r := cgroups.New("/")
	cg := testcgroup.New(t, "/socktrace-test-resolver/inner.scope")
	r.MinRefresh = 0
	if got, ok := r.Path(cg.ID); !ok || got != cg.Path {
		t.Errorf("Path(%d) = %q %v, want %q", cg.ID, got, ok, cg.Path)
	}
	if id, ok := r.ID(cg.Path); !ok || id != cg.ID {
		t.Errorf("ID(%q) = %d %v, want %d", cg.Path, id, ok, cg.ID)
	}
	cmd := cg.Start(t, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, ok := r.OfPID(uint32(cmd.Process.Pid))
		if ok && p == cg.Path {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OfPID(%d) = %q %v, want %q", cmd.Process.Pid, p, ok, cg.Path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Unknown ids are looked up again only after MinRefresh.
	r.MinRefresh = time.Hour
	late := testcgroup.New(t, "/socktrace-test-resolver/late.scope")
	if _, ok := r.Path(late.ID); ok {
		t.Errorf("a cgroup made after the last walk was found within MinRefresh")
	}
	if _, ok := r.Path(0); ok {
		t.Error("id 0 resolved")
	}
}

// TestMountFromTable: the mount is read from the mount table, octal
// escapes undone, under a host root.
func TestMountFromTable(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(root+"/proc/1", 0o755)
	table := "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup/my\\040cg cgroup2 rw 0 0\n"
	os.WriteFile(root+"/proc/1/mounts", []byte(table), 0o644)
	os.MkdirAll(root+"/sys/fs/cgroup/my cg", 0o755)
	if got := cgroups.New(root).Mount(); got != root+"/sys/fs/cgroup/my cg" {
		t.Errorf("mount %q", got)
	}
	os.WriteFile(root+"/proc/1/mounts", []byte("cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n"), 0o644)
	if got := cgroups.New(root).Mount(); got != "" {
		t.Errorf("v1-only host: mount %q, want none", got)
	}
	if m := cgroups.New("/").Mount(); !strings.HasPrefix(m, "/") {
		t.Logf("this host has no cgroup2 mount")
	}
}

// TestLongPathsBounded: cgroups nested to thousands of bytes of path
// are cached within MaxPathBytes; beyond, they are dropped and counted.
func TestLongPathsBounded(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(root+"/proc/1", 0o755)
	os.WriteFile(root+"/proc/1/mounts", []byte("cgroup2 /cg cgroup2 rw 0 0\n"), 0o644) // under the host root
	short := root + "/cg/system.slice/a.service"
	if err := os.MkdirAll(short, 0o755); err != nil {
		t.Fatal(err)
	}
	deep := root + "/cg"
	for i := 0; i < 14; i++ {
		deep += "/" + strings.Repeat(string(rune('a'+i)), 200)
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	ino := func(p string) uint64 {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	old := cgroups.MaxPathBytes
	defer func() { cgroups.MaxPathBytes = old }()

	cgroups.MaxPathBytes = 1 << 20
	r := cgroups.New(root)
	if p, ok := r.Path(ino(deep)); !ok || p != strings.TrimPrefix(deep, root+"/cg") || len(p) < 2800 {
		t.Fatalf("deep path within the budget: %d bytes, %v", len(p), ok)
	}
	if r.Dropped() != 0 {
		t.Errorf("dropped %d within the budget", r.Dropped())
	}

	cgroups.MaxPathBytes = 4000 // the deep chain adds up to about 21,000 bytes of paths
	r = cgroups.New(root)
	if _, ok := r.Path(ino(short)); !ok {
		t.Error("short path not cached")
	}
	if _, ok := r.Path(ino(deep)); ok {
		t.Error("deepest path cached beyond the budget")
	}
	if r.Dropped() == 0 {
		t.Error("nothing counted as dropped")
	}
}

// inFreshSys runs fn on a thread of its own in the mount namespace
// `ip netns exec` gives: unshared, mounts kept from propagating back,
// and a fresh sysfs on /sys, with no cgroup mount under it. If keep is
// not "", the cgroup2 mount at real is bound there first (cgroup2
// mounted elsewhere). The thread ends with fn.
func inFreshSys(t *testing.T, real, keep string, fn func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		err := func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare mount namespace: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("make / a slave: %w", err)
			}
			if keep != "" {
				if err := unix.Mount(real, keep, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("bind %s to %s: %w", real, keep, err)
				}
			}
			unix.Unmount("/sys", unix.MNT_DETACH)
			if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
				return fmt.Errorf("mount a fresh /sys: %w", err)
			}
			fn()
			return nil
		}()
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMountWithoutCgroupMounts: started where no cgroup2 is mounted in
// its mount namespace (under `ip netns exec`), socktrace still reaches
// the hierarchy's root, through a parent's root or a mount of its own,
// and maps cgroup ids to paths there; where it is mounted elsewhere than
// in PID 1's namespace, it takes that mount.
func TestMountWithoutCgroupMounts(t *testing.T) {
	testnet.RequireRoot(t)
	real := cgroups.New("/").Mount()
	if real == "" {
		testnet.Skip(t, "no cgroup2 mount on this host")
	}
	var opts string // the super options of the host's mount
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) > 2 && f[len(f)-3] == "cgroup2" {
				opts = f[len(f)-1]
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		t.Fatal(err)
	}
	rootIno := st.Ino
	cg := testcgroup.New(t, "/socktrace-test-mount/inner.scope")
	elsewhere := t.TempDir()
	for _, tc := range []struct {
		name  string
		keep  string // where the thread's namespace has cgroup2 ("": nowhere)
		mount func() (string, *cgroups.Resolver, error)
	}{
		{"mounted elsewhere", elsewhere, func() (string, *cgroups.Resolver, error) {
			r := cgroups.New("/")
			if r.Mount() != elsewhere {
				return "", nil, fmt.Errorf("mount %q, want %s", r.Mount(), elsewhere)
			}
			return r.Mount(), r, nil
		}},
		{"through a parent's root", "", func() (string, *cgroups.Resolver, error) {
			r := cgroups.New("/")
			return r.Mount(), r, nil
		}},
		{"mounted privately", "", func() (string, *cgroups.Resolver, error) {
			m, err := cgroups.MountPrivate(strings.Split(opts, ","))
			return m, cgroups.NewAt(m), err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inFreshSys(t, real, tc.keep, func() {
				// Gone, or (a pure v2 host: /sys/fs/cgroup) an empty
				// directory of the fresh sysfs, not cgroup2.
				var was unix.Statfs_t
				if err := unix.Statfs(real, &was); err == nil && was.Type == unix.CGROUP2_SUPER_MAGIC {
					t.Errorf("%s still cgroup2 under a fresh /sys", real)
				}
				m, r, err := tc.mount()
				if err != nil {
					t.Errorf("mount: %v", err)
					return
				}
				var fs unix.Statfs_t
				var st unix.Stat_t
				if err := unix.Statfs(m, &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
					t.Errorf("mount %q: statfs %v, type %#x: not cgroup2", m, err, fs.Type)
					return
				}
				if err := unix.Stat(m, &st); err != nil || st.Ino != rootIno {
					t.Errorf("mount %q: inode %d (%v), the root's is %d", m, st.Ino, err, rootIno)
				}
				r.MinRefresh = 0
				if p, ok := r.Path(cg.ID); !ok || p != cg.Path {
					t.Errorf("Path(%d) = %q %v, want %q", cg.ID, p, ok, cg.Path)
				}
				if id, ok := r.ID(cg.Path); !ok || id != cg.ID {
					t.Errorf("ID(%q) = %d %v, want %d", cg.Path, id, ok, cg.ID)
				}
			})
		})
	}
}
