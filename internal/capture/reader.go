package capture

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Kind is the kind of a record read back.
type Kind uint8

const (
	KindSnapshotStart Kind = iota + 1 // At, Start, End
	KindSocket                        // Socket, Users
	KindSnapshotEnd                   // Count
	KindTransition                    // Transition
	KindLost                          // At, Lost, LostTotal
	KindSkipped                       // At, Lost, LostTotal: skipped by the kernel
	KindDNS                           // DNS: a DNS answer seen
	KindGap                           // At, Until, Lost, Err: the recording paused at At on a write error, resumed at Until; Lost transitions were not recorded
)

// KindListen: Listen, a listener's drop count at a poll (format 4).
const KindListen Kind = 32

// KindAlert: Alert, an alert the live run raised (format 4, flight
// recordings).
const KindAlert Kind = 33

// Alert is an alert as the live run raised it (a record of its own in
// flight recordings).
type Alert struct {
	At      time.Time
	Kind    string // failing, stale-dns, listen-overflow, close-wait, ...
	Subject string // what it is about: a destination ADDR:PORT, a listener, a process
	// Trigger: the alert that made this flight recording.
	Trigger bool
	JSON    []byte // its {"type":"alert",...} record as -o json wrote it; valid until the next Read
}

// Record is one record read back. Only the fields of its Kind are set;
// the reader reuses it.
type Record struct {
	Kind       Kind
	At         time.Time
	Start, End uint64
	Socket     snapshot.Socket
	Users      []procs.Owner
	Owner      *identity.Identity // a socket's owner, as recorded; nil: unknown
	Actual     netip.AddrPort     // a socket's NAT backend, as recorded; invalid: none
	Count      int
	Transition record.Transition
	Lost       uint64
	LostTotal  uint64
	DNS        dnscache.Observation // DNS.Msg is valid until the next Read
	Until      time.Time            // a gap's end
	Err        string               // why the recording paused (a gap)
	Listen     listeners.Sample     // a listener at a poll
	Alert      Alert                // an alert raised live
}

// ReadOptions control reading.
type ReadOptions struct {
	// Follow: at the end of the last file, wait for more records (and
	// for the next rotated file), like tail -f, until Stop is closed.
	Follow bool
	Stop   <-chan struct{}
	Poll   time.Duration // how often to look for more; default 200ms
	// Warn is told about damage that was skipped (a truncated or
	// corrupt tail, missing files). Nil: ignore.
	Warn func(msg string)
}

type file struct {
	path string
	hdr  Header
}

// Reader reads a recording: one file or several, in recording order.
type Reader struct {
	opt   ReadOptions
	files []file
	i     int // current file
	f     *os.File
	br    *bufio.Reader
	off   int64 // offset in the current file of the next frame
	body  []byte
	comms map[string]string
	// ids: the identities the current file numbered (format 3).
	ids map[uint64]*identity.Identity
	// netnsNames: the namespace names read so far (format 3).
	netnsNames map[uint32]string

	prevWall, prevK int64
	// drained: in Follow mode, the next file exists and the current one
	// was read to its end once more since.
	drained bool
}

