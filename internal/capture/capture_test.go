package capture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

var t0 = time.Date(2026, 11, 25, 3, 12, 0, 123456789, time.UTC)

func header() Header {
	return Header{Socktrace: "test", Host: "db1", Kernel: "6.18.0", BootTime: t0.Add(-time.Hour),
		Started: t0, Args: []string{"--dport", "9092"}, Filter: "dport 9092", Attach: "tp_btf", Session: 42}
}

// sample returns transitions that exercise every field and flag.
func sample(n int) []record.Transition {
	v4 := netip.MustParseAddr("10.0.0.1")
	v6 := netip.MustParseAddr("fd00::2")
	var out []record.Transition
	for i := 0; i < n; i++ {
		t := record.Transition{Transition: events.Transition{
			Time: t0.Add(time.Duration(i) * time.Millisecond), Ktime: 3600e9 + uint64(i)*1e6,
			Cookie: uint64(1000 + i/5), SkAddr: 0xffff888000000000 + uint64(i/5)*4096, Netns: 4026531840,
			Family: unix.AF_INET, Src: v4, Dst: netip.MustParseAddr("10.1.2.3"), SPort: uint16(40000 + i), DPort: 9092,
			Old: tcpstate.State(1 + i%11), New: tcpstate.State(1 + (i+1)%11),
			TaskPID: uint32(i), TaskTID: uint32(i + 1), TaskComm: "swapper/1", UID: 1000, SkErr: uint16(i % 3 * 55)}}
		if i%2 == 0 {
			t.Family, t.Src, t.Dst = unix.AF_INET6, v6, v6
		}
		if i%3 == 0 {
			t.InOld, t.InOldKnown = time.Duration(i)*time.Microsecond, true
		}
		if i%4 != 0 {
			t.OwnerKnown, t.OwnerPID, t.OwnerTID, t.OwnerComm = true, 77, 78, "java"
			t.OwnerID = sampleIDs[i%len(sampleIDs)]
		}
		if i%5 == 0 {
			t.CookieFromHelper = true
		}
		if i%7 == 1 { // a DNAT's backend (format 4)
			t.Actual = netip.AddrPortFrom(t.Dst.Next(), 8443)
		}
		if i%6 == 1 { // format 4: drops, by the reason's name
			t.Drops, t.DropReasonName, t.DropDir = uint32(i), []string{"NETFILTER_DROP", "nf_hook_slow"}[i%2], events.DropDir(1+i%2)
		}
		if i == 7 { // the clock stepped back: negative deltas
			t.Time = t0.Add(-time.Second)
		}
		out = append(out, t)
	}
	return out
}

// sampleIDs are owners' identities: a pod's container, a unit, and
// none (nil: unknown).
var sampleIDs = []*identity.Identity{
	{Cgroup: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8899_aabbccddeeff.slice/cri-containerd-" + strings.Repeat("ab", 32) + ".scope",
		ContainerID: strings.Repeat("ab", 32), Runtime: "containerd", PodUID: "0f1e2d3c-4b5a-6978-8899-aabbccddeeff",
		Namespace: "shop", Pod: "checkout-7d9f8b6c5-x2x4z", Container: "checkout"},
	{Cgroup: "/system.slice/payments.service", Unit: "payments.service"},
	nil,
}

func sampleSockets() ([]snapshot.Socket, [][]procs.Owner) {
	return []snapshot.Socket{
			{Family: unix.AF_INET, State: tcpstate.Listen, Src: netip.MustParseAddr("0.0.0.0"), Dst: netip.MustParseAddr("0.0.0.0"),
				SPort: 80, Cookie: 1, RecvQ: 3, SendQ: 128, UID: 0, Inode: 555, Netns: 4026531840},
			{Family: unix.AF_INET6, State: tcpstate.SynSent, Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::9"),
				SPort: 41000, DPort: 9092, IfIndex: 2, Cookie: 2, Timer: snapshot.TimerOn, Retrans: 3, Expires: 1500 * time.Millisecond,
				SendQ: 1, UID: 1000, Inode: 556, Netns: 4026531840},
			{Family: unix.AF_INET, State: tcpstate.TimeWait, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
				SPort: 41001, DPort: 443, Cookie: 3, Timer: snapshot.TimerTimewait, Expires: 59 * time.Second, Netns: 4026531840},
		}, [][]procs.Owner{
			{{PID: 10, Comm: "nginx", FD: 6}, {PID: 11, Comm: "nginx", FD: 6}},
			{{PID: 77, Comm: "java", FD: 120}},
			nil,
		}
}

