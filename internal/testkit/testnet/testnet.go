// Package testnet gives tests a network namespace of their own, with
// loopback up, so that the TCP traffic they make is theirs alone and can be
// told apart by its namespace inode.
package testnet

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/loopback"
)

// NS is a network namespace made for a test.
type NS struct {
	fd    int
	Inode uint32
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root: it loads BPF programs and creates network namespaces (run `make test` as root)")
	}
}

// Skip skips the test with reason, or fails it when SOCKTRACE_REQUIRE_ROOT
// is set (as `make test` and CI do), so privileged tests cannot pass by
// not running.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("SOCKTRACE_REQUIRE_ROOT") != "" {
		t.Fatalf("cannot run, and SOCKTRACE_REQUIRE_ROOT is set: %s", reason)
	}
	t.Skip(reason)
}

// New creates a network namespace with lo up; it is removed when the test ends.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	ns, err := create()
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(ns.Close)
	return ns
}

// Close lets go of the namespace: it goes away once nothing else holds
// it. Path is no longer valid.
func (ns *NS) Close() {
	if ns.fd >= 0 {
		unix.Close(ns.fd)
		ns.fd = -1
	}
}

func create() (*NS, error) {
	type result struct {
		ns  *NS
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread changes namespace and is never unlocked, so the Go
		// runtime ends it with the goroutine rather than reuse it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		if err := loopback.Up(); err != nil {
			ch <- result{err: err}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			ch <- result{err: err}
			return
		}
		ch <- result{ns: &NS{fd: fd, Inode: uint32(st.Ino)}}
	}()
	r := <-ch
	return r.ns, r.err
}

// Path is a path to the namespace that other processes can open
// (for example `nsenter --net=PATH` or setns), valid while the test runs.
func (ns *NS) Path() string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.fd)
}

// Do runs fn on an OS thread inside the namespace: sockets fn creates
// belong to it. Goroutines fn starts do not run in the namespace, but the
// sockets it made stay there whichever thread uses them.
func (ns *NS) Do(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("setns: %w", err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// Serve listens on addr (e.g. "127.0.0.1:0": any port) in the namespace
// and hands each connection to handle, in a goroutine of its own, until
// the test ends. It returns the port.
func (ns *NS) Serve(t testing.TB, addr string, handle func(net.Conn)) int {
	t.Helper()
	var ln net.Listener
	ns.Run(t, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// Run is Do that fails the test on error.
func (ns *NS) Run(t testing.TB, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// FullListener listens on 127.0.0.1 in the namespace with the given
// backlog, never accepts, and fills its accept queue (a backlog of N
// holds N+1 connections): every SYN that comes next is dropped, on
// every kernel. It returns the port; all is closed when the test ends.
func (ns *NS) FullListener(t testing.TB, backlog int) int {
	t.Helper()
	var port int
	ns.Run(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		if err := unix.Listen(fd, backlog); err != nil {
			return err
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		port = sa.(*unix.SockaddrInet4).Port
		for i := 0; i <= backlog; i++ {
			c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return fmt.Errorf("fill the accept queue of 127.0.0.1:%d: %w", port, err)
			}
			t.Cleanup(func() { c.Close() })
		}
		return nil
	})
	return port
}

// Netstat is the namespace's TcpExt counters, as nstat names them
// without the prefix (ListenOverflows, ListenDrops...), read from its
// /proc/net/netstat: no nstat binary needed.
func (ns *NS) Netstat(t testing.TB) map[string]uint64 {
	t.Helper()
	var b []byte
	ns.Run(t, func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/netstat")
		return err
	})
	out := map[string]uint64{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(vals) != len(names) || vals[0] != "TcpExt:" {
			continue
		}
		for j := 1; j < len(names); j++ {
			n, err := strconv.ParseUint(vals[j], 10, 64)
			if err != nil {
				t.Fatalf("/proc/net/netstat: TcpExt %s = %q", names[j], vals[j])
			}
			out[names[j]] = n
		}
		return out
	}
	t.Fatalf("no TcpExt counters in /proc/net/netstat:\n%s", b)
	return nil
}