// Open opens the files (names or glob patterns), checks their headers
// and orders them by recording and sequence number.
func Open(paths []string, o ReadOptions) (*Reader, error) {
	if o.Poll <= 0 {
		o.Poll = 200 * time.Millisecond
	}
	var names []string
	for _, p := range paths {
		if strings.ContainsAny(p, "*?[") {
			m, err := filepath.Glob(p)
			if err != nil {
				return nil, fmt.Errorf("bad file pattern %q: %w", p, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("no capture file matches %q", p)
			}
			names = append(names, m...)
			continue
		}
		names = append(names, p)
	}
	if len(names) == 0 {
		return nil, errors.New("no capture file given")
	}
	r := &Reader{opt: o, comms: map[string]string{}}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		h, err := ReadHeader(n)
		if err != nil {
			return nil, err
		}
		r.files = append(r.files, file{n, h})
	}
	sort.SliceStable(r.files, func(i, j int) bool {
		a, b := r.files[i].hdr, r.files[j].hdr
		if a.Session != b.Session {
			return a.Started.Before(b.Started)
		}
		return a.Seq < b.Seq
	})
	for i := 1; i < len(r.files); i++ {
		a, b := r.files[i-1], r.files[i]
		if a.hdr.Session == b.hdr.Session && a.hdr.Seq == b.hdr.Seq {
			return nil, fmt.Errorf("%s and %s are the same part (%d) of one recording", a.path, b.path, a.hdr.Seq)
		}
		if a.hdr.Session == b.hdr.Session && b.hdr.Seq != a.hdr.Seq+1 {
			r.warn(fmt.Sprintf("capture files of parts %d to %d are missing between %s and %s (rotated away?): what they held is not shown", a.hdr.Seq+1, b.hdr.Seq-1, a.path, b.path))
		}
	}
	if first := r.files[0]; first.hdr.Seq != 0 {
		r.warn(fmt.Sprintf("%s is part %d of its recording: the earlier parts (with the socket snapshot) are not read", first.path, first.hdr.Seq))
	}
	if err := r.openFile(0); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reader) warn(msg string) {
	if r.opt.Warn != nil {
		r.opt.Warn(msg)
	}
}

// Header is the header of the first file.
func (r *Reader) Header() Header { return r.files[0].hdr }

// File is the file being read.
func (r *Reader) File() string { return r.files[r.i].path }

// Files are the files read, in order.
func (r *Reader) Files() []string {
	var out []string
	for _, f := range r.files {
		out = append(out, f.path)
	}
	return out
}

// ReadHeader reads and checks the header of one file.
func ReadHeader(path string) (Header, error) {
	var h Header
	f, err := os.Open(path)
	if err != nil {
		return h, fmt.Errorf("open capture file: %w", err)
	}
	defer f.Close()
	h, _, err = readHeader(bufio.NewReader(f))
	if err != nil {
		return h, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

func readHeader(br *bufio.Reader) (Header, int64, error) {
	var h Header
	magic := make([]byte, len(Magic))
	n, err := io.ReadFull(br, magic)
	if n == 0 && err == io.EOF {
		return h, 0, ErrEmpty
	}
	if string(magic[:n]) != Magic[:n] {
		return h, 0, ErrNotCapture
	}
	if err != nil {
		return h, 0, errors.New("truncated in its header: the recorder died as it started; nothing to read")
	}
	body, _, perr := readFrame(br, nil)
	if perr == "" && body == nil {
		perr = "no header record"
	}
	if perr != "" {
		return h, 0, fmt.Errorf("truncated or corrupt header (%s): nothing to read", perr)
	}
	if body[0] != recHeader {
		return h, 0, ErrNotCapture
	}
	var probe struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(body[1:], &probe); err != nil {
		return h, 0, fmt.Errorf("corrupt header: %v", err)
	}
	if probe.Format > Version {
		return h, 0, &NewerError{probe.Format}
	}
	if err := json.Unmarshal(body[1:], &h); err != nil {
		return h, 0, fmt.Errorf("corrupt header: %v", err)
	}
	return h, int64(len(Magic) + frameHeaderLen + len(body)), nil
}

// readFrame reads one frame into buf. It returns the body, whether the
// file ended cleanly before it (eof), or a description of the damage.
func readFrame(br *bufio.Reader, buf []byte) (body []byte, eof bool, damage string) {
	var fh [frameHeaderLen]byte
	n, err := io.ReadFull(br, fh[:])
	if n == 0 && err == io.EOF {
		return nil, true, ""
	}
	if err != nil {
		return nil, false, "record cut short"
	}
	length := binary.LittleEndian.Uint32(fh[0:4])
	sum := binary.LittleEndian.Uint32(fh[4:8])
	if length == 0 || length > maxRecord {
		return nil, false, fmt.Sprintf("bad record length %d", length)
	}
	if cap(buf) < int(length) {
		buf = make([]byte, length)
	}
	buf = buf[:length]
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, false, "record cut short"
	}
	if crc32.Checksum(buf, castagnoli) != sum {
		return nil, false, "checksum mismatch"
	}
	return buf, false, ""
}

func (r *Reader) openFile(i int) error {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.i = i
	f, err := os.Open(r.files[i].path)
	if err != nil {
		return fmt.Errorf("open capture file: %w", err)
	}
	r.f = f
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, 256<<10)
	} else {
		r.br.Reset(f)
	}
	_, off, err := readHeader(r.br)
	if err != nil {
		return fmt.Errorf("%s: %w", r.files[i].path, err)
	}
	r.off = off
	r.prevWall, r.prevK = 0, 0
	r.ids = nil // each file numbers its own
	return nil
}

