// Package flight is the flight recorder: it keeps the last few minutes
// of what a trace records (transitions, packet events and drops, DNS
// answers, listener polls, losses, alerts) in memory, bounded in bytes,
// and when an alert fires writes them to a capture file, with what
// follows for a while after: the story that led to the alert, readable
// with socktrace read like any other capture.
//
// A Recorder is not safe for concurrent use: the pipeline calls it from
// its reading goroutine, under its lock.
package flight

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/record"
)

// Options are the flight recorder's bounds.
type Options struct {
	Window   time.Duration // --flight-recorder: keep this much before an alert
	Size     int64         // --flight-recorder-size: at most this many bytes in memory
	Dir      string        // --flight-dir: where recordings go
	After    time.Duration // --flight-after: record this long after the alert
	MaxFiles int           // --flight-max-files: at most this many recordings in Dir
}

// Defaults for Options.
const (
	DefaultSize     = 64 << 20
	DefaultAfter    = time.Minute
	DefaultMaxFiles = 100
)

// Prefix and Suffix frame the name of every recording: Prefix, the
// alert's UTC time, its kind, its subject, Suffix.
const (
	Prefix = "socktrace-flight-"
	Suffix = ".sktr"
)

// Check says what is wrong with o, naming the flag.
func (o *Options) Check() error {
	switch {
	case o.Window < 0:
		return fmt.Errorf("bad --flight-recorder value %s: want how much to keep before an alert, such as 10m", o.Window)
	case o.Window == 0:
		return nil
	case o.Dir == "":
		return errors.New("--flight-recorder needs --flight-dir DIR: where to write a recording when an alert fires")
	case o.Size < 4096:
		return fmt.Errorf("bad --flight-recorder-size value %d: want at least 4K, such as 64M", o.Size)
	case o.After < 0:
		return fmt.Errorf("bad --flight-after value %s: want 0 or a duration such as 1m", o.After)
	case o.MaxFiles < 1:
		return fmt.Errorf("bad --flight-max-files value %d: want 1 or more", o.MaxFiles)
	}
	st, err := os.Stat(o.Dir)
	if err != nil {
		return fmt.Errorf("--flight-dir %s: %w (create the directory first)", o.Dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--flight-dir %s is not a directory", o.Dir)
	}
	return nil
}

// entry kinds.
const (
	eTransition = iota + 1
	eDNS
	eListen
	eLost
	eSkipped
	eAlert
)

// entry is one record kept in memory: a transition or packet event
// encoded as in a capture file (body, with its owner's identity apart),
// anything else a copy of what the pipeline gave (other).
type entry struct {
	kind  uint8
	size  int32 // bytes of memory it holds
	at    int64 // wall time, UnixNano
	body  []byte
	id    *identity.Identity
	other any // *dnscache.Observation, *listeners.Sample, *capture.Alert, *loss
}

// loss is a count of transitions lost or skipped.
type loss struct{ n, total uint64 }

// Fixed costs of an entry, in bytes of memory.
var (
	entrySize  = int(unsafe.Sizeof(entry{}))
	dnsSize    = int(unsafe.Sizeof(dnscache.Observation{}))
	listenSize = int(unsafe.Sizeof(listeners.Sample{}))
	alertSize  = int(unsafe.Sizeof(capture.Alert{}))
	lossSize   = int(unsafe.Sizeof(loss{}))
)

// Alert is an alert that makes a recording, or is kept in one.
type Alert struct {
	At      time.Time
	Kind    string // failing, stale-dns, listen-overflow, close-wait, ...
	Subject string // what about: a destination ADDR:PORT, a listener, a process
	JSON    []byte // its JSON record
	// Trigger: an alert that makes a recording (failing, stale-dns,
	// listen-overflow, close-wait); others are only kept.
	Trigger bool
}

// News is a recording opened or closed, for the output and metrics.
type News struct {
	Time    time.Time
	Open    bool // true: opened by Alert; false: closed
	File    string
	Alert   string
	Subject string
	From    time.Time // the oldest record it holds
	Until   time.Time // it records until then (opened), or did (closed)
	// Closed: what it holds.
	Transitions uint64
	Bytes       int64
	Err         string // a write error that ended it, or kept it from being created
}

// Stats are the flight recorder's figures since start.
type Stats struct {
	Bytes      int64  // in memory now
	Records    int    // records in memory now
	Size       int64  // the bound
	Dropped    uint64 // records dropped, oldest first, to stay within Size
	Recordings map[string]uint64
	Removed    uint64 // recordings removed to keep at most MaxFiles
	Errors     uint64 // recordings that could not be written (or finished)
	Open       int    // recordings being written now
	Files      int    // recordings in the directory now
}

// recording is a file being written, after an alert.
type recording struct {
	w       *capture.Writer
	path    string
	alert   string
	subject string
	from    time.Time
	until   time.Time
}

// Recorder is the flight recorder.
type Recorder struct {
	o      Options
	hdr    capture.Header
	ring   []entry // ring[head:] are kept, oldest first
	head   int
	bytes  int64
	netns  map[uint32]string
	open   map[string]*recording // by subject
	files  []string              // our recordings in Dir, oldest first
	news   []News
	stats  Stats
	nowFn  func() time.Time
	seqNum uint64
	buf    []byte           // encoding a transition
	dec    *capture.Decoder // and decoding it
	t      record.Transition
}

// maxNetnsNames bounds the namespace names remembered.
const maxNetnsNames = 4096

// New starts a flight recorder with o (checked) whose files get header
// h (Args, Filter, Host and the like of the run).
func New(o Options, h capture.Header) *Recorder {
	r := &Recorder{o: o, hdr: h, netns: map[uint32]string{}, open: map[string]*recording{},
		nowFn: time.Now, dec: capture.NewDecoder()}
	r.stats.Size = o.Size
	r.stats.Recordings = map[string]uint64{}
	r.files = r.existing()
	return r
}

// existing lists the recordings already in the directory, oldest first
// (the names sort by time).
func (r *Recorder) existing() []string {
	m, _ := filepath.Glob(filepath.Join(r.o.Dir, Prefix+"*"+Suffix))
	sort.Strings(m)
	return m
}

// add keeps e, dropping the oldest records beyond the window and the
// size, and hands it to the recordings open.
func (r *Recorder) add(e entry) {
	for _, rec := range r.open {
		r.write(rec, &e)
	}
	r.ring = append(r.ring, e)
	r.bytes += int64(e.size)
	r.trim(r.nowFn())
}

// trim drops the records older than the window, and the oldest while
// over the size (counted).
func (r *Recorder) trim(now time.Time) {
	cut := now.Add(-r.o.Window).UnixNano()
	for r.head < len(r.ring) {
		e := &r.ring[r.head]
		over := r.bytes > r.o.Size
		if !over && e.at >= cut {
			break
		}
		if over {
			r.stats.Dropped++
		}
		r.bytes -= int64(e.size)
		*e = entry{}
		r.head++
	}
	if r.head > 1024 && r.head*2 > len(r.ring) {
		n := copy(r.ring, r.ring[r.head:])
		clear(r.ring[n:])
		r.ring = r.ring[:n]
		r.head = 0
	}
}

// Transition keeps a transition or packet event, encoded.
func (r *Recorder) Transition(t *record.Transition) {
	r.buf = capture.AppendTransition(r.buf[:0], t)
	body := append(make([]byte, 0, len(r.buf)), r.buf...)
	r.add(entry{kind: eTransition, at: t.Time.UnixNano(), body: body, id: t.OwnerID, size: int32(entrySize + cap(body))})
}

// Packet keeps a packet event.
func (r *Recorder) Packet(p *record.Packet) { r.Transition((*record.Transition)(p)) }

// DNS keeps a DNS answer (a copy).
func (r *Recorder) DNS(o *dnscache.Observation) {
	c := new(dnscache.Observation)
	*c = *o
	c.Msg = append([]byte(nil), o.Msg...)
	r.add(entry{kind: eDNS, at: o.At.UnixNano(), other: c, size: int32(entrySize + dnsSize + len(c.Msg) + len(o.Comm))})
}

// Listen keeps a listener's poll.
func (r *Recorder) Listen(s *listeners.Sample) {
	c := new(listeners.Sample)
	*c = *s
	r.add(entry{kind: eListen, at: s.At.UnixNano(), other: c, size: int32(entrySize + listenSize + len(s.Owner.Comm))})
}

// Lost keeps a count of transitions lost (n, total so far).
func (r *Recorder) Lost(n, total uint64, at time.Time) {
	r.add(entry{kind: eLost, at: at.UnixNano(), other: &loss{n, total}, size: int32(entrySize + lossSize)})
}

// Skipped keeps a count of state changes the kernel skipped.
func (r *Recorder) Skipped(n, total uint64, at time.Time) {
	r.add(entry{kind: eSkipped, at: at.UnixNano(), other: &loss{n, total}, size: int32(entrySize + lossSize)})
}

// NetnsName remembers who lives in namespace ino: each recording names
// the namespaces first.
func (r *Recorder) NetnsName(ino uint32, name string) {
	if name == "" || r.netns[ino] == name {
		return
	}
	if _, ok := r.netns[ino]; !ok && len(r.netns) >= maxNetnsNames {
		return
	}
	r.netns[ino] = name
	for _, rec := range r.open {
		rec.w.NetnsName(ino, name)
	}
}

// Alert keeps an alert; a triggering one starts a recording for its
// subject, unless one is being written already (the alert goes into
// that one).
func (r *Recorder) Alert(a *Alert) {
	// Kept, it is an alert among others; only the recording it starts
	// holds it as its trigger.
	ca := &capture.Alert{At: a.At, Kind: a.Kind, Subject: a.Subject, JSON: append([]byte(nil), a.JSON...)}
	e := entry{kind: eAlert, at: a.At.UnixNano(), other: ca, size: int32(entrySize + alertSize + len(a.Kind) + len(a.Subject) + len(ca.JSON))}
	if !a.Trigger || r.open[a.Subject] != nil {
		r.add(e)
		return
	}
	r.add(e)
	r.start(a)
}

// start writes a recording for alert a: the records kept, then a.
func (r *Recorder) start(a *Alert) {
	now := r.nowFn()
	path := filepath.Join(r.o.Dir, r.name(a))
	h := r.hdr
	// A replay starts where the window does.
	h.Started = a.At
	if r.head < len(r.ring) && r.ring[r.head].at < h.Started.UnixNano() {
		h.Started = time.Unix(0, r.ring[r.head].at)
	}
	h.Session = r.hdr.Session + r.seqNum + 1
	r.seqNum++
	w, err := capture.Create(path, h, capture.Options{})
	if err != nil {
		r.stats.Errors++
		r.news = append(r.news, News{Time: now, Open: true, File: path, Alert: a.Kind, Subject: a.Subject, Err: err.Error()})
		return
	}
	rec := &recording{w: w, path: path, alert: a.Kind, subject: a.Subject, until: now.Add(r.o.After)}
	for ino, name := range r.netns {
		w.NetnsName(ino, name)
	}
	for i := r.head; i < len(r.ring); i++ {
		if i == len(r.ring)-1 && r.ring[i].kind == eAlert {
			break // the alert itself, written below as the trigger
		}
		if rec.from.IsZero() {
			rec.from = time.Unix(0, r.ring[i].at)
		}
		r.write(rec, &r.ring[i])
	}
	if rec.from.IsZero() {
		rec.from = a.At
	}
	w.Alert(&capture.Alert{At: a.At, Kind: a.Kind, Subject: a.Subject, JSON: a.JSON, Trigger: true})
	w.Flush()
	r.open[a.Subject] = rec
	r.stats.Recordings[a.Kind]++
	r.files = append(r.files, path)
	r.news = append(r.news, News{Time: now, Open: true, File: path, Alert: a.Kind, Subject: a.Subject, From: rec.from, Until: rec.until})
	r.removeOldest()
	if r.o.After == 0 {
		r.finish(rec, now)
	}
}

// removeOldest removes the oldest recordings beyond MaxFiles (counted);
// one still being written is closed first.
func (r *Recorder) removeOldest() {
	for len(r.files) > r.o.MaxFiles {
		old := r.files[0]
		r.files = r.files[1:]
		for _, rec := range r.open {
			if rec.path == old {
				r.finish(rec, r.nowFn())
			}
		}
		if err := os.Remove(old); err == nil || errors.Is(err, os.ErrNotExist) {
			r.stats.Removed++
		}
	}
}

// name is a recording's file name: by time, alert and subject, with
// what a file name cannot hold replaced.
func (r *Recorder) name(a *Alert) string {
	subj := strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-':
			return c
		}
		return '_'
	}, a.Subject)
	if len(subj) > 80 {
		subj = subj[:80]
	}
	ts := a.At.UTC().Format("20060102T150405.000Z")
	n := Prefix + ts + "-" + a.Kind + "-" + subj
	name := n + Suffix
	for i := 2; ; i++ {
		if _, err := os.Lstat(filepath.Join(r.o.Dir, name)); errors.Is(err, os.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d%s", n, i, Suffix)
	}
}

