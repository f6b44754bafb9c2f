// Package procs finds which processes hold which sockets, the way ss -p
// does: by reading the links in /proc/PID/fd, where a socket shows as
// "socket:[INODE]".
package procs

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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
	t := Table{}
	d, err := os.Open(root)
	if err != nil {
		return t
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	buf := make([]byte, 64)
	for _, name := range names {
		pid, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			continue
		}
		fdDir := root + "/" + name + "/fd"
		fd, err := os.Open(fdDir)
		if err != nil {
			continue
		}
		fds, _ := fd.Readdirnames(-1)
		fd.Close()
		comm := ""
		for _, f := range fds {
			n, err := unix.Readlink(fdDir+"/"+f, buf)
			if err != nil {
				continue
			}
			ino, ok := socketInode(buf[:n])
			if !ok || (want != nil && !want[ino]) {
				continue
			}
			num, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if comm == "" {
				comm = readComm(root + "/" + name + "/comm")
			}
			t[ino] = append(t[ino], Owner{PID: uint32(pid), Comm: comm, FD: num})
		}
	}
	return t
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
		b.WriteString(o.Comm)
		b.WriteString(`",pid=`)
		b.WriteString(strconv.FormatUint(uint64(o.PID), 10))
		b.WriteString(",fd=")
		b.WriteString(strconv.Itoa(o.FD))
		b.WriteString(")")
	}
	b.WriteByte(')')
	return b.String()
}
