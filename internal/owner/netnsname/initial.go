package netnsname

import (
	"os"
	"runtime"
	"sync"
	"syscall"

	"github.com/socktrace/socktrace/internal/netns"
)

// verdict is what socktrace knows of a yes-or-no question.
type verdict int8

const (
	unknown verdict = iota
	no
	yes
)

// initNetnsIno is the inode of the initial network namespace on kernels
// that give it a fixed one (PROC_NET_INIT_INO, 6.18 has it). Before,
// every namespace's inode came from the dynamic range, which starts at
// 0xF0000000: no namespace but the initial one ever has this number. (A
// variable so that tests can be the kernels without it: 0.)
var initNetnsIno uint32 = 0xEFFFFFF9

// initOnly are sysctls the kernel registers in the initial network
// namespace only (net/core's global table, 2.6 to 6.18); somaxconn is
// in every namespace's. Which namespace /proc/sys/net shows is the
// reading thread's, whoever mounted /proc.
var (
	initOnly = []string{"/proc/sys/net/core/netdev_max_backlog", "/proc/sys/net/core/message_cost", "/proc/sys/net/core/dev_weight"}
	perNetns = "/proc/sys/net/core/somaxconn"
)

// initialHere says whether the calling thread's network namespace is the
// initial one. Lock the thread first.
func initialHere() verdict {
	if _, err := os.Stat(perNetns); err != nil {
		return unknown // no /proc/sys to ask
	}
	for _, f := range initOnly {
		if _, err := os.Stat(f); err == nil {
			return yes
		}
	}
	return no
}

// ownNS is socktrace's own network namespace: the one it was started in.
type ownNS struct {
	ino  uint32
	ok   bool
	init verdict
}

var (
	ownOnce sync.Once
	own     ownNS
)

// ownNetns is the namespace socktrace was started in, and whether it is
// the initial one. It asks on a thread of its own (/proc/thread-self):
// /proc/self shows the main thread's namespace, and a goroutine that
// entered another namespace to list its sockets may have been running
// on the main thread (the runtime keeps that thread, in the namespace
// it entered, when the goroutine ends locked to it). Every thread the
// runtime may run this goroutine on is still in the namespace socktrace
// was started in: one that entered another is locked to its goroutine.
func ownNetns() ownNS {
	ownOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var st syscall.Stat_t
			if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
				return
			}
			own = ownNS{ino: uint32(st.Ino), ok: true, init: initialHere()}
			if initNetnsIno != 0 && own.ino == initNetnsIno {
				own.init = yes
			}
		}()
		<-done
	})
	return own
}

// initialAt says whether the network namespace at path is the initial
// one, by entering it on a thread of its own (CAP_SYS_ADMIN); unknown
// when it cannot.
func initialAt(path string) verdict {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err == nil && initNetnsIno != 0 && uint32(st.Ino) == initNetnsIno {
		return yes
	}
	v := unknown
	if err := netns.DoPath(path, func() { v = initialHere() }); err != nil {
		return unknown
	}
	return v
}