// write hands e to a recording.
func (r *Recorder) write(rec *recording, e *entry) {
	w := rec.w
	switch e.kind {
	case eTransition:
		if err := r.dec.Transition(e.body, &r.t); err != nil {
			r.stats.Errors++ // a bug: what it encoded, it reads
			return
		}
		r.t.OwnerID = e.id
		w.Transition(&r.t)
	case eDNS:
		w.DNS(e.other.(*dnscache.Observation))
	case eListen:
		w.Listen(e.other.(*listeners.Sample))
	case eLost:
		l := e.other.(*loss)
		w.Lost(l.n, l.total, time.Unix(0, e.at))
	case eSkipped:
		l := e.other.(*loss)
		w.Skipped(l.n, l.total, time.Unix(0, e.at))
	case eAlert:
		w.Alert(e.other.(*capture.Alert))
	}
}

// Tick closes the recordings whose time is up; call it about once a
// second.
func (r *Recorder) Tick(now time.Time) {
	r.trim(now)
	for _, rec := range r.open {
		if !now.Before(rec.until) {
			r.finish(rec, now)
		} else {
			rec.w.Tick(now) // a write error paused it: try to resume
			rec.w.Flush()
		}
	}
}

// finish closes a recording.
func (r *Recorder) finish(rec *recording, now time.Time) {
	rec.w.Close()
	delete(r.open, rec.subject)
	st := rec.w.State()
	n := News{Time: now, File: rec.path, Alert: rec.alert, Subject: rec.subject, From: rec.from, Until: now,
		Transitions: st.Transitions, Bytes: st.Bytes}
	if st.Errors > 0 {
		r.stats.Errors++
		if st.Err != nil {
			n.Err = st.Err.Error()
		} else {
			n.Err = fmt.Sprintf("%d write errors: %d transitions not recorded", st.Errors, st.Dropped)
		}
	}
	r.news = append(r.news, n)
}

// Close finishes the recordings being written (at the end of the run).
func (r *Recorder) Close() {
	now := r.nowFn()
	for _, rec := range r.open {
		r.finish(rec, now)
	}
}

// News returns the recordings opened and closed since it was last
// called.
func (r *Recorder) News() []News {
	n := r.news
	r.news = nil
	return n
}

// HasNews says whether News has something.
func (r *Recorder) HasNews() bool { return len(r.news) > 0 }

// Stats are the recorder's figures now.
func (r *Recorder) Stats() Stats {
	s := r.stats
	s.Bytes, s.Records, s.Open, s.Files = r.bytes, len(r.ring)-r.head, len(r.open), len(r.files)
	s.Recordings = make(map[string]uint64, len(r.stats.Recordings))
	for k, v := range r.stats.Recordings {
		s.Recordings[k] = v
	}
	return s
}
