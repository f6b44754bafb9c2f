package capture

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/socktrace/socktrace/internal/dnscache"
	"os"
	"strconv"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/identity"
	"github.com/socktrace/socktrace/internal/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
)

// Options control how a recording is written.
type Options struct {
	Force       bool  // overwrite existing files
	RotateSize  int64 // start a new file once one reaches this size; 0: never
	RotateCount int   // keep only the newest this many files; 0: all
}

// Writer records to a file, or to a series of files when rotating: FILE,
// FILE.1, FILE.2, ... Files are created with mode 0600: they hold
// addresses and process names.
type Writer struct {
	base   string
	opt    Options
	hdr    Header
	f      *os.File
	bw     *bufio.Writer
	size   int64 // bytes in the current file
	total  int64 // bytes in all files
	events uint64
	buf    []byte
	body   []byte
	// Transition times are stored as deltas from the previous
	// transition's, starting again from zero in each file.
	prevWall, prevK int64
	// ids numbers the owners' identities written to this file; netns,
	// the namespace names it holds.
	ids    map[*identity.Identity]uint64
	idBody []byte
	netns  map[uint32]string
}

// FileName is the name of file seq of a recording to base.
func FileName(base string, seq int) string {
	if seq == 0 {
		return base
	}
	return base + "." + strconv.Itoa(seq)
}

// Create starts a recording to path with header h (its Format and Seq
// are filled in).
func Create(path string, h Header, o Options) (*Writer, error) {
	w := &Writer{base: path, opt: o, hdr: h, buf: make([]byte, 0, 512), body: make([]byte, 0, 512)}
	w.hdr.Format = Version
	if err := w.open(0); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open(seq int) error {
	name := FileName(w.base, seq)
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if w.opt.Force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(name, flags, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("capture file %s already exists: choose another name, or add --force to overwrite it", name)
		}
		return fmt.Errorf("create capture file: %w", err)
	}
	if w.opt.Force {
		f.Chmod(0o600) // an existing file keeps its mode otherwise
	}
	w.f, w.size = f, 0
	if w.bw == nil {
		w.bw = bufio.NewWriterSize(f, 256<<10)
	} else {
		w.bw.Reset(f)
	}
	w.prevWall, w.prevK = 0, 0
	w.ids = map[*identity.Identity]uint64{} // each file numbers its own
	w.netns = map[uint32]string{}
	w.hdr.Seq = seq
	hb, err := json.Marshal(&w.hdr)
	if err != nil {
		return err
	}
	if _, err := w.bw.WriteString(Magic); err != nil {
		return fmt.Errorf("write capture file: %w", err)
	}
	w.size += int64(len(Magic))
	w.total += int64(len(Magic))
	if err := w.frame(append([]byte{recHeader}, hb...)); err != nil {
		return err
	}
	return w.Flush() // a reader can open the file from now on
}

// frame writes one record and rotates when the file is full.
func (w *Writer) frame(body []byte) error {
	w.buf = appendFrame(w.buf[:0], body)
	if _, err := w.bw.Write(w.buf); err != nil {
		return fmt.Errorf("write capture file: %w", err)
	}
	w.size += int64(len(w.buf))
	w.total += int64(len(w.buf))
	// An identity stays in the file of the record that uses it next.
	if w.opt.RotateSize > 0 && w.size >= w.opt.RotateSize && body[0] != recHeader && body[0] != recIdentity && body[0] != recNetnsName {
		return w.rotate()
	}
	return nil
}

func (w *Writer) rotate() error {
	if err := w.closeFile(); err != nil {
		return err
	}
	seq := w.hdr.Seq + 1
	if err := w.open(seq); err != nil {
		return err
	}
	if n := w.opt.RotateCount; n > 0 && seq >= n {
		if err := os.Remove(FileName(w.base, seq-n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate capture files: %w", err)
		}
	}
	return nil
}

func (w *Writer) closeFile() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write capture file: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync capture file: %w", err)
	}
	return w.f.Close()
}

// SnapshotStart begins the snapshot: the sockets that follow were listed
// at wall time at, between the monotonic times start and end.
func (w *Writer) SnapshotStart(at time.Time, start, end uint64) error {
	b := append(w.body[:0], recSnapshotStart)
	b = binary.AppendVarint(b, at.UnixNano())
	b = binary.AppendUvarint(b, start)
	b = binary.AppendUvarint(b, end)
	w.body = b
	return w.frame(b)
}