// format is the format version of the file being read.
func (r *Reader) format() int {
	if r.i >= len(r.files) {
		return Version
	}
	return r.files[r.i].hdr.Format
}

// identity is identity number n of the current file; nil for 0 or a
// number it has not defined (a damaged file: the owner is then unknown).
func (r *Reader) identity(n uint64) *identity.Identity {
	if n == 0 {
		return nil
	}
	return r.ids[n]
}

// nextRotated returns the file that follows the current one in its
// recording, if it exists yet.
func (r *Reader) nextRotated() (file, bool) {
	cur := r.files[r.i]
	base := cur.path
	if cur.hdr.Seq > 0 {
		base = strings.TrimSuffix(base, "."+strconv.Itoa(cur.hdr.Seq))
	}
	name := FileName(base, cur.hdr.Seq+1)
	h, err := ReadHeader(name)
	if err != nil || h.Session != cur.hdr.Session {
		return file{}, false
	}
	return file{name, h}, true
}

func (r *Reader) stopped() bool {
	select {
	case <-r.opt.Stop:
		return true
	default:
		return false
	}
}

// Next reads the next record into rec. It returns io.EOF at the end (in
// Follow mode: once Stop is closed).
func (r *Reader) Next(rec *Record) error {
	for {
		frameStart := r.off
		body, eof, damage := readFrame(r.br, r.body[:0])
		if body != nil {
			r.drained = false
			r.body = body[:0]
			r.off += int64(frameHeaderLen + len(body))
			ok, err := r.decode(body, rec)
			if err != nil {
				r.warn(fmt.Sprintf("%s: corrupt record at byte %d (%v): skipped the rest of the file", r.files[r.i].path, frameStart, err))
				if err := r.advance(frameStart); err != nil {
					return err
				}
				continue
			}
			if ok {
				return nil
			}
			continue // a record type from a newer writer: skip it
		}
		last := r.i == len(r.files)-1
		if r.opt.Follow && last {
			if r.stopped() {
				return io.EOF
			}
			if eof {
				if next, ok := r.nextRotated(); ok {
					// The writer finishes a file before it creates the
					// next: read what it added since we hit the end.
					if r.drained {
						r.drained = false
						r.files = append(r.files, next)
						if err := r.openFile(r.i + 1); err != nil {
							return err
						}
						continue
					}
					r.drained = true
					if _, err := r.f.Seek(frameStart, io.SeekStart); err != nil {
						return fmt.Errorf("follow %s: %w", r.files[r.i].path, err)
					}
					r.br.Reset(r.f)
					r.off = frameStart
					continue
				}
			}
			// Wait for the writer: the frame may be half written.
			if _, err := r.f.Seek(frameStart, io.SeekStart); err != nil {
				return fmt.Errorf("follow %s: %w", r.files[r.i].path, err)
			}
			r.br.Reset(r.f)
			r.off = frameStart
			select {
			case <-r.opt.Stop:
				return io.EOF
			case <-time.After(r.opt.Poll):
			}
			continue
		}
		if !eof {
			r.warn(fmt.Sprintf("%s: %s at byte %d: skipped %d bytes of a truncated or corrupt tail; everything before was read",
				r.files[r.i].path, damage, frameStart, r.sizeFrom(frameStart)))
		}
		if last {
			return io.EOF
		}
		if err := r.openFile(r.i + 1); err != nil {
			return err
		}
	}
}

