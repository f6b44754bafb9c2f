// Package netns runs code inside another network namespace: on an OS
// thread of its own that enters the namespace, runs it, and comes back.
package netns

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered the network namespace
// open as nsfd (name says which, in errors). Sockets fn makes belong to
// that namespace. The thread then goes back to the namespace it came
// from and may serve other goroutines; if it cannot go back, it stays
// locked and the runtime ends it with its goroutine. A thread is never
// left in the other namespace: were it the main thread, which the
// runtime keeps, /proc/self/ns/net would show that namespace as ours.
func Do(nsfd int, name string, fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open socktrace's own network namespace: %w", err)
			return
		}
		defer unix.Close(back)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", name, err)
			return
		}
		fn()
		if unix.Setns(back, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread() // back home: the thread may serve others
		}
		errc <- nil
	}()
	return <-errc
}

// DoPath is Do for the network namespace at path.
func DoPath(path string, fn func()) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	return Do(fd, path, fn)
}
