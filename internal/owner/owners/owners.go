// Package owners finds which processes hold which TCP sockets (what ss -p
// shows), from inside the kernel with a BPF iter/task_file program where
// the kernel can load it (5.11+, with CAP_BPF and CAP_PERFMON), and by
// reading every /proc/PID/fd link (package procs) where not.
package owners

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf/link"

	"github.com/socktrace/socktrace/internal/kernelbtf"
	"github.com/socktrace/socktrace/internal/kernelver"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/privs"
)

// The ways owners are found, as Scan names them.
const (
	MethodIter = "BPF task_file iterator"
	MethodProc = "/proc/PID/fd"
)

// Scan returns the holders of the TCP sockets whose inodes are in want
// (nil: all), sorted by pid then fd as procs.Scan does, and how they were
// found. Why the iterator could not be used is in iterErr (nil when it
// was).
func Scan(want map[uint32]bool) (t procs.Table, method string, iterErr error) {
	t, err := scanIter(want)
	if err == nil {
		return t, MethodIter, nil
	}
	return procs.Scan(want), MethodProc, err
}

// IteratorLikely says whether Scan will find owners with its BPF
// iterator: Linux 5.11 or later, and CAP_BPF with CAP_PERFMON (or
// CAP_SYS_ADMIN). Then /proc's capabilities (CAP_SYS_PTRACE,
// CAP_DAC_READ_SEARCH) are not needed for owners.
func IteratorLikely() bool {
	s, err := privs.Effective()
	if err != nil || !(s.Has(privs.SysAdmin) || s.Has(privs.BPF) && s.Has(privs.Perfmon)) {
		return false
	}
	return kernelver.AtLeast(5, 11)
}

const recSize = int(unsafe.Sizeof(ownersOwnerRec{}))

// iter is the iterator program, loaded once per process (the
// verifier's work and the kernel's BTF are most of a scan's time on a
// small host) and kept for later scans.
var iter struct {
	once sync.Once
	objs ownersObjects
	err  error
}

func loadIter() (*ownersObjects, error) {
	iter.once.Do(func() {
		opts, err := kernelbtf.Options(nil)
		if err == nil {
			err = loadOwnersObjects(&iter.objs, opts)
		}
		if err != nil {
			iter.err = fmt.Errorf("load the socket owners iterator: %w", err)
		}
	})
	return &iter.objs, iter.err
}

// Preload loads the iterator in the background, for a Scan to come: a
// program that starts by tracing loads it while it loads its own.
func Preload() { go loadIter() }

func scanIter(want map[uint32]bool) (procs.Table, error) {
	objs, err := loadIter()
	if err != nil {
		return nil, err
	}
	it, err := link.AttachIter(link.IterOptions{Program: objs.SocketOwners})
	if err != nil {
		return nil, fmt.Errorf("attach the socket owners iterator: %w", err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("open the socket owners iterator: %w", err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read the socket owners iterator: %w", err)
	}
	if len(b)%recSize != 0 {
		return nil, fmt.Errorf("socket owners iterator: %d bytes, not a whole number of %d-byte records", len(b), recSize)
	}
	return decode(b, want), nil
}

// decode turns the iterator's records into a table.
func decode(b []byte, want map[uint32]bool) procs.Table {
	n := len(b) / recSize
	if want != nil && len(want) < n {
		n = len(want)
	}
	t := make(procs.Table, n)
	arena := make([]procs.Owner, 0, n)
	comms := map[[16]byte]string{}
	ne := binary.NativeEndian
	for ; len(b) >= recSize; b = b[recSize:] {
		ino := ne.Uint32(b[0:])
		if want != nil && !want[ino] {
			continue
		}
		c := [16]byte(b[12:28])
		comm, ok := comms[c]
		if !ok {
			n := bytes.IndexByte(c[:], 0)
			if n < 0 {
				n = len(c)
			}
			comm = string(c[:n])
			comms[c] = comm
		}
		o := procs.Owner{PID: ne.Uint32(b[4:]), Comm: comm, FD: int(ne.Uint32(b[8:]))}
		if prev, ok := t[ino]; ok {
			t[ino] = append(prev, o) // shared sockets: rare
			continue
		}
		// Most sockets have one holder: one array for all of them, each
		// a slice of one (capped, so that a second holder copies).
		arena = append(arena, o)
		t[ino] = arena[len(arena)-1 : len(arena) : len(arena)]
	}
	for _, os := range t {
		if len(os) > 1 {
			sort.Slice(os, func(i, j int) bool {
				if os[i].PID != os[j].PID {
					return os[i].PID < os[j].PID
				}
				return os[i].FD < os[j].FD
			})
		}
	}
	return t
}
