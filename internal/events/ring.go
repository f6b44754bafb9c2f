package events

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The ring buffer's record header (include/uapi/linux/bpf.h): a length
// with two flag bits, and the kernel's page offset.
const (
	ringBusyBit    = 1 << 31 // reserved, not yet submitted
	ringDiscardBit = 1 << 30 // discarded: skip it
	ringHeaderSize = 8
)

var (
	errRingFlushed = errors.New("ring buffer flushed")
	errRingEmpty   = errors.New("ring buffer empty")
	errRingBusy    = errors.New("record not yet submitted")
)

// ring reads the tracer's BPF ring buffer map in place: a record is
// decoded where the kernel wrote it, and its room given back after, with
// no copy and no lock on the way (one goroutine reads). It follows the
// kernel's protocol as cilium/ebpf's ringbuf.Reader does: the consumer
// page is ours to write, the producer page and the data pages the
// kernel's; a wait is an epoll on the map, which the kernel wakes when
// it submits into a ring the reader has emptied.
//
// The kernel lets a reader map the data pages twice in a row, so that a
// record that wraps reads straight; cilium/ebpf does. Every page of such
// a mapping is resident from the start, and counts twice in VmRSS: an 8
// MiB ring would be 16 MiB of the process's resident memory. We map the
// data pages once and copy the rare record that wraps (a header never
// does: records are 8-byte aligned in a ring of whole pages).
type ring struct {
	consMem, prodMem []byte
	consPos, prodPos *uint64
	data             []byte
	mask             uint64
	size             int
	wrapped          []byte // the last record that wrapped, copied

	epfd    int
	flushFD int // an eventfd: Flush wakes a waiting read with it
	events  [2]unix.EpollEvent

	// next: the consumer position after the record read last, given
	// back by release; remaining: what was left behind it.
	next      uint64
	held      bool
	remaining int

	haveData   bool
	pendingErr error
	deadline   time.Time
}

func newRing(m *ebpf.Map) (*ring, error) {
	size := int(m.MaxEntries())
	if size <= 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d: not a power of two", size)
	}
	fd := m.FD()
	page := os.Getpagesize()
	cons, err := unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap consumer page: %w", err)
	}
	prod, err := unix.Mmap(fd, int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("mmap data pages: %w", err)
	}
	r := &ring{
		consMem: cons, prodMem: prod,
		consPos: (*uint64)(unsafe.Pointer(&cons[0])),
		prodPos: (*uint64)(unsafe.Pointer(&prod[0])),
		data:    prod[page:],
		mask:    uint64(size - 1),
		size:    size,
		epfd:    -1, flushFD: -1,
	}
	if err := r.openPoll(fd); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *ring) openPoll(mapFD int) error {
	var err error
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if r.flushFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range []int{mapFD, r.flushFD} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	return nil
}

// read returns the next record, in place: valid until release. After a
// wait that ended with the deadline or a flush, the records already in
// the ring come first, then os.ErrDeadlineExceeded or errRingFlushed.
func (r *ring) read() ([]byte, error) {
	r.release()
	for {
		if !r.haveData {
			if pe := r.pendingErr; pe != nil {
				r.pendingErr = nil
				return nil, pe
			}
			err := r.wait()
			if err == os.ErrDeadlineExceeded || err == errRingFlushed {
				r.pendingErr = err
			} else if err != nil {
				return nil, err
			}
			r.haveData = true
		}
		for {
			sample, err := r.record()
			if err == errRingBusy {
				continue // the kernel is writing it: a few instructions
			}
			if err == errRingEmpty {
				r.haveData = false
				break
			}
			return sample, err
		}
	}
}

// record returns the next submitted record, skipping discarded ones.
func (r *ring) record() ([]byte, error) {
	prod := atomic.LoadUint64(r.prodPos)
	cons := atomic.LoadUint64(r.consPos)
	for {
		if prod == cons {
			return nil, errRingEmpty
		}
		if prod-cons < ringHeaderSize {
			return nil, fmt.Errorf("read record header: %w", io.ErrUnexpectedEOF)
		}
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
		if hdr&ringBusyBit != 0 {
			return nil, errRingBusy
		}
		n := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
		cons += ringHeaderSize
		aligned := (n + 7) &^ 7
		if prod-cons < aligned {
			return nil, fmt.Errorf("read record: %w", io.ErrUnexpectedEOF)
		}
		start := cons & r.mask
		cons += aligned
		if hdr&ringDiscardBit != 0 {
			atomic.StoreUint64(r.consPos, cons)
			continue
		}
		r.next, r.held, r.remaining = cons, true, int(prod-cons)
		if start+n > uint64(r.size) {
			return r.unwrap(start, n), nil
		}
		return r.data[start : start+n : start+n], nil
	}
}

// unwrap copies the record of n bytes at start that runs past the end of
// the data pages (its rest is at their beginning).
func (r *ring) unwrap(start, n uint64) []byte {
	if uint64(cap(r.wrapped)) < n {
		r.wrapped = make([]byte, n)
	}
	b := r.wrapped[:n:n]
	k := copy(b, r.data[start:])
	copy(b[k:], r.data[:n-uint64(k)])
	return b
}

// release gives the room of the record read last back to the kernel.
func (r *ring) release() {
	if r.held {
		atomic.StoreUint64(r.consPos, r.next)
		r.held = false
	}
}

// wait blocks until the kernel says there is data, the deadline passes
// (os.ErrDeadlineExceeded) or flush is called (errRingFlushed).
func (r *ring) wait() error {
	for {
		timeout := -1
		if !r.deadline.IsZero() {
			timeout = max(int(time.Until(r.deadline).Milliseconds()), 0)
		}
		n, err := unix.EpollWait(r.epfd, r.events[:], timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if n == 0 {
			return os.ErrDeadlineExceeded
		}
		for _, ev := range r.events[:n] {
			if int(ev.Fd) == r.flushFD {
				var b [8]byte
				unix.Read(r.flushFD, b[:]) // clear it
				return errRingFlushed
			}
		}
		return nil
	}
}

// flush makes a waiting (or the next) wait return errRingFlushed. Safe
// from any goroutine.
func (r *ring) flush() error {
	one := [8]byte{1}
	if _, err := unix.Write(r.flushFD, one[:]); err != nil {
		return fmt.Errorf("eventfd write: %w", err)
	}
	return nil
}

// available is how many bytes (headers included) wait in the ring. Safe
// from any goroutine.
func (r *ring) available() int {
	return int(atomic.LoadUint64(r.prodPos) - atomic.LoadUint64(r.consPos))
}

// close unmaps the ring and closes the poll. No read may be running.
func (r *ring) close() error {
	var errs []error
	for _, fd := range []int{r.epfd, r.flushFD} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	r.epfd, r.flushFD = -1, -1
	if r.prodMem != nil {
		errs = append(errs, unix.Munmap(r.prodMem))
	}
	if r.consMem != nil {
		errs = append(errs, unix.Munmap(r.consMem))
	}
	r.prodMem, r.consMem, r.data = nil, nil, nil
	return errors.Join(errs...)
}
