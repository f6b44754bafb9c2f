package procs

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// fakeProc builds a /proc-like tree: for each pid, its comm and fd links.
func fakeProc(t *testing.T, procs map[int]struct {
	comm  string
	links map[int]string
}) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(p.comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for fd, target := range p.links {
			if err := os.Symlink(target, filepath.Join(dir, "fd", strconv.Itoa(fd))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Entries that are not processes are ignored.
	os.MkdirAll(filepath.Join(root, "net"), 0o755)
	os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644)
	return root
}

func TestScan(t *testing.T) {
	root := fakeProc(t, map[int]struct {
		comm  string
		links map[int]string
	}{
		10: {"nginx", map[int]string{3: "socket:[100]", 4: "socket:[101]", 5: "/var/log/x", 6: "pipe:[7]"}},
		11: {"nginx", map[int]string{6: "socket:[100]", 2: "socket:[100]"}},
		12: {"java", map[int]string{120: "socket:[200]", 7: "socket:[bad]", 8: "socket:["}},
	})
	got := scan(root, nil)
	want := Table{
		100: {{PID: 10, Comm: "nginx", FD: 3}, {PID: 11, Comm: "nginx", FD: 2}, {PID: 11, Comm: "nginx", FD: 6}},
		101: {{PID: 10, Comm: "nginx", FD: 4}},
		200: {{PID: 12, Comm: "java", FD: 120}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("scan:\n got %v\nwant %v", got, want)
	}
	if got := scan(root, map[uint32]bool{200: true}); !reflect.DeepEqual(got, Table{200: want[200]}) {
		t.Errorf("scan of inode 200 only: %v", got)
	}
	if got := scan(filepath.Join(root, "nothing"), nil); len(got) != 0 {
		t.Errorf("scan of a missing root: %v", got)
	}
}

// TestScanManyProcesses: the work is split over workers; nothing is lost
// or counted twice.
func TestScanManyProcesses(t *testing.T) {
	procs := map[int]struct {
		comm  string
		links map[int]string
	}{}
	for pid := 1; pid <= 300; pid++ {
		procs[pid] = struct {
			comm  string
			links map[int]string
		}{"p" + strconv.Itoa(pid), map[int]string{3: "socket:[" + strconv.Itoa(1000+pid) + "]", 4: "socket:[1]"}}
	}
	got := scan(fakeProc(t, procs), nil)
	if len(got) != 301 || len(got[1]) != 300 {
		t.Fatalf("%d inodes, %d holders of the shared one; want 301 and 300", len(got), len(got[1]))
	}
	for i, o := range got[1] {
		if o.PID != uint32(i+1) || o.FD != 4 || o.Comm != "p"+strconv.Itoa(i+1) {
			t.Fatalf("holder %d of the shared socket: %+v (want sorted by pid)", i, o)
		}
	}
}

func TestSocketInode(t *testing.T) {
	tests := []struct {
		link string
		ino  uint32
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[4294967295]", 4294967295, true},
		{"socket:[4294967296]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12", 0, false},
		{"pipe:[12]", 0, false},
		{"/dev/null", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		ino, ok := socketInode([]byte(tt.link))
		if ino != tt.ino || ok != tt.ok {
			t.Errorf("socketInode(%q) = %d, %v; want %d, %v", tt.link, ino, ok, tt.ino, tt.ok)
		}
	}
}

func TestUsers(t *testing.T) {
	tests := []struct {
		owners []Owner
		want   string
	}{
		{nil, ""},
		{[]Owner{{PID: 7, Comm: "nginx", FD: 6}}, `users:(("nginx",pid=7,fd=6))`},
		{[]Owner{{PID: 7, Comm: "nginx", FD: 6}, {PID: 8, Comm: "nginx", FD: 6}}, `users:(("nginx",pid=7,fd=6),("nginx",pid=8,fd=6))`},
	}
	for _, tt := range tests {
		if got := Users(tt.owners); got != tt.want {
			t.Errorf("Users(%v) = %q, want %q", tt.owners, got, tt.want)
		}
	}
}