func (r *Reader) sizeFrom(off int64) int64 {
	st, err := r.f.Stat()
	if err != nil {
		return 0
	}
	return st.Size() - off
}

// advance gives up on the current file after damage at off.
func (r *Reader) advance(off int64) error {
	if r.i == len(r.files)-1 {
		// Read nothing more from it: pretend it ends here.
		r.br.Reset(strings.NewReader(""))
		if r.opt.Follow {
			return fmt.Errorf("%s: corrupt record at byte %d: cannot follow past it", r.files[r.i].path, off)
		}
		return nil
	}
	return r.openFile(r.i + 1)
}

// decode fills rec from a record body. It returns false for a record
// type it does not know.
func (r *Reader) decode(body []byte, rec *Record) (bool, error) {
	d := dec{b: body[1:]}
	switch body[0] {
	case recSnapshotStart:
		*rec = Record{Kind: KindSnapshotStart, Users: rec.Users[:0]}
		rec.At = time.Unix(0, d.varint())
		rec.Start = d.uvarint()
		rec.End = d.uvarint()
	case recSocket:
		users := rec.Users[:0]
		*rec = Record{Kind: KindSocket}
		s := &rec.Socket
		s.State = tcpstate.State(d.u8())
		s.Timer = snapshot.Timer(d.u8())
		s.Retrans = d.u8()
		s.Family = uint16(d.uvarint())
		s.Src = d.addr()
		s.Dst = d.addr()
		s.SPort = uint16(d.uvarint())
		s.DPort = uint16(d.uvarint())
		s.IfIndex = uint32(d.uvarint())
		s.Cookie = d.uvarint()
		s.Expires = time.Duration(d.varint())
		s.RecvQ = uint32(d.uvarint())
		s.SendQ = uint32(d.uvarint())
		s.UID = uint32(d.uvarint())
		s.Inode = uint32(d.uvarint())
		s.Netns = uint32(d.uvarint())
		n := d.uvarint()
		if n > 1<<16 {
			return false, errShort
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			var u procs.Owner
			u.PID = uint32(d.uvarint())
			u.FD = int(d.varint())
			u.Comm = d.str(r.comms)
			users = append(users, u)
		}
		rec.Users = users
		if r.format() >= 3 {
			rec.Owner = r.identity(d.uvarint())
		}
		if r.format() >= 4 && len(d.b) > 0 && d.err == nil {
			rec.Actual = d.addrPort()
		}
	case recSnapshotEnd:
		*rec = Record{Kind: KindSnapshotEnd, Users: rec.Users[:0]}
		rec.Count = int(d.uvarint())
	case recTransition:
		users := rec.Users[:0]
		*rec = Record{Kind: KindTransition, Users: users}
		t := &rec.Transition
		t.Old = tcpstate.State(d.u8())
		t.New = tcpstate.State(d.u8())
		flags := d.u8()
		r.prevWall += d.varint()
		r.prevK += d.varint()
		t.Time = time.Unix(0, r.prevWall)
		t.Ktime = uint64(r.prevK)
		t.Cookie = d.uvarint()
		t.SkAddr = d.uvarint()
		t.Netns = uint32(d.uvarint())
		t.Family = uint16(d.uvarint())
		t.Src = d.addr()
		t.Dst = d.addr()
		t.SPort = uint16(d.uvarint())
		t.DPort = uint16(d.uvarint())
		if flags&tfInOld != 0 {
			t.InOldKnown = true
			t.InOld = time.Duration(d.varint())
		}
		t.TaskPID = uint32(d.uvarint())
		t.TaskTID = uint32(d.uvarint())
		t.TaskComm = d.str(r.comms)
		if flags&tfOwner != 0 {
			t.OwnerKnown = true
			t.OwnerPID = uint32(d.uvarint())
			t.OwnerTID = uint32(d.uvarint())
			t.OwnerComm = d.str(r.comms)
		}
		t.UID = uint32(d.uvarint())
		t.SkErr = uint16(d.uvarint())
		t.CookieFromHelper = flags&tfCookieHelper != 0
		if flags&tfExtra != 0 {
			t.Kind = events.Kind(d.u8())
			rst := d.u8()
			t.RstSent, t.RstReceived = rst&1 != 0, rst&2 != 0
			t.SynRetrans = uint16(d.uvarint())
			t.Retrans = uint32(d.uvarint())
		}
		if flags&tfTCPStats != 0 {
			t.TCPStats = true
			t.BytesAcked = d.uvarint()
			t.BytesReceived = d.uvarint()
			t.SegsOut = uint32(d.uvarint())
			t.SegsIn = uint32(d.uvarint())
			t.TotalRetrans = uint32(d.uvarint())
			t.SRTT = time.Duration(d.uvarint()) * time.Microsecond
		}
		if flags&tfIdentity != 0 {
			t.OwnerID = r.identity(d.uvarint())
		}
		if flags&tfDrops != 0 {
			t.Drops = uint32(d.uvarint())
			t.DropReasonName = d.str(r.comms)
			t.DropDir = events.DropDir(d.u8())
		}
		if flags&tfActual != 0 {
			t.Actual = d.addrPort()
		}
	case recIdentity:
		n := d.uvarint()
		var f [8]string
		for i := range f {
			f[i] = d.str(r.comms)
		}
		if d.err != nil {
			return false, d.err
		}
		if n == 0 || n > maxIdentities {
			return false, fmt.Errorf("identity number %d out of range", n)
		}
		if len(d.b) != 0 {
			return false, fmt.Errorf("%d stray bytes", len(d.b))
		}
		if r.ids == nil {
			r.ids = map[uint64]*identity.Identity{}
		}
		r.ids[n] = &identity.Identity{Cgroup: f[0], Unit: f[1], ContainerID: f[2], Runtime: f[3],
			PodUID: f[4], Namespace: f[5], Pod: f[6], Container: f[7]}
		return false, nil // not a record for the caller
	case recNetnsName:
		ino := d.uvarint()
		name := d.str(r.comms)
		if d.err != nil {
			return false, d.err
		}
		if len(d.b) != 0 {
			return false, fmt.Errorf("%d stray bytes", len(d.b))
		}
		if r.netnsNames == nil {
			r.netnsNames = map[uint32]string{}
		}
		if len(r.netnsNames) < maxIdentities {
			r.netnsNames[uint32(ino)] = name
		}
		return false, nil // not a record for the caller
	case recLost, recSkipped:
		*rec = Record{Kind: KindLost, Users: rec.Users[:0]}
		if body[0] == recSkipped {
			rec.Kind = KindSkipped
		}
		rec.At = time.Unix(0, d.varint())
		rec.Lost = d.uvarint()
		rec.LostTotal = d.uvarint()
	case recDNS:
		dnsMsg := rec.DNS.Msg[:0]
		*rec = Record{Kind: KindDNS, Users: rec.Users[:0]}
		o := &rec.DNS
		o.At = time.Unix(0, d.varint())
		o.K = d.uvarint()
		o.Netns = uint32(d.uvarint())
		o.PID = uint32(d.uvarint())
		o.Comm = d.str(r.comms)
		o.Cgroup = d.uvarint()
		addr := d.addr()
		port := d.uvarint()
		if port > 65535 && d.err == nil {
			d.err = fmt.Errorf("bad port %d", port)
		}
		o.Server = netip.AddrPortFrom(addr, uint16(port))
		flags := d.u8()
		o.TCP, o.Self = flags&1 != 0, flags&2 != 0
		n := d.uvarint()
		if n > maxDNSMessage && d.err == nil {
			d.err = fmt.Errorf("DNS message of %d bytes", n)
		}
		if d.err == nil {
			o.Msg = append(dnsMsg, d.bytes(int(n))...)
		}
	case recGap:
		*rec = Record{Kind: KindGap, Users: rec.Users[:0]}
		rec.At = time.Unix(0, d.varint())
		rec.Until = time.Unix(0, d.varint())
		rec.Lost = d.uvarint()
		rec.Err = d.str(r.comms)
	case recListen:
		*rec = Record{Kind: KindListen, Users: rec.Users[:0]}
		r.decodeListen(&d, &rec.Listen)
	case recAlert:
		js := rec.Alert.JSON[:0]
		*rec = Record{Kind: KindAlert, Users: rec.Users[:0]}
		a := &rec.Alert
		a.At = time.Unix(0, d.varint())
		a.Kind = d.str(r.comms)
		a.Subject = d.str(r.comms)
		a.Trigger = d.u8()&1 != 0
		n := d.uvarint()
		if n > maxAlertJSON && d.err == nil {
			d.err = fmt.Errorf("alert of %d bytes", n)
		}
		if d.err == nil {
			a.JSON = append(js, d.bytes(int(n))...)
		}
	case recHeader:
		return false, errors.New("a second header")
	default:
		return false, nil
	}
	if d.err != nil {
		return false, d.err
	}
	if len(d.b) != 0 {
		return false, fmt.Errorf("%d stray bytes", len(d.b))
	}
	return true, nil
}

