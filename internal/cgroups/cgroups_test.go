package cgroups_test

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/cgroups"
	"github.com/socktrace/socktrace/internal/testcgroup"
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
