package capture

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
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
//
// A write error (a full disk, EIO, a file removed under it) never ends a
// recording's user: the recording pauses. The file is cut back to its
// last whole record (what was not written is dropped, and counted), so
// it stays readable; records given while paused are dropped too. Tick,
// called about once a second, tries to resume (1 s after the error, then
// backing off to 30 s): in the same file, or, when it was removed, when
// cutting it failed, or when rotating, in the next of the series. A
// record of the gap (when, how many transitions were dropped, why) is
// written where it resumes. Changes says when it paused and resumed;
// the record methods return errors for nothing else than bugs.
type Writer struct {
	base   string
	opt    Options
	hdr    Header
	f      *os.File // nil while paused between two files
	pend   []byte   // whole frames not handed to the kernel yet
	size   int64    // bytes in the current file, pend included
	total  int64    // bytes in all files, pend included
	events uint64
	body   []byte
	// Transition times are stored as deltas from the previous
	// transition's, starting again from zero in each file.
	prevWall, prevK int64
	// ids numbers the owners' identities written to this file; netns,
	// the namespace names it holds.
	ids    map[*identity.Identity]uint64
	idBody []byte
	netns  map[uint32]string

	// good is the state as of the end of the file's last whole frame:
	// a write error rolls back to it. Since then: the identities
	// numbered and the namespaces named.
	good      mark
	newIDs    []*identity.Identity
	netnsUndo []netnsUndo
	hdrEnd    int64 // the current file's size with only its header

	// Pausing on write errors.
	paused    bool
	pausedAt  time.Time
	resumedAt time.Time
	lastErr   error
	errors    uint64 // write errors that paused the recording
	dropped   uint64 // transitions not recorded (paused, or cut back)
	gap       uint64 // of those, in the current pause
	damaged   bool   // the file could not be cut back: resume in the next
	removed   bool   // the file was removed: resume in the next
	nextTry   time.Time
	backoff   time.Duration
	changes   []Change
	closed    bool
}

type mark struct {
	size, total     int64
	events          uint64
	prevWall, prevK int64
}

type netnsUndo struct {
	ino uint32
	old string
	had bool
}

// Change is the recording pausing on a write error, or resuming.
type Change struct {
	Time   time.Time
	Paused bool   // true: paused by Err; false: resumed
	Err    error  // why it paused
	File   string // the file that failed; resumed: the file written from now on
	// Resumed: how long it was paused, and the transitions not recorded
	// meanwhile (those given while paused, and those cut back).
	PausedFor time.Duration
	Dropped   uint64
	Errors    uint64 // write errors that paused the recording, since it began
}

// State is the recording's state: where it writes, how much, whether it
// is paused and why.
type State struct {
	File        string // the file written (or to be written)
	Paused      bool
	Since       time.Time // paused since
	Err         error     // the last write error, if paused
	Transitions uint64    // transitions recorded
	Bytes       int64     // bytes in all files
	Files       int
	Errors      uint64 // write errors that paused the recording
	Dropped     uint64 // transitions not recorded because of them
}

// flushAt: pending frames are handed to the kernel once they are this
// many bytes (and whenever Flush is called).
const flushAt = 256 << 10

// Resuming: the first try this long after the error, doubling up to
// maxBackoff when tries fail or the recording pauses again soon after
// resuming (within backoffReset).
const (
	firstBackoff = time.Second
	maxBackoff   = 30 * time.Second
	backoffReset = 30 * time.Second
)

// minFree: after ENOSPC, a try to resume waits for this much free space,
// or a rotated file's size if smaller: more than the cut can have given
// back (less than the pending frames that failed: flushAt and a frame of
// at most a DNS message), in which a tiny gap record would fit, and the
// next write fail again.
const minFree = flushAt + 128<<10

// FileName is the name of file seq of a recording to base.
func FileName(base string, seq int) string {
	if seq == 0 {
		return base
	}
	return base + "." + strconv.Itoa(seq)
}

