// Package testfs gives a test a small filesystem of its own, a tmpfs of
// the size it asks for, to fill up (ENOSPC) without touching the
// machine's disks.
package testfs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// Tmpfs mounts a tmpfs of size bytes (rounded up to pages) on a new
// directory and returns it; it is unmounted when the test ends. It needs
// root (CAP_SYS_ADMIN).
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testnet.Skip(t, "needs root: it mounts a tmpfs to fill (run `make test` as root)")
	}
	dir := t.TempDir()
	opts := "size=" + strconv.FormatInt(size, 10) + ",mode=0755"
	if err := unix.Mount("socktrace-test", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		t.Fatalf("mount a tmpfs (%s) on %s: %v", opts, dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// Fill writes a file of n bytes in dir, to take room; it returns its
// path (remove it to make room again).
func Fill(t testing.TB, dir string, n int64) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, n)); err != nil {
		t.Fatalf("fill %s with %d bytes: %v", filepath.Dir(f.Name()), n, err)
	}
	return f.Name()
}

// Free is the room left on the filesystem of dir, in bytes.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Bavail) * int64(fs.Bsize)
}
