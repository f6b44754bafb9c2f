// Package capture writes and reads socktrace capture files: a recording
// of the socket snapshot, every transition and every loss marker, with a
// self-describing header, to be replayed later with the same filters,
// views and analysis.
//
// A file is the 8-byte magic "SOCKTRC\n" followed by records. Every
// record is framed as
//
//	length u32 LE | crc32c(body) u32 LE | body (length bytes)
//
// and a body starts with its record type (one byte). The first record is
// the header, as JSON. Numbers in the other records are varints. A reader
// stops at the first frame that is cut short or fails its checksum, says
// how many bytes it skipped, and keeps everything before. A writer that
// fails to write cuts the file back to its last whole record, and marks
// where it resumed with a gap record.
package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"time"
)

// Magic opens every capture file.
const Magic = "SOCKTRC\n"

// Version is the format version this package writes. Readers accept
// files of this version or older. Format 4 adds what issue 26 records:
// drops on sockets, NAT backends and listeners' drop counts.
const Version = 4

// Record types.
const (
	recHeader        = 1
	recSnapshotStart = 2
	recSocket        = 3
	recSnapshotEnd   = 4
	recTransition    = 5
	recLost          = 6
	recSkipped       = 7
	recIdentity      = 8  // format 3: an owner's identity, numbered, before its first use in the file
	recNetnsName     = 9  // format 3: who lives in a network namespace (netns_name), before its first use
	recDNS           = 10 // format 3: a DNS answer seen (readers that predate it skip it)
	recGap           = 11 // format 3: the recording paused on a write error and resumed here (readers that predate it skip it)
	recListen        = 13 // format 4: a listener's drop count at a poll (package listeners; readers that predate it skip it)
	recAlert         = 14 // format 4: an alert raised live, as its JSON record (package flight; readers that predate it skip it)
)

// maxDNSMessage bounds a recorded DNS message: the most a DNS message
// can be (TCP's 2-byte length).
const maxDNSMessage = 65535

// maxAlertJSON bounds an alert record's JSON.
const maxAlertJSON = 64 << 10

// maxIdentities bounds the identities one file may number.
const maxIdentities = 1 << 16

// maxRecord bounds a frame's length: anything larger is corruption.
const maxRecord = 1 << 20

const frameHeaderLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header describes a capture: what was recorded, where and how.
type Header struct {
	Format    int       `json:"format"` // Version of the writer
	Socktrace string    `json:"socktrace"`
	Host      string    `json:"host"`
	Kernel    string    `json:"kernel"` // uname -r
	BootTime  time.Time `json:"boot_time"`
	Started   time.Time `json:"started"`
	Args      []string  `json:"args"`            // the command line
	Filter    string    `json:"filter"`          // the filters in effect, as text
	Attach    string    `json:"attach"`          // how the program was attached
	Session   uint64    `json:"session"`         // the same in every file of one recording
	Seq       int       `json:"seq"`             // the file's place in the recording, from 0
	Netns     string    `json:"netns,omitempty"` // --netns of the recording
}

// Errors a reader returns for files it cannot read at all.
var (
	ErrNotCapture = errors.New("not a socktrace capture file")
	ErrEmpty      = errors.New("empty file: not a socktrace capture (or the recorder died before writing anything)")
)

// NewerError is returned for a file of a format version this reader does
// not know.
type NewerError struct{ Version int }

func (e *NewerError) Error() string {
	return fmt.Sprintf("capture format version %d is newer than this socktrace reads (%d): use a newer socktrace", e.Version, Version)
}

// appendFrame appends a frame holding body.
func appendFrame(b, body []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
	return append(b, body...)
}

// dec reads varints and bytes from a record body, remembering the first
// error: a record that does not decode is corrupt.
type dec struct {
	b   []byte
	err error
}

var errShort = errors.New("record too short")

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) u8() uint8 {
	if d.err != nil || len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) bytes(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) addr() netip.Addr {
	switch n := d.u8(); n {
	case 0:
		return netip.Addr{}
	case 4:
		a, _ := netip.AddrFromSlice(d.bytes(4))
		return a
	case 16:
		a, _ := netip.AddrFromSlice(d.bytes(16))
		return a
	default:
		if d.err == nil {
			d.err = fmt.Errorf("bad address length %d", n)
		}
		return netip.Addr{}
	}
}

func (d *dec) addrPort() netip.AddrPort {
	a := d.addr()
	p := d.uvarint()
	if d.err != nil || !a.IsValid() || p > 65535 {
		if d.err == nil {
			d.err = fmt.Errorf("bad NAT backend %v:%d", a, p)
		}
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, uint16(p))
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, 0)
	}
	s := a.AsSlice()
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// str reads a string, interning it in tab so that repeated process
// names cost no allocation.
func (d *dec) str(tab map[string]string) string {
	n := d.uvarint()
	if n > maxRecord {
		d.err = errShort
		return ""
	}
	b := d.bytes(int(n))
	if d.err != nil {
		return ""
	}
	if s, ok := tab[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(tab) < 1<<16 {
		tab[s] = s
	}
	return s
}
