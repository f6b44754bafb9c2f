package loopback

import (
	"net"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUp: in a new namespace, lo is down (a dial fails) until Up.
func TestUp(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("SOCKTRACE_REQUIRE_ROOT") != "" {
			t.Fatal("needs root to create a network namespace")
		}
		t.Skip("needs root to create a network namespace")
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			done <- err
			return
		}
		defer ln.Close()
		if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
			c.Close()
			t.Error("a connection over lo worked before Up")
		}
		if err := Up(); err != nil {
			done <- err
			return
		}
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
