package pipeline

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// seedCapture writes a small real recording: a snapshot of two sockets
// and a connect's life.
func seedCapture(t testing.TB, path string) {
	t.Helper()
	w, err := capture.Create(path, capture.Header{Host: "h", Kernel: "6.18", BootTime: time.Unix(1e9, 0), Started: time.Unix(1e9+100, 0)}, capture.Options{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	w.SnapshotStart(time.Unix(1e9+100, 0), 1, 2)
	w.Socket(&snapshot.Socket{Family: unix.AF_INET, State: tcpstate.Listen, Src: lo, Dst: netip.IPv4Unspecified(), SPort: 80, Cookie: 1, Inode: 5}, nil, nil, netip.AddrPort{})
	w.Socket(&snapshot.Socket{Family: unix.AF_INET, State: tcpstate.CloseWait, Src: lo, Dst: lo, SPort: 80, DPort: 4000, Cookie: 2, Inode: 6}, nil, nil, netip.AddrPort{})
	w.SnapshotEnd(2)
	// The connect's address came from a DNS answer (a CNAME chain).
	w.DNS(&dnscache.Observation{At: time.Unix(1e9+101, 0), K: 1e11, Netns: 0, PID: 7, Comm: "c", Server: netip.MustParseAddrPort("127.0.0.53:53"),
		Msg: answer(t, "localhost.example", 5, "127.0.0.1")})
	states := []tcpstate.State{tcpstate.Close, tcpstate.SynSent, tcpstate.Established, tcpstate.FinWait1, tcpstate.FinWait2, tcpstate.Close}
	for i := 1; i < len(states); i++ {
		w.Transition(&record.Transition{Transition: events.Transition{Time: time.Unix(1e9+101, int64(i)), Ktime: uint64(1e11 + i), Cookie: 3, Family: unix.AF_INET,
			Src: lo, Dst: lo, SPort: 4001, DPort: 9092, Old: states[i-1], New: states[i], OwnerKnown: true, OwnerPID: 7, OwnerComm: "c\x1b"}})
	}
	w.Lost(3, 3, time.Unix(1e9+102, 0))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzReplay runs socktrace read, with --summary, over crafted files:
// the whole replay path (decoding, merging, analysis, summary, JSON and
// table output) must end without a crash and without growing beyond
// what the file holds.
func FuzzReplay(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed")
	seedCapture(f, seed)
	b, err := os.ReadFile(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, true)
	f.Add(b[:len(b)/2], false)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		f.Fatal(err)
	}
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = devnull, devnull
	f.Cleanup(func() { os.Stdout, os.Stderr = stdout, stderr })
	path := filepath.Join(dir, "in")
	f.Fuzz(func(t *testing.T, data []byte, json bool) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		o := &Options{Output: "table", Summary: true, CloseWaitAfter: time.Second, History: 100}
		if json {
			o.Output = "json"
		}
		_ = Read(o, []string{path}) // errors are fine; crashes are not
	})
}

// TestReplaySeed: the fuzz test's seed replays without an error, so the
// fuzzer starts from a file that goes the whole way.
func TestReplaySeed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed")
	seedCapture(t, path)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = stdout }()
	for _, out := range []string{"json", "table"} {
		if err := Read(&Options{Output: out, Summary: true, History: 100}, []string{path}); err != nil {
			t.Errorf("replay (%s): %v", out, err)
		}
	}
}