// Socket records one socket of the snapshot, the processes holding it
// and its owner's identity (nil: unknown).
func (w *Writer) Socket(s *snapshot.Socket, users []procs.Owner, owner *identity.Identity) error {
	idn, err := w.identity(owner)
	if err != nil {
		return err
	}
	b := append(w.body[:0], recSocket, byte(s.State), byte(s.Timer), s.Retrans)
	b = binary.AppendUvarint(b, uint64(s.Family))
	b = appendAddr(b, s.Src)
	b = appendAddr(b, s.Dst)
	b = binary.AppendUvarint(b, uint64(s.SPort))
	b = binary.AppendUvarint(b, uint64(s.DPort))
	b = binary.AppendUvarint(b, uint64(s.IfIndex))
	b = binary.AppendUvarint(b, s.Cookie)
	b = binary.AppendVarint(b, int64(s.Expires))
	b = binary.AppendUvarint(b, uint64(s.RecvQ))
	b = binary.AppendUvarint(b, uint64(s.SendQ))
	b = binary.AppendUvarint(b, uint64(s.UID))
	b = binary.AppendUvarint(b, uint64(s.Inode))
	b = binary.AppendUvarint(b, uint64(s.Netns))
	b = binary.AppendUvarint(b, uint64(len(users)))
	for _, u := range users {
		b = binary.AppendUvarint(b, uint64(u.PID))
		b = binary.AppendVarint(b, int64(u.FD))
		b = appendString(b, u.Comm)
	}
	b = binary.AppendUvarint(b, idn)
	w.body = b
	return w.frame(b)
}

// SnapshotEnd closes the snapshot: count sockets were recorded.
func (w *Writer) SnapshotEnd(count int) error {
	b := append(w.body[:0], recSnapshotEnd)
	b = binary.AppendUvarint(b, uint64(count))
	w.body = b
	return w.frame(b)
}

// Transition flags.
const (
	tfInOld = 1 << iota
	tfOwner
	tfCookieHelper
	tfExtra    // format 2: kind, retransmits and resets follow
	tfTCPStats // format 2: the socket's TCP counters follow
	tfIdentity // format 3: the number of the owner's identity follows
)

// identity returns the number of id in this file, writing its record
// first if it has none yet; 0 for nil (or past maxIdentities).
func (w *Writer) identity(id *identity.Identity) (uint64, error) {
	if id == nil {
		return 0, nil
	}
	if n, ok := w.ids[id]; ok {
		return n, nil
	}
	if len(w.ids) >= maxIdentities {
		return 0, nil
	}
	n := uint64(len(w.ids) + 1)
	b := append(w.idBody[:0], recIdentity)
	b = binary.AppendUvarint(b, n)
	for _, s := range []string{id.Cgroup, id.Unit, id.ContainerID, id.Runtime, id.PodUID, id.Namespace, id.Pod, id.Container} {
		b = appendString(b, s)
	}
	w.idBody = b
	if err := w.frame(b); err != nil {
		return 0, err
	}
	w.ids[id] = n
	return n, nil
}

// Transition records one transition.
func (w *Writer) Transition(t *events.Transition) error {
	wall, k := t.Time.UnixNano(), int64(t.Ktime)
	var flags byte
	if t.InOldKnown {
		flags |= tfInOld
	}
	if t.OwnerKnown {
		flags |= tfOwner
	}
	if t.CookieFromHelper {
		flags |= tfCookieHelper
	}
	if t.Kind != 0 || t.SynRetrans != 0 || t.Retrans != 0 || t.RstSent || t.RstReceived {
		flags |= tfExtra
	}
	if t.TCPStats {
		flags |= tfTCPStats
	}
	idn, err := w.identity(t.OwnerID)
	if err != nil {
		return err
	}
	if idn != 0 {
		flags |= tfIdentity
	}
	b := append(w.body[:0], recTransition, byte(t.Old), byte(t.New), flags)
	b = binary.AppendVarint(b, wall-w.prevWall)
	b = binary.AppendVarint(b, k-w.prevK)
	w.prevWall, w.prevK = wall, k
	b = binary.AppendUvarint(b, t.Cookie)
	b = binary.AppendUvarint(b, t.SkAddr)
	b = binary.AppendUvarint(b, uint64(t.Netns))
	b = binary.AppendUvarint(b, uint64(t.Family))
	b = appendAddr(b, t.Src)
	b = appendAddr(b, t.Dst)
	b = binary.AppendUvarint(b, uint64(t.SPort))
	b = binary.AppendUvarint(b, uint64(t.DPort))
	if t.InOldKnown {
		b = binary.AppendVarint(b, int64(t.InOld))
	}
	b = binary.AppendUvarint(b, uint64(t.TaskPID))
	b = binary.AppendUvarint(b, uint64(t.TaskTID))
	b = appendString(b, t.TaskComm)
	if t.OwnerKnown {
		b = binary.AppendUvarint(b, uint64(t.OwnerPID))
		b = binary.AppendUvarint(b, uint64(t.OwnerTID))
		b = appendString(b, t.OwnerComm)
	}
	b = binary.AppendUvarint(b, uint64(t.UID))
	b = binary.AppendUvarint(b, uint64(t.SkErr))
	if flags&tfExtra != 0 {
		var rst byte
		if t.RstSent {
			rst |= 1
		}
		if t.RstReceived {
			rst |= 2
		}
		b = append(b, byte(t.Kind), rst)
		b = binary.AppendUvarint(b, uint64(t.SynRetrans))
		b = binary.AppendUvarint(b, uint64(t.Retrans))
	}
	if flags&tfTCPStats != 0 {
		b = binary.AppendUvarint(b, t.BytesAcked)
		b = binary.AppendUvarint(b, t.BytesReceived)
		b = binary.AppendUvarint(b, uint64(t.SegsOut))
		b = binary.AppendUvarint(b, uint64(t.SegsIn))
		b = binary.AppendUvarint(b, uint64(t.TotalRetrans))
		b = binary.AppendUvarint(b, uint64(t.SRTT/time.Microsecond))
	}
	if idn != 0 {
		b = binary.AppendUvarint(b, idn)
	}
	w.body = b
	if t.Kind == events.KindTransition {
		w.events++
	}
	return w.frame(b)
}