// Create starts a recording to path with header h (its Format and Seq
// are filled in). An error here (the file exists, the directory does
// not, the disk is full) is returned: nothing is recorded.
func Create(path string, h Header, o Options) (*Writer, error) {
	w := &Writer{base: path, opt: o, hdr: h, body: make([]byte, 0, 512), pend: make([]byte, 0, flushAt+4096),
		backoff: firstBackoff}
	w.hdr.Format = Version
	if err := w.open(0); err != nil {
		return nil, err
	}
	return w, nil
}

// name is the current file's name.
func (w *Writer) name() string { return FileName(w.base, w.hdr.Seq) }

// open creates file seq of the recording and writes its header; on an
// error no file is left.
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
	prevSeq := w.hdr.Seq
	w.f, w.size, w.hdr.Seq = f, 0, seq
	w.prevWall, w.prevK = 0, 0
	w.ids = map[*identity.Identity]uint64{} // each file numbers its own
	w.netns = map[uint32]string{}
	w.pend = w.pend[:0]
	w.commit()
	hb, err := json.Marshal(&w.hdr)
	if err == nil {
		w.pend = append(w.pend, Magic...)
		w.size += int64(len(Magic))
		w.total += int64(len(Magic))
		w.frame(append([]byte{recHeader}, hb...))
		err = w.writePending() // a reader can open the file from now on
	}
	if err != nil {
		f.Close()
		os.Remove(name)
		w.f, w.hdr.Seq = nil, prevSeq
		return err
	}
	w.hdrEnd = w.size
	w.damaged, w.removed = false, false
	return nil
}

// frame adds one record to the pending frames, hands them to the kernel
// when there are enough, and rotates when the file is full.
func (w *Writer) frame(body []byte) {
	n := len(w.pend)
	w.pend = appendFrame(w.pend, body)
	n = len(w.pend) - n
	w.size += int64(n)
	w.total += int64(n)
	if body[0] == recHeader {
		return
	}
	if len(w.pend) >= flushAt {
		if err := w.writePending(); err != nil {
			w.pause(err)
			return
		}
	}
	// An identity stays in the file of the record that uses it next.
	if w.opt.RotateSize > 0 && w.size >= w.opt.RotateSize && body[0] != recIdentity && body[0] != recNetnsName {
		w.rotate()
	}
}

// commit makes the current state the good one: everything so far is in
// the file.
func (w *Writer) commit() {
	w.good = mark{w.size, w.total, w.events, w.prevWall, w.prevK}
	w.newIDs, w.netnsUndo = w.newIDs[:0], w.netnsUndo[:0]
}

// rollback drops the pending frames: the state goes back to the good
// one, and the transitions among them are counted as dropped.
func (w *Writer) rollback() {
	n := w.events - w.good.events
	w.dropped += n
	w.gap += n
	w.size, w.total, w.events, w.prevWall, w.prevK = w.good.size, w.good.total, w.good.events, w.good.prevWall, w.good.prevK
	for _, id := range w.newIDs {
		delete(w.ids, id)
	}
	for i := len(w.netnsUndo) - 1; i >= 0; i-- {
		u := w.netnsUndo[i]
		if u.had {
			w.netns[u.ino] = u.old
		} else {
			delete(w.netns, u.ino)
		}
	}
	w.newIDs, w.netnsUndo = w.newIDs[:0], w.netnsUndo[:0]
	w.pend = w.pend[:0]
}

// writePending hands the pending frames to the kernel. On an error they
// are dropped (rollback) and the file is cut back to its last whole
// frame, so that it stays readable and can be appended to.
func (w *Writer) writePending() error {
	if len(w.pend) == 0 {
		return nil
	}
	_, err := w.f.WriteAt(w.pend, w.good.size)
	if err == nil {
		w.commit()
		w.pend = w.pend[:0]
		return nil
	}
	err = fmt.Errorf("write capture file %s: %w", w.name(), unwrapPath(err))
	w.rollback()
	if terr := w.f.Truncate(w.good.size); terr != nil {
		w.damaged = true
	}
	return err
}

