// Package procs finds which processes hold which sockets, the way ss -p
// does: by reading the links in /proc/PID/fd, where a socket shows as
// "socket:[INODE]".
package procs

import (
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/safetext"
)

// Owner is one process holding a socket through one file descriptor.
type Owner struct {
	PID  uint32
	Comm string
	FD   int
}

// Table maps socket inodes to the processes that hold them.
type Table map[uint32][]Owner

// Scan reads /proc. Processes that exit meanwhile, or whose fds cannot
// be read, are skipped. Only inodes in want are kept, when want is not nil.
func Scan(want map[uint32]bool) Table {
	return scan("/proc", want)
}

func scan(root string, want map[uint32]bool) Table {
	d, err := os.Open(root)
	if err != nil {
		return Table{}
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	pids := names[:0]
	for _, n := range names {
		if n != "" && n[0] >= '1' && n[0] <= '9' {
			pids = append(pids, n)
		}
	}
	// Reading the links is most of the work of ss -p; spread it over the
	// CPUs, each worker with its own table, merged at the end.
	workers := runtime.GOMAXPROCS(0)
	if workers > len(pids)/64+1 {
		workers = len(pids)/64 + 1
	}
	parts := make([]Table, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			t := Table{}
			buf := make([]byte, 64)
			for i := w; i < len(pids); i += workers {
				scanPID(t, root, pids[i], want, buf)
			}
			parts[w] = t
		}(w)
	}
	wg.Wait()
	t := parts[0]
	for _, p := range parts[1:] {
		for ino, owners := range p {
			t[ino] = append(t[ino], owners...)
		}
	}
	for _, owners := range t {
		if len(owners) > 1 {
			sort.Slice(owners, func(i, j int) bool {
				if owners[i].PID != owners[j].PID {
					return owners[i].PID < owners[j].PID
				}
				return owners[i].FD < owners[j].FD
			})
		}
	}
	return t
}

// scanPID adds the sockets process name holds to t.
func scanPID(t Table, root, name string, want map[uint32]bool, buf []byte) {
	pid, err := strconv.ParseUint(name, 10, 32)
	if err != nil {
		return
	}
	dir := root + "/" + name + "/fd"
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	dfd := int(f.Fd())
	fds, _ := f.Readdirnames(-1)
	comm := ""
	for _, fd := range fds {
		// Relative to the directory: no walk from / for every link.
		n, err := unix.Readlinkat(dfd, fd, buf)
		if err != nil {
			continue
		}
		ino, ok := socketInode(buf[:n])
		if !ok || (want != nil && !want[ino]) {
			continue
		}
		num, err := strconv.Atoi(fd)
		if err != nil {
			continue
		}
		if comm == "" {
			comm = readComm(root + "/" + name + "/comm")
		}
		t[ino] = append(t[ino], Owner{PID: uint32(pid), Comm: comm, FD: num})
	}
}

// socketInode parses "socket:[12345]".
func socketInode(link []byte) (uint32, bool) {
	const prefix = "socket:["
	if len(link) < len(prefix)+2 || string(link[:len(prefix)]) != prefix || link[len(link)-1] != ']' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(link[len(prefix):len(link)-1]), 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

func readComm(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSuffix(string(b), "\n")
}

// Comm is the name of process pid (its /proc/PID/comm under the host's
// root procRoot, e.g. "/proc"); false if it is gone.
func Comm(procRoot string, pid uint32) (string, bool) {
	c := readComm(procRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	return c, c != "?"
}

// Users formats owners the way ss -p does:
// users:(("nginx",pid=10,fd=6),("nginx",pid=11,fd=6))
func Users(owners []Owner) string {
	if len(owners) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("users:(")
	for i, o := range owners {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`("`)
		b.WriteString(safetext.Escape(o.Comm))
		b.WriteString(`",pid=`)
		b.WriteString(strconv.FormatUint(uint64(o.PID), 10))
		b.WriteString(",fd=")
		b.WriteString(strconv.Itoa(o.FD))
		b.WriteString(")")
	}
	b.WriteByte(')')
	return b.String()
}