// sampleActual are the sockets' NAT backends: the connecting socket's
// destination was translated (format 4).
var sampleActual = []netip.AddrPort{{}, netip.MustParseAddrPort("[fd00::81]:9092"), {}}

// writeRecording writes a whole recording: snapshot, transitions, a loss.
func writeRecording(t testing.TB, path string, trs []record.Transition, o Options) *Writer {
	t.Helper()
	w, err := Create(path, header(), o)
	if err != nil {
		t.Fatal(err)
	}
	socks, users := sampleSockets()
	must(t, w.SnapshotStart(t0, 100, 200))
	for i := range socks {
		must(t, w.Socket(&socks[i], users[i], sampleIDs[i%len(sampleIDs)], sampleActual[i]))
	}
	must(t, w.SnapshotEnd(len(socks)))
	for i := range trs {
		must(t, w.Transition(&trs[i]))
		if i == 3 {
			must(t, w.Lost(5, 5, t0.Add(time.Minute)))
		}
	}
	must(t, w.Close())
	return w
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readAll reads every record, copying them, and the warnings.
func readAll(t testing.TB, paths []string) ([]Record, []string) {
	t.Helper()
	var warns []string
	r, err := Open(paths, ReadOptions{Warn: func(m string) { warns = append(warns, m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []Record
	for {
		var rec Record
		err := r.Next(&rec)
		if err == io.EOF {
			return out, warns
		}
		if err != nil {
			t.Fatal(err)
		}
		rec.Users = append([]procs.Owner(nil), rec.Users...)
		out = append(out, rec)
	}
}

func sameTransition(a, b *record.Transition) bool {
	a2, b2 := *a, *b
	return a2.Time.Equal(b2.Time) && func() bool { a2.Time, b2.Time = time.Time{}, time.Time{}; return reflect.DeepEqual(a2, b2) }()
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap")
	trs := sample(50)
	writeRecording(t, path, trs, Options{})
	recs, warns := readAll(t, []string{path})
	if len(warns) != 0 {
		t.Errorf("warnings on a good file: %v", warns)
	}
	socks, users := sampleSockets()
	want := 1 + len(socks) + 1 + len(trs) + 1
	if len(recs) != want {
		t.Fatalf("read %d records, want %d", len(recs), want)
	}
	if recs[0].Kind != KindSnapshotStart || !recs[0].At.Equal(t0) || recs[0].Start != 100 || recs[0].End != 200 {
		t.Errorf("snapshot start %+v", recs[0])
	}
	for i := range socks {
		r := recs[1+i]
		if r.Kind != KindSocket || !reflect.DeepEqual(r.Socket, socks[i]) || len(r.Users) != len(users[i]) || (len(users[i]) > 0 && !reflect.DeepEqual(r.Users, users[i])) {
			t.Errorf("socket %d: %+v %+v, want %+v %+v", i, r.Socket, r.Users, socks[i], users[i])
		}
		if want := sampleIDs[i%len(sampleIDs)]; !reflect.DeepEqual(r.Owner, want) {
			t.Errorf("socket %d: owner %+v, want %+v", i, r.Owner, want)
		}
		if r.Actual != sampleActual[i] {
			t.Errorf("socket %d: NAT backend %v, want %v", i, r.Actual, sampleActual[i])
		}
	}
	if r := recs[1+len(socks)]; r.Kind != KindSnapshotEnd || r.Count != len(socks) {
		t.Errorf("snapshot end %+v", r)
	}
	ti := 0
	for _, r := range recs[2+len(socks):] {
		switch r.Kind {
		case KindTransition:
			if !sameTransition(&r.Transition, &trs[ti]) {
				t.Errorf("transition %d:\n got %+v\nwant %+v", ti, r.Transition, trs[ti])
			}
			ti++
		case KindLost:
			if ti != 4 || r.Lost != 5 || r.LostTotal != 5 || !r.At.Equal(t0.Add(time.Minute)) {
				t.Errorf("lost record %+v after %d transitions", r, ti)
			}
		default:
			t.Errorf("unexpected %+v", r)
		}
	}
	if ti != len(trs) {
		t.Errorf("read %d transitions, want %d", ti, len(trs))
	}
	h, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	want0 := header()
	want0.Format = Version
	if !reflect.DeepEqual(h.Args, want0.Args) || h.Host != "db1" || h.Kernel != "6.18.0" || !h.BootTime.Equal(want0.BootTime) || h.Format != Version || h.Session != 42 || h.Filter != "dport 9092" {
		t.Errorf("header %+v", h)
	}
}

// TestTruncatedAnywhere: a recorder killed at any byte leaves a file
// that reads back to its last complete record, with the rest reported.
func TestTruncatedAnywhere(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cap")
	writeRecording(t, path, sample(20), Options{})
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := readAll(t, []string{path})
	// Where each frame ends, and each frame that is a record for the
	// caller (not an identity, which the records after it use).
	var ends, recEnds []int
	off := len(Magic)
	for off < len(full) {
		n := int(full[off]) | int(full[off+1])<<8 | int(full[off+2])<<16 | int(full[off+3])<<24
		kind := full[off+frameHeaderLen]
		off += frameHeaderLen + n
		ends = append(ends, off)
		if kind != recIdentity {
			recEnds = append(recEnds, off)
		}
	}
	cut := filepath.Join(dir, "cut")
	for size := 0; size < len(full); size++ {
		must(t, os.WriteFile(cut, full[:size], 0o600))
		_, herr := ReadHeader(cut)
		if size < ends[0] {
			if herr == nil {
				t.Fatalf("size %d: header read from a file cut in its header", size)
			}
			if size == 0 && !errors.Is(herr, ErrEmpty) {
				t.Errorf("empty file: %v", herr)
			}
			continue
		}
		recs, warns := readAll(t, []string{cut})
		complete := 0
		for _, e := range recEnds[1:] {
			if e <= size {
				complete++
			}
		}
		if len(recs) != complete {
			t.Fatalf("size %d: read %d records, want the %d complete ones", size, len(recs), complete)
		}
		if !reflect.DeepEqual(recs, all[:complete]) && !(len(recs) == 0 && complete == 0) {
			t.Fatalf("size %d: records differ from the full read", size)
		}
		atBoundary := false
		for _, e := range ends {
			atBoundary = atBoundary || e == size
		}
		if atBoundary != (len(warns) == 0) {
			t.Fatalf("size %d: warnings %v (at a record boundary: %v)", size, warns, atBoundary)
		}
		if !atBoundary {
			last := len(Magic)
			for _, e := range ends {
				if e <= size {
					last = e
				}
			}
			if want := fmt.Sprintf("skipped %d bytes", size-last); !strings.Contains(warns[0], want) {
				t.Fatalf("size %d: warning %q does not say %q", size, warns[0], want)
			}
		}
	}
}

// TestCorruptRecord: a flipped byte in the middle stops the read at that
// record, keeps what came before, and says so.
func TestCorruptRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap")
	writeRecording(t, path, sample(20), Options{})
	b, _ := os.ReadFile(path)
	all, _ := readAll(t, []string{path})
	b[len(b)/2] ^= 0x40
	must(t, os.WriteFile(path, b, 0o600))
	recs, warns := readAll(t, []string{path})
	if len(recs) == 0 || len(recs) >= len(all) || !reflect.DeepEqual(recs, all[:len(recs)]) {
		t.Errorf("read %d of %d records", len(recs), len(all))
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "checksum mismatch") {
		t.Errorf("warnings %v", warns)
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	writeRecording(t, good, sample(2), Options{})
	b, _ := os.ReadFile(good)
	newer := func() []byte {
		w := appendFrame([]byte(Magic), append([]byte{recHeader}, `{"format":99}`...))
		return w
	}()
	tests := []struct {
		name    string
		content []byte
		want    string
	}{
		{"empty", nil, "empty file"},
		{"text", []byte("hello, this is not a capture\n"), "not a socktrace capture"},
		{"pcap", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0}, "not a socktrace capture"},
		{"magic only", []byte(Magic), "truncated or corrupt header"},
		{"half magic", []byte(Magic[:4]), "truncated in its header"},
		{"header cut", b[:len(Magic)+12], "truncated or corrupt header"},
		{"newer", newer, "format version 99 is newer"},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, tt.name)
		must(t, os.WriteFile(p, tt.content, 0o600))
		_, err := Open([]string{p}, ReadOptions{})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file and saying %q", tt.name, err, tt.want)
		}
	}
	var ne *NewerError
	if _, err := Open([]string{filepath.Join(dir, "newer")}, ReadOptions{}); !errors.As(err, &ne) || ne.Version != 99 {
		t.Errorf("newer: %v", err)
	}
	if _, err := Open([]string{filepath.Join(dir, "nothing*")}, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "no capture file matches") {
		t.Errorf("glob without match: %v", err)
	}
}

func TestCreateModeAndForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap")
	writeRecording(t, path, sample(1), Options{})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := Create(path, header(), Options{}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("overwrite without --force: %v", err)
	}
	must(t, os.Chmod(path, 0o644))
	w, err := Create(path, header(), Options{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	must(t, w.Close())
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 || st.Size() > 400 {
		t.Errorf("after --force: mode %v size %d, want 0600 and a fresh file", st.Mode().Perm(), st.Size())
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "cap")
	trs := sample(2000)
	w := writeRecording(t, base, trs, Options{RotateSize: 16 << 10})
	if w.Files() < 4 {
		t.Fatalf("%d files for %d bytes with 16K rotation", w.Files(), w.Bytes())
	}
	for i := 0; i < w.Files(); i++ {
		st, err := os.Stat(FileName(base, i))
		if err != nil {
			t.Fatal(err)
		}
		if i < w.Files()-1 && (st.Size() < 16<<10 || st.Size() > 17<<10) {
			t.Errorf("file %d: %d bytes, want just over 16K", i, st.Size())
		}
	}
	// Read back from a glob, listed in the wrong order: same records.
	recs, warns := readAll(t, []string{base + ".*", base})
	n := 0
	for _, r := range recs {
		if r.Kind == KindTransition {
			if !sameTransition(&r.Transition, &trs[n]) {
				t.Fatalf("transition %d differs", n)
			}
			n++
		}
	}
	if n != len(trs) || len(warns) != 0 {
		t.Errorf("read %d of %d transitions across files; warnings %v", n, len(trs), warns)
	}

	// With a count, only the newest files stay, and the reader says what
	// is missing.
	dir2 := t.TempDir()
	base2 := filepath.Join(dir2, "cap")
	w2 := writeRecording(t, base2, trs, Options{RotateSize: 16 << 10, RotateCount: 2})
	left, _ := filepath.Glob(base2 + "*")
	if len(left) != 2 {
		t.Errorf("files left: %v, want 2", left)
	}
	recs, warns = readAll(t, left)
	if len(recs) == 0 || len(warns) != 1 || !strings.Contains(warns[0], fmt.Sprintf("part %d of its recording", w2.Files()-2)) {
		t.Errorf("%d records, warnings %v", len(recs), warns)
	}
}

// TestFollow: a reader started first picks up records appended later,
// across a rotation, and stops when told.
func TestFollow(t *testing.T) {
	base := filepath.Join(t.TempDir(), "cap")
	w, err := Create(base, header(), Options{RotateSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	must(t, w.Flush())
	stop := make(chan struct{})
	r, err := Open([]string{base}, ReadOptions{Follow: true, Stop: stop, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan record.Transition, 1000)
	done := make(chan error, 1)
	go func() {
		var rec Record
		for {
			if err := r.Next(&rec); err != nil {
				done <- err
				return
			}
			if rec.Kind == KindTransition {
				got <- rec.Transition
			}
		}
	}()
	trs := sample(300)
	for i := range trs {
		must(t, w.Transition(&trs[i]))
		if i%50 == 0 {
			must(t, w.Flush())
			time.Sleep(5 * time.Millisecond)
		}
	}
	must(t, w.Flush())
	if w.Files() < 2 {
		t.Fatalf("want a rotation during the test, got %d files", w.Files())
	}
	for i := range trs {
		select {
		case tr := <-got:
			if !sameTransition(&tr, &trs[i]) {
				t.Fatalf("followed transition %d differs", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("followed %d of %d transitions", i, len(trs))
		}
	}
	close(stop)
	select {
	case err := <-done:
		if err != io.EOF {
			t.Errorf("follow ended with %v, want io.EOF", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("follow did not stop")
	}
	w.Close()
}

// FuzzReader: whatever the bytes, reading never panics or hangs: the
// header is accepted or refused, then frames are read and decoded until
// the end or the first damage, as Reader.Next does (in memory here).
func FuzzReader(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "good")
	writeRecording(f, good, sample(10), Options{})
	b, _ := os.ReadFile(good)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), 0xff, 0xff, 0xff, 0xff))
	corrupt := append([]byte(nil), b...)
	corrupt[len(corrupt)-3] ^= 1
	f.Add(corrupt)
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		if _, _, err := readHeader(br); err != nil {
			return
		}
		r := &Reader{comms: map[string]string{}}
		var rec Record
		for i := 0; ; i++ {
			body, _, _ := readFrame(br, nil)
			if body == nil {
				return
			}
			r.decode(body, &rec)
			if i > len(data) {
				t.Fatal("more frames than bytes")
			}
		}
	})
}

// BenchmarkWrite measures recording speed and size per transition.
func BenchmarkWrite(b *testing.B) {
	trs := sample(1000)
	w, err := Create(filepath.Join(b.TempDir(), "cap"), header(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	start := w.Bytes()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := &trs[i%len(trs)]
		t.Time = t0.Add(time.Duration(i) * 3 * time.Microsecond)
		t.Ktime = 3600e9 + uint64(i)*3000
		if err := w.Transition(t); err != nil {
			b.Fatal(err)
		}
	}
	must(b, w.Flush())
	b.StopTimer()
	b.ReportMetric(float64(w.Bytes()-start)/float64(b.N), "bytes/event")
	w.Close()
}

// BenchmarkRead measures replay speed.
func BenchmarkRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "cap")
	w, err := Create(path, header(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	trs := sample(1000)
	for i := 0; i < 100000; i++ {
		must(b, w.Transition(&trs[i%len(trs)]))
	}
	must(b, w.Close())
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for n < b.N {
		r, err := Open([]string{path}, ReadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var rec Record
		for n < b.N {
			if err := r.Next(&rec); err != nil {
				break
			}
			n++
		}
		r.Close()
	}
}

// TestLossRecords: lost and skipped markers read back as such.
func TestLossRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap")
	w, err := Create(path, header(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	must(t, w.Lost(3, 3, t0))
	must(t, w.Skipped(2, 2, t0.Add(time.Second)))
	must(t, w.Lost(1, 4, t0.Add(2*time.Second)))
	must(t, w.Close())
	recs, warns := readAll(t, []string{path})
	want := []struct {
		kind     Kind
		n, total uint64
	}{{KindLost, 3, 3}, {KindSkipped, 2, 2}, {KindLost, 1, 4}}
	if len(recs) != len(want) || len(warns) != 0 {
		t.Fatalf("%d records, warnings %v", len(recs), warns)
	}
	for i, w := range want {
		if r := recs[i]; r.Kind != w.kind || r.Lost != w.n || r.LostTotal != w.total || !r.At.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Errorf("record %d: %+v, want %+v", i, r, w)
		}
	}
}
