package capture

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/testkit/testfs"
)

// transitionsOf keeps the transitions of recs, and the gap records.
func transitionsOf(recs []Record) (trs []record.Transition, gaps []Record) {
	for _, r := range recs {
		switch r.Kind {
		case KindTransition:
			trs = append(trs, r.Transition)
		case KindGap:
			gaps = append(gaps, r)
		}
	}
	return trs, gaps
}

// later is a time past any retry the writer may have scheduled, later
// each time.
var laterBy time.Duration

func later() time.Time {
	laterBy += time.Hour
	return time.Now().Add(laterBy)
}

// TestPauseOnFullDisk: a recording that fills its disk pauses (one
// change, ENOSPC), drops what comes while paused and counts it, stays
// readable (cut back to a whole record), does not resume while the disk
// is still full, and resumes in the same file once there is room again,
// with a gap record that says what was not recorded.
func TestPauseOnFullDisk(t *testing.T) {
	dir := testfs.Tmpfs(t, 2<<20)
	filler := testfs.Fill(t, dir, 1<<20)
	path := filepath.Join(dir, "cap")
	w, err := Create(path, header(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	trs := sample(1000)
	var given []record.Transition // what was given before the pause
	for i := 0; !w.State().Paused; i++ {
		if i > 100000 {
			t.Fatalf("not paused after %d transitions into a full tmpfs: %+v", i, w.State())
		}
		tr := trs[i%len(trs)]
		tr.Time, tr.Ktime = t0.Add(time.Duration(i)*time.Millisecond), 3600e9+uint64(i)*1e6
		must(t, w.Transition(&tr))
		given = append(given, tr)
	}
	ch := w.Changes()
	if len(ch) != 1 || !ch[0].Paused || !errors.Is(ch[0].Err, unix.ENOSPC) || ch[0].File != path || ch[0].Errors != 1 {
		t.Fatalf("changes %+v, want one pause on ENOSPC of %s", ch, path)
	}
	if !strings.Contains(ch[0].Err.Error(), path) || !strings.Contains(ch[0].Err.Error(), "no space left on device") {
		t.Errorf("error %q does not name the file and the cause", ch[0].Err)
	}
	recorded := w.Transitions()
	if recorded == 0 || recorded >= uint64(len(given)) {
		t.Fatalf("%d of %d transitions recorded at the pause", recorded, len(given))
	}
	// While paused: dropped and counted, nothing written.
	for i := 0; i < 10; i++ {
		tr := trs[i]
		tr.Time = t0.Add(time.Hour)
		must(t, w.Transition(&tr))
	}
	must(t, w.Lost(1, 1, t0.Add(time.Hour)))
	must(t, w.Flush())
	must(t, w.Sync())
	st := w.State()
	if !st.Paused || st.Transitions != recorded || st.Dropped != uint64(len(given))-recorded+10 || st.Errors != 1 {
		t.Errorf("state while paused %+v; want %d recorded, %d dropped", st, recorded, uint64(len(given))-recorded+10)
	}

	// Readable up to the cut, which is a record's end: no damage.
	recs, warns := readAll(t, []string{path})
	got, _ := transitionsOf(recs)
	if len(warns) != 0 || uint64(len(got)) != recorded {
		t.Fatalf("read %d transitions (%d recorded), warnings %v", len(got), recorded, warns)
	}
	for i := range got {
		if !sameTransition(&got[i], &given[i]) {
			t.Fatalf("transition %d differs", i)
		}
	}

	// Still full: no try succeeds, nothing changes.
	w.Tick(later())
	if ch := w.Changes(); len(ch) != 0 || !w.State().Paused {
		t.Fatalf("resumed on a full disk: %+v", ch)
	}
	// (Read the file as it is now, to compare once it resumes in it.)
	cut, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// Room again: it resumes in the same file, at the next try.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	w.Tick(time.Now()) // too early: the retry backs off
	if ch := w.Changes(); len(ch) != 0 {
		t.Fatalf("retried before its time: %+v", ch)
	}
	w.Tick(later())
	ch = w.Changes()
	dropped := uint64(len(given)) - recorded + 10
	if len(ch) != 1 || ch[0].Paused || ch[0].File != path || ch[0].Dropped != dropped || ch[0].PausedFor <= 0 {
		t.Fatalf("changes %+v, want a resumption in %s with %d dropped", ch, path, dropped)
	}
	after := sample(20)
	for i := range after {
		after[i].Time = t0.Add(2 * time.Hour)
		must(t, w.Transition(&after[i]))
	}
	must(t, w.Close())
	if st := w.State(); st.Paused || st.Files != 1 || st.Transitions != recorded+20 {
		t.Errorf("state at the end %+v", st)
	}
	if b, _ := os.ReadFile(path); len(b) <= len(cut) || string(b[:len(cut)]) != string(cut) {
		t.Errorf("the file at the pause (%d bytes) is not the start of the file after resuming (%d bytes)", len(cut), len(b))
	}
	recs, warns = readAll(t, []string{path})
	got, gaps := transitionsOf(recs)
	if len(warns) != 0 || uint64(len(got)) != recorded+20 || len(gaps) != 1 {
		t.Fatalf("read %d transitions, %d gaps, warnings %v; want %d and 1", len(got), len(gaps), warns, recorded+20)
	}
	for i := range after {
		if !sameTransition(&got[int(recorded)+i], &after[i]) {
			t.Fatalf("transition %d after the gap differs", i)
		}
	}
	g := gaps[0]
	if g.Lost != dropped || !strings.Contains(g.Err, "no space left on device") || !g.Until.After(g.At) {
		t.Errorf("gap record %+v: want %d dropped, the error, its start and end", g, dropped)
	}
	// The gap comes where the recording resumed.
	for i, r := range recs {
		if r.Kind == KindGap {
			if i == 0 || recs[i-1].Kind != KindTransition || !sameTransition(&recs[i-1].Transition, &given[recorded-1]) {
				t.Errorf("the gap record is not right after the last transition recorded before it")
			}
		}
	}
}

// TestPauseWhenRemoved: a file removed under the recording pauses it
// (writing on would go nowhere), and it resumes in the next file.
func TestPauseWhenRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap")
	w, err := Create(path, header(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	trs := sample(40)
	for i := range trs[:20] {
		must(t, w.Transition(&trs[i]))
	}
	must(t, w.Flush())
	w.Tick(time.Now())
	if ch := w.Changes(); len(ch) != 0 {
		t.Fatalf("changes before any error: %+v", ch)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.Tick(time.Now())
	ch := w.Changes()
	if len(ch) != 1 || !ch[0].Paused || !strings.Contains(ch[0].Err.Error(), "was removed") {
		t.Fatalf("changes %+v, want a pause: the file was removed", ch)
	}
	w.Tick(later())
	ch = w.Changes()
	if len(ch) != 1 || ch[0].Paused || ch[0].File != FileName(path, 1) {
		t.Fatalf("changes %+v, want a resumption in %s", ch, FileName(path, 1))
	}
	for i := range trs[20:] {
		must(t, w.Transition(&trs[20+i]))
	}
	must(t, w.Close())
	recs, warns := readAll(t, []string{FileName(path, 1)})
	got, gaps := transitionsOf(recs)
	if len(got) != 20 || len(gaps) != 1 || len(warns) != 1 || !strings.Contains(warns[0], "part 1 of its recording") {
		t.Fatalf("read %d transitions, %d gaps, warnings %v; want 20, 1 and that part 0 is missing", len(got), len(gaps), warns)
	}
	for i := range got {
		if !sameTransition(&got[i], &trs[20+i]) {
			t.Fatalf("transition %d differs", i)
		}
	}
}

// TestPauseRotation: rotating on a disk that fills, the recording
// pauses; the next rotation removes the oldest file (--rotate-count),
// which makes room, and it resumes in the next file.
func TestPauseRotation(t *testing.T) {
	// Two files of 384K fit, the third does not: it pauses in it, after
	// its first 256K were written.
	dir := testfs.Tmpfs(t, 2<<20)
	testfs.Fill(t, dir, 2<<20-1148<<10)
	path := filepath.Join(dir, "cap")
	w, err := Create(path, header(), Options{RotateSize: 384 << 10, RotateCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	trs := sample(1000)
	for i := 0; !w.State().Paused; i++ {
		if i > 100000 {
			t.Fatalf("not paused after %d transitions: %+v", i, w.State())
		}
		tr := trs[i%len(trs)]
		tr.Time = t0.Add(time.Duration(i) * time.Millisecond)
		must(t, w.Transition(&tr))
	}
	ch := w.Changes()
	if len(ch) != 1 || !errors.Is(ch[0].Err, unix.ENOSPC) {
		t.Fatalf("changes %+v, want a pause on ENOSPC", ch)
	}
	files := w.Files()
	if files != 3 || w.size <= w.hdrEnd {
		t.Fatalf("paused in file %d of %d bytes (%d of them its header), want in the third, after a first write; %d bytes free (the test's sizes are wrong)",
			files, w.size, w.hdrEnd, testfs.Free(t, dir))
	}
	w.Tick(later())
	ch = w.Changes()
	if len(ch) != 1 || ch[0].Paused || ch[0].File != FileName(path, files) {
		t.Fatalf("changes %+v, want a resumption in %s (the oldest removed for room)", ch, FileName(path, files))
	}
	for i := 0; i < 100; i++ {
		must(t, w.Transition(&trs[i]))
	}
	must(t, w.Close())
	left, _ := filepath.Glob(path + "*")
	recs, warns := readAll(t, left)
	_, gaps := transitionsOf(recs)
	if len(gaps) != 1 {
		t.Errorf("%d gap records in %v, want 1; warnings %v", len(gaps), left, warns)
	}
	for _, m := range warns {
		if !strings.Contains(m, "earlier parts") {
			t.Errorf("warning %q: want only that the oldest parts were rotated away", m)
		}
	}
}

// TestRemovedWhilePaused: a file removed while the recording is paused
// is not resumed in: the next file is.
func TestRemovedWhilePaused(t *testing.T) {
	dir := testfs.Tmpfs(t, 1<<20)
	filler := testfs.Fill(t, dir, 512<<10)
	path := filepath.Join(dir, "cap")
	w, err := Create(path, header(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	trs := sample(1000)
	for i := 0; !w.State().Paused; i++ {
		if i > 100000 {
			t.Fatalf("not paused: %+v", w.State())
		}
		must(t, w.Transition(&trs[i%len(trs)]))
	}
	w.Changes()
	os.Remove(path)
	os.Remove(filler)
	w.Tick(later())
	ch := w.Changes()
	if len(ch) != 1 || ch[0].Paused || ch[0].File != FileName(path, 1) {
		t.Fatalf("changes %+v, want a resumption in %s", ch, FileName(path, 1))
	}
	must(t, w.Close())
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s came back: %v", path, err)
	}
}