// unwrapPath is err without the *PathError's repetition of the file name.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// pause stops recording after err (or notes err if paused already).
func (w *Writer) pause(err error) {
	w.lastErr = err
	if w.paused {
		return
	}
	now := time.Now()
	w.paused, w.pausedAt = true, now
	w.errors++
	if !w.resumedAt.IsZero() && now.Sub(w.resumedAt) >= backoffReset {
		w.backoff = firstBackoff
	}
	w.nextTry = now.Add(w.backoff)
	w.changes = append(w.changes, Change{Time: now, Paused: true, Err: err, File: w.name(), Errors: w.errors})
}

// skip drops a record given while paused.
func (w *Writer) skip(transition bool) {
	if transition {
		w.dropped++
		w.gap++
	}
}

// Tick looks after the recording; call it about once a second. It
// notices a file removed under the recording (which pauses it), and
// tries to resume a paused recording when it is time.
func (w *Writer) Tick(now time.Time) {
	if w.closed {
		return
	}
	if w.paused {
		if !now.Before(w.nextTry) {
			w.tryResume(now)
		}
		return
	}
	if w.unlinked() {
		w.rollback()
		w.removed = true
		w.pause(fmt.Errorf("capture file %s was removed: what was written to it is gone", w.name()))
	}
}

// unlinked says whether the current file was removed.
func (w *Writer) unlinked() bool {
	var st unix.Stat_t
	return w.f != nil && unix.Fstat(int(w.f.Fd()), &st) == nil && st.Nlink == 0
}

// tryResume tries to record again: in the current file (cut back to its
// last whole frame), or in the next one.
func (w *Writer) tryResume(now time.Time) {
	w.nextTry = now.Add(w.backoff)
	if w.backoff *= 2; w.backoff > maxBackoff {
		w.backoff = maxBackoff
	}
	// In the next file when this one cannot be appended to, or at the
	// rotation (which removes the oldest file first: room on a full
	// disk).
	w.removed = w.removed || w.unlinked()
	next := w.f == nil || w.damaged || w.removed || (w.opt.RotateSize > 0 && w.size > w.hdrEnd)
	if next {
		w.removeOldest(w.hdr.Seq + 1)
	}
	if errors.Is(w.lastErr, unix.ENOSPC) {
		need := int64(minFree)
		if w.opt.RotateSize > 0 && w.opt.RotateSize < need {
			need = w.opt.RotateSize
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(w.base), &fs); err == nil && int64(fs.Bavail)*int64(fs.Bsize) < need {
			return // still full
		}
	}
	if next {
		if w.f != nil {
			w.f.Close()
			w.f = nil
		}
		if err := w.open(w.hdr.Seq + 1); err != nil {
			w.lastErr = err
			return
		}
	}
	b := append(w.body[:0], recGap)
	b = binary.AppendVarint(b, w.pausedAt.UnixNano())
	b = binary.AppendVarint(b, now.UnixNano())
	b = binary.AppendUvarint(b, w.gap)
	b = appendString(b, w.lastErr.Error())
	w.body = b
	w.frame(b)
	if err := w.writePending(); err != nil {
		w.lastErr = err
		return
	}
	w.changes = append(w.changes, Change{Time: now, File: w.name(), PausedFor: now.Sub(w.pausedAt), Dropped: w.gap, Errors: w.errors})
	w.paused, w.resumedAt, w.gap, w.lastErr = false, now, 0, nil
}

// rotate goes on in the next file.
func (w *Writer) rotate() {
	if err := w.writePending(); err != nil {
		w.pause(err)
		return
	}
	if err := w.f.Sync(); err != nil {
		w.damaged = true
		w.pause(fmt.Errorf("sync capture file %s: %w", w.name(), unwrapPath(err)))
		return
	}
	w.f.Close()
	w.f = nil
	if err := w.openNext(); err != nil {
		w.pause(err)
	}
}