// Close closes the file being read.
func (r *Reader) Close() error {
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}

// NetnsName is the name the recording gave network namespace ino (its
// netns_name), "" if none was read yet.
func (r *Reader) NetnsName(ino uint32) string { return r.netnsNames[ino] }

// decodeListen reads a listener's sample (see Writer.Listen).
func (r *Reader) decodeListen(d *dec, s *listeners.Sample) {
	s.At = time.Unix(0, d.varint())
	s.Netns = uint32(d.uvarint())
	s.Addr = d.addr()
	port := d.uvarint()
	if port > 65535 && d.err == nil {
		d.err = fmt.Errorf("bad port %d", port)
	}
	s.Port = uint16(port)
	s.Cookie = d.uvarint()
	s.Inode = uint32(d.uvarint())
	s.Drops = uint32(d.uvarint())
	s.Backlog = uint32(d.uvarint())
	s.Queue = uint32(d.uvarint())
	s.Prev = uint32(d.uvarint())
	flags := d.u8()
	s.Baseline, s.Gone = flags&lfBaseline != 0, flags&lfGone != 0
	if flags&lfOwner != 0 {
		s.Owner.Known = true
		s.Owner.PID = uint32(d.uvarint())
		s.Owner.Comm = d.str(r.comms)
		s.Owner.ID = r.identity(d.uvarint())
	}
}

// Decoder reads back the record bodies of AppendTransition.
type Decoder struct {
	r   Reader
	rec Record
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder { return &Decoder{r: Reader{comms: map[string]string{}}} }

// Transition decodes body, made by AppendTransition, into t (its
// OwnerID nil: the caller kept it).
func (d *Decoder) Transition(body []byte, t *record.Transition) error {
	d.r.prevWall, d.r.prevK = 0, 0
	if len(body) == 0 || body[0] != recTransition {
		return errors.New("not a transition record")
	}
	if _, err := d.r.decode(body, &d.rec); err != nil {
		return err
	}
	*t = d.rec.Transition
	return nil
}