// Lost records that n transitions were lost (total so far) at wall time at.
func (w *Writer) Lost(n, total uint64, at time.Time) error { return w.loss(recLost, n, total, at) }

// Skipped records that the kernel skipped n state changes (total so far).
func (w *Writer) Skipped(n, total uint64, at time.Time) error {
	return w.loss(recSkipped, n, total, at)
}

func (w *Writer) loss(kind byte, n, total uint64, at time.Time) error {
	b := append(w.body[:0], kind)
	b = binary.AppendVarint(b, at.UnixNano())
	b = binary.AppendUvarint(b, n)
	b = binary.AppendUvarint(b, total)
	w.body = b
	return w.frame(b)
}

// Flush hands what is buffered to the kernel: a killed recorder loses
// nothing flushed.
func (w *Writer) Flush() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write capture file: %w", err)
	}
	return nil
}

// Sync flushes and asks the kernel to put the file on disk: a power loss
// loses nothing synced.
func (w *Writer) Sync() error {
	if err := w.Flush(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("sync capture file: %w", err)
	}
	return nil
}

// Close flushes, syncs and closes the current file.
func (w *Writer) Close() error { return w.closeFile() }

// Bytes is how much has been written, in all files.
func (w *Writer) Bytes() int64 { return w.total }

// Transitions is how many transitions have been written.
func (w *Writer) Transitions() uint64 { return w.events }

// Files is how many files the recording has used.
func (w *Writer) Files() int { return w.hdr.Seq + 1 }

// DNS records a DNS answer, where it stands among the transitions: a
// replay learns the names when the live run did.
func (w *Writer) DNS(o *dnscache.Observation) error {
	msg := o.Msg
	if len(msg) > maxDNSMessage {
		msg = msg[:maxDNSMessage]
	}
	b := append(w.body[:0], recDNS)
	b = binary.AppendVarint(b, o.At.UnixNano())
	b = binary.AppendUvarint(b, o.K)
	b = binary.AppendUvarint(b, uint64(o.Netns))
	b = binary.AppendUvarint(b, uint64(o.PID))
	b = appendString(b, o.Comm)
	b = binary.AppendUvarint(b, o.Cgroup)
	b = appendAddr(b, o.Server.Addr())
	b = binary.AppendUvarint(b, uint64(o.Server.Port()))
	var flags byte
	if o.TCP {
		flags |= 1
	}
	if o.Self {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(msg)))
	b = append(b, msg...)
	w.body = b
	return w.frame(b)
}

// NetnsName records who lives in network namespace ino (the netns_name
// of the output), if the file does not hold that name for it yet: a
// replay then names it as the live run did.
func (w *Writer) NetnsName(ino uint32, name string) error {
	if name == "" || w.netns[ino] == name || len(w.netns) >= maxIdentities {
		return nil
	}
	w.netns[ino] = name
	b := append(w.idBody[:0], recNetnsName)
	b = binary.AppendUvarint(b, uint64(ino))
	b = appendString(b, name)
	w.idBody = b
	return w.frame(b)
}