// openNext opens the next file of the series, first removing the oldest
// beyond RotateCount (which makes room on a full disk).
func (w *Writer) openNext() error {
	w.removeOldest(w.hdr.Seq + 1)
	return w.open(w.hdr.Seq + 1)
}

// removeOldest removes the file that file seq replaces, with a
// RotateCount. (If it cannot go, the recording goes on all the same.)
func (w *Writer) removeOldest(seq int) {
	if n := w.opt.RotateCount; n > 0 && seq >= n {
		os.Remove(FileName(w.base, seq-n))
	}
}

// Changes returns the pauses and resumptions since it was last called.
func (w *Writer) Changes() []Change {
	if len(w.changes) == 0 {
		return nil
	}
	c := w.changes
	w.changes = nil
	return c
}

// State is the recording's state now.
func (w *Writer) State() State {
	s := State{File: w.name(), Paused: w.paused, Transitions: w.events, Bytes: w.total, Files: w.Files(),
		Errors: w.errors, Dropped: w.dropped}
	if w.paused {
		s.Since, s.Err = w.pausedAt, w.lastErr
	}
	return s
}

// SnapshotStart begins the snapshot: the sockets that follow were listed
// at wall time at, between the monotonic times start and end.
func (w *Writer) SnapshotStart(at time.Time, start, end uint64) error {
	if w.paused {
		return nil
	}
	b := append(w.body[:0], recSnapshotStart)
	b = binary.AppendVarint(b, at.UnixNano())
	b = binary.AppendUvarint(b, start)
	b = binary.AppendUvarint(b, end)
	w.body = b
	w.frame(b)
	return nil
}

// Socket records one socket of the snapshot, the processes holding it,
// its owner's identity (nil: unknown) and its NAT backend (invalid:
// none).
func (w *Writer) Socket(s *snapshot.Socket, users []procs.Owner, owner *identity.Identity, actual netip.AddrPort) error {
	if w.paused {
		return nil
	}
	idn := w.identity(owner)
	if w.paused {
		return nil
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
	if actual.IsValid() {
		// Format 4: the NAT backend, last (a reader of format 4 takes
		// what follows the identity as the backend).
		b = appendAddrPort(b, actual)
	}
	w.body = b
	w.frame(b)
	return nil
}

// appendAddrPort appends an address and a port.
func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	b = appendAddr(b, a.Addr())
	return binary.AppendUvarint(b, uint64(a.Port()))
}

// SnapshotEnd closes the snapshot: count sockets were recorded.
func (w *Writer) SnapshotEnd(count int) error {
	if w.paused {
		return nil
	}
	b := append(w.body[:0], recSnapshotEnd)
	b = binary.AppendUvarint(b, uint64(count))
	w.body = b
	w.frame(b)
	return nil
}

// Transition flags.
const (
	tfInOld = 1 << iota
	tfOwner
	tfCookieHelper
	tfExtra    // format 2: kind, retransmits and resets follow
	tfTCPStats // format 2: the socket's TCP counters follow
	tfIdentity // format 3: the number of the owner's identity follows
	tfDrops    // format 4: the socket's drops, the last one's reason (its name) and direction follow
	tfActual   // format 4: the NAT backend's address and port follow (after the drops)
)

// identity returns the number of id in this file, writing its record
// first if it has none yet; 0 for nil (or past maxIdentities). The
// recording may pause meanwhile: the caller checks.
func (w *Writer) identity(id *identity.Identity) uint64 {
	if id == nil {
		return 0
	}
	if n, ok := w.ids[id]; ok {
		return n
	}
	if len(w.ids) >= maxIdentities {
		return 0
	}
	n := uint64(len(w.ids) + 1)
	w.ids[id] = n
	w.newIDs = append(w.newIDs, id) // (a rollback forgets it)
	b := append(w.idBody[:0], recIdentity)
	b = binary.AppendUvarint(b, n)
	for _, s := range []string{id.Cgroup, id.Unit, id.ContainerID, id.Runtime, id.PodUID, id.Namespace, id.Pod, id.Container} {
		b = appendString(b, s)
	}
	w.idBody = b
	w.frame(b)
	return n
}

// Packet records one packet event: stored as a transition of its kind,
// as the format has always had it.
func (w *Writer) Packet(p *record.Packet) error { return w.Transition((*record.Transition)(p)) }

// Transition records one transition (see also Packet).
func (w *Writer) Transition(t *record.Transition) error {
	if w.paused {
		w.skip(t.Kind == events.KindTransition)
		return nil
	}
	idn := w.identity(t.OwnerID)
	if w.paused {
		w.skip(t.Kind == events.KindTransition)
		return nil
	}
	b := appendTransition(w.body[:0], t, w.prevWall, w.prevK, idn)
	w.prevWall, w.prevK = t.Time.UnixNano(), int64(t.Ktime)
	w.body = b
	if t.Kind == events.KindTransition {
		w.events++
	}
	w.frame(b)
	return nil
}

// AppendTransition appends the record body of t, self-contained: its
// times whole rather than deltas, its owner's identity left out (the
// caller keeps t.OwnerID). For records kept in memory (package flight);
// a Decoder reads it back.
func AppendTransition(b []byte, t *record.Transition) []byte { return appendTransition(b, t, 0, 0, 0) }

// appendTransition appends the record body of t, its times as deltas
// from prevWall and prevK, its owner's identity numbered idn (0: none).
func appendTransition(b []byte, t *record.Transition, prevWall, prevK int64, idn uint64) []byte {
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
	if t.Drops > 0 {
		flags |= tfDrops
	}
	if idn != 0 {
		flags |= tfIdentity
	}
	if t.Actual.IsValid() {
		flags |= tfActual
	}
	b = append(b, recTransition, byte(t.Old), byte(t.New), flags)
	b = binary.AppendVarint(b, wall-prevWall)
	b = binary.AppendVarint(b, k-prevK)
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
	if flags&tfDrops != 0 {
		// The reason's name: its number differs between kernels.
		b = binary.AppendUvarint(b, uint64(t.Drops))
		b = appendString(b, t.DropReasonName)
		b = append(b, byte(t.DropDir))
	}
	if flags&tfActual != 0 {
		b = appendAddrPort(b, t.Actual)
	}
	return b
}

// Lost records that n transitions were lost (total so far) at wall time at.
func (w *Writer) Lost(n, total uint64, at time.Time) error { return w.loss(recLost, n, total, at) }

// Skipped records that the kernel skipped n state changes (total so far).
func (w *Writer) Skipped(n, total uint64, at time.Time) error {
	return w.loss(recSkipped, n, total, at)
}

func (w *Writer) loss(kind byte, n, total uint64, at time.Time) error {
	if w.paused {
		return nil
	}
	b := append(w.body[:0], kind)
	b = binary.AppendVarint(b, at.UnixNano())
	b = binary.AppendUvarint(b, n)
	b = binary.AppendUvarint(b, total)
	w.body = b
	w.frame(b)
	return nil
}

// Flush hands what is buffered to the kernel: a killed recorder loses
// nothing flushed. An error pauses the recording (see Writer).
func (w *Writer) Flush() error {
	if w.paused || w.closed {
		return nil
	}
	if err := w.writePending(); err != nil {
		w.pause(err)
	}
	return nil
}

// Sync flushes and asks the kernel to put the file on disk: a power loss
// loses nothing synced. An error pauses the recording; it resumes in
// the next file (what the kernel failed to write is unknown).
func (w *Writer) Sync() error {
	if w.Flush(); w.paused || w.closed {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		w.damaged = true
		w.pause(fmt.Errorf("sync capture file %s: %w", w.name(), unwrapPath(err)))
	}
	return nil
}

// Close flushes, syncs and closes the current file. An error pauses the
// recording for good (State and Changes say so).
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.Sync()
	w.closed = true
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	return nil
}

// Bytes is how much has been written, in all files.
func (w *Writer) Bytes() int64 { return w.total }

// Transitions is how many transitions have been written.
func (w *Writer) Transitions() uint64 { return w.events }

// Files is how many files the recording has used.
func (w *Writer) Files() int { return w.hdr.Seq + 1 }

// DNS records a DNS answer, where it stands among the transitions: a
// replay learns the names when the live run did.
func (w *Writer) DNS(o *dnscache.Observation) error {
	if w.paused {
		return nil
	}
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
	w.frame(b)
	return nil
}

// NetnsName records who lives in network namespace ino (the netns_name
// of the output), if the file does not hold that name for it yet: a
// replay then names it as the live run did.
func (w *Writer) NetnsName(ino uint32, name string) error {
	if w.paused || name == "" || w.netns[ino] == name || len(w.netns) >= maxIdentities {
		return nil
	}
	old, had := w.netns[ino]
	w.netnsUndo = append(w.netnsUndo, netnsUndo{ino: ino, old: old, had: had}) // (a rollback forgets it)
	w.netns[ino] = name
	b := append(w.idBody[:0], recNetnsName)
	b = binary.AppendUvarint(b, uint64(ino))
	b = appendString(b, name)
	w.idBody = b
	w.frame(b)
	return nil
}

// Listener sample flags.
const (
	lfBaseline = 1 << iota
	lfGone
	lfOwner
)

// Listen records what a poll said of a listener (package listeners):
// its drop count, queue and owner, where it stands among the
// transitions, so that a replay raises the same listen-overflow and
// listen-recovered alerts.
func (w *Writer) Listen(s *listeners.Sample) error {
	if w.paused {
		return nil
	}
	idn := w.identity(s.Owner.ID)
	if w.paused {
		return nil
	}
	b := append(w.body[:0], recListen)
	b = binary.AppendVarint(b, s.At.UnixNano())
	b = binary.AppendUvarint(b, uint64(s.Netns))
	b = appendAddr(b, s.Addr)
	b = binary.AppendUvarint(b, uint64(s.Port))
	b = binary.AppendUvarint(b, s.Cookie)
	b = binary.AppendUvarint(b, uint64(s.Inode))
	b = binary.AppendUvarint(b, uint64(s.Drops))
	b = binary.AppendUvarint(b, uint64(s.Backlog))
	b = binary.AppendUvarint(b, uint64(s.Queue))
	b = binary.AppendUvarint(b, uint64(s.Prev))
	var flags byte
	if s.Baseline {
		flags |= lfBaseline
	}
	if s.Gone {
		flags |= lfGone
	}
	if s.Owner.Known {
		flags |= lfOwner
	}
	b = append(b, flags)
	if s.Owner.Known {
		b = binary.AppendUvarint(b, uint64(s.Owner.PID))
		b = appendString(b, s.Owner.Comm)
		b = binary.AppendUvarint(b, idn)
	}
	w.body = b
	w.frame(b)
	return nil
}

// Alert records an alert as the live run raised it: its kind
// (failing, stale-dns, ...), what it is about (a destination, a
// listener, a process) and its JSON record, as -o json wrote it. A
// replay raises its alerts again from the records; the alert recorded
// says what the live run saw (a flight recording holds the one that
// made it).
func (w *Writer) Alert(a *Alert) error {
	if w.paused {
		return nil
	}
	js := a.JSON
	if len(js) > maxAlertJSON {
		js = nil // never cut JSON in half
	}
	b := append(w.body[:0], recAlert)
	b = binary.AppendVarint(b, a.At.UnixNano())
	b = appendString(b, a.Kind)
	b = appendString(b, a.Subject)
	var flags byte
	if a.Trigger {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(js)))
	b = append(b, js...)
	w.body = b
	w.frame(b)
	return nil
}
