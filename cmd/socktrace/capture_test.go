package main

// Capture files end to end: record a real trace, read it back.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testfs"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// traffic makes n connections to a server that accepts and closes, plus
// one refused connect, in ns.
func traffic(t *testing.T, ns *testnet.NS, port, n int) {
	t.Helper()
	ns.Run(t, func() error {
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return err
			}
			c.Close()
		}
		if c, err := net.Dial("tcp4", "127.0.0.1:1"); err == nil {
			c.Close()
		}
		return nil
	})
}

func readCapture(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := exec.Command(socktraceBin(t), append([]string{"read"}, args...)...)
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		t.Fatalf("socktrace read %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

func transitionsIn(lines []string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, `"type":"transition"`) {
			n++
		}
	}
	return n
}

// TestCaptureRoundTrip: what a live trace printed, its recording
// replays to, byte for byte, as JSON; filters apply on replay; reading
// needs no privileges.
func TestCaptureRoundTrip(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	neverCloses(t, ns, 2) // some sockets for the snapshot
	file := filepath.Join(t.TempDir(), "trace.st")
	p := start(t, "-o", "json", "--netns", ns.Path(), "-w", file, "--fail-after", "1")
	traffic(t, ns, port, 50)
	p.waitFor(t, "the refused connect", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), `"error":"ECONNREFUSED"`)
	})
	time.Sleep(200 * time.Millisecond)
	live := p.stop(t)
	if transitionsIn(live) < 50*10 {
		t.Fatalf("live trace has %d transitions, want at least 500", transitionsIn(live))
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("capture file mode %v, want 0600", st.Mode().Perm())
	}

	out, _ := readCapture(t, "-o", "json", "--fail-after", "1", file)
	if got := strings.TrimSpace(out); got != strings.Join(live, "\n") {
		t.Errorf("replay differs from the live output:\nlive %d lines, replay %d lines\n%s", len(live), strings.Count(got, "\n")+1, firstDiff(live, strings.Split(got, "\n")))
	}
	// Records of every kind made it: sockets, transitions, the alert.
	for _, w := range []string{`"type":"socket"`, `"type":"transition"`, `"type":"alert"`} {
		if !strings.Contains(out, w) {
			t.Errorf("replay lacks %s", w)
		}
	}

	// Filters on replay keep what they keep live.
	out, _ = readCapture(t, "-o", "json", "--state", "close", file, "--", "dport = :1")
	recs := parseJSON(t, strings.Split(strings.TrimSpace(out), "\n"))
	if len(recs) != 1 || recs[0].str("old_state") != "syn-sent" || recs[0].str("error") != "ECONNREFUSED" {
		t.Errorf("replay with filters: %v, want the one refused connect", recs)
	}

	// Reading needs no privileges (another machine, another user).
	shared, err := os.MkdirTemp("", "socktrace-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	nobody := filepath.Join(shared, "copy.st")
	b, _ := os.ReadFile(file)
	if err := os.WriteFile(nobody, b, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(nobody, 65534, 65534)
	os.Chmod(shared, 0o755)
	c := exec.Command(socktraceBin(t), "read", "-o", "json", "--fail-after", "1", nobody)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var nerr bytes.Buffer
	c.Stderr = &nerr
	asNobody, err := c.Output()
	if err != nil {
		t.Fatalf("read as nobody: %v\n%s", err, nerr.String())
	}
	if strings.TrimSpace(string(asNobody)) != strings.Join(live, "\n") {
		t.Error("replay as nobody differs")
	}

	// The header says what was recorded.
	_, stderr := readCapture(t, file)
	host, _ := os.Hostname()
	if !strings.Contains(stderr, "capture of "+host) || !strings.Contains(stderr, "--netns "+ns.Path()) {
		t.Errorf("table replay's banner: %q", stderr)
	}

	// An existing file is not overwritten without --force.
	if out, err := exec.Command(socktraceBin(t), "-w", file, "--duration", "10ms").CombinedOutput(); err == nil || !strings.Contains(string(out), "--force") {
		t.Errorf("overwrite: %v %s", err, out)
	}
	if out, err := exec.Command(socktraceBin(t), "-w", file, "--force", "-q", "--netns", ns.Path(), "--duration", "10ms").CombinedOutput(); err != nil {
		t.Errorf("--force: %v %s", err, out)
	}
}

func firstDiff(a, b []string) string {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			other := "(missing)"
			if i < len(b) {
				other = b[i]
			}
			return fmt.Sprintf("line %d:\nlive:   %s\nreplay: %s", i+1, a[i], other)
		}
	}
	return ""
}

// TestCaptureKilled: a recorder killed with SIGKILL while recording
// leaves a file that reads back; a cut tail is reported, not fatal.
func TestCaptureKilled(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	file := filepath.Join(t.TempDir(), "killed.st")
	p := start(t, "-q", "--netns", ns.Path(), "-w", file)
	done := make(chan struct{})
	go func() { // keep it busy while it dies
		defer close(done)
		ns.Do(func() error {
			for i := 0; i < 2000; i++ {
				if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
					c.Close()
				}
			}
			return nil
		})
	}()
	time.Sleep(300 * time.Millisecond)
	p.cmd.Process.Kill()
	p.cmd.Wait()
	<-done
	out, _ := readCapture(t, "-o", "json", file)
	n := transitionsIn(strings.Split(out, "\n"))
	if n < 100 {
		t.Fatalf("read %d transitions from the killed recorder's file, want many", n)
	}
	// Cut the file inside a record: everything before still reads, and
	// the damage is reported.
	b, _ := os.ReadFile(file)
	cut := filepath.Join(t.TempDir(), "cut.st")
	os.WriteFile(cut, b[:len(b)-7], 0o600)
	out2, stderr := readCapture(t, "-o", "json", cut)
	n2 := transitionsIn(strings.Split(out2, "\n"))
	if n2 < n-1 || n2 > n || !strings.Contains(stderr, "truncated or corrupt tail") || !strings.Contains(stderr, "skipped") {
		t.Errorf("cut file: %d transitions (of %d), stderr %q", n2, n, stderr)
	}
	// No file: a clear error, exit 1.
	if out, err := exec.Command(socktraceBin(t), "read").CombinedOutput(); err == nil || !strings.Contains(string(out), "no capture file given") {
		t.Errorf("read without a file: %v %s", err, out)
	}
	// Not a capture: a clear error, exit 1.
	notcap := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notcap, []byte("not a capture"), 0o600)
	if out, err := exec.Command(socktraceBin(t), "read", notcap).CombinedOutput(); err == nil || !strings.Contains(string(out), "not a socktrace capture file") {
		t.Errorf("reading a text file: %v %s", err, out)
	}
}

// TestCaptureRotation: a recording rotated over several files reads
// back, from a glob, to what was shown live.
func TestCaptureRotation(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	dir := t.TempDir()
	file := filepath.Join(dir, "rot.st")
	p := start(t, "-o", "json", "--no-snapshot", "--netns", ns.Path(), "-w", file, "--rotate-size", "8K")
	traffic(t, ns, port, 100)
	p.waitFor(t, "the refused connect", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), `"error":"ECONNREFUSED"`)
	})
	time.Sleep(100 * time.Millisecond)
	live := p.stop(t)
	files, _ := filepath.Glob(file + "*")
	if len(files) < 3 {
		t.Fatalf("%d files for %d transitions with 8K rotation", len(files), transitionsIn(live))
	}
	out, stderr := readCapture(t, "-o", "json", filepath.Join(dir, "rot.st*"))
	if strings.TrimSpace(out) != strings.Join(live, "\n") || stderr != "" {
		t.Errorf("replay of %d files differs from the live output (stderr %q):\n%s", len(files), stderr, firstDiff(live, strings.Split(strings.TrimSpace(out), "\n")))
	}
	// With --rotate-count, only the newest files are kept.
	file2 := filepath.Join(dir, "ring.st")
	p = start(t, "-q", "--no-snapshot", "--netns", ns.Path(), "-w", file2, "--rotate-size", "8K", "--rotate-count", "2")
	traffic(t, ns, port, 100)
	time.Sleep(200 * time.Millisecond)
	p.stop(t)
	if files, _ := filepath.Glob(file2 + "*"); len(files) != 2 {
		t.Errorf("files kept with --rotate-count 2: %v", files)
	}
}

// TestCaptureFollow: read --follow shows records appended after it
// started, like tail -f.
func TestCaptureFollow(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	file := filepath.Join(t.TempDir(), "follow.st")
	rec := start(t, "-q", "--no-snapshot", "--netns", ns.Path(), "-w", file, "--rotate-size", "16K")
	f := &proc{eof: make(chan struct{})}
	f.cmd = exec.Command(socktraceBin(t), "read", "--follow", "-o", "json", file)
	f.cmd.Stderr = &f.stderr
	var err error
	if f.stdout, err = f.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cmd.Process.Kill(); f.cmd.Wait() })
	go f.scan()
	time.Sleep(300 * time.Millisecond) // the reader waits at the end of the file
	traffic(t, ns, port, 200)          // more than one file's worth
	f.waitFor(t, "the refused connect, followed", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), `"error":"ECONNREFUSED"`)
	})
	// The traffic's transitions recorded (on a busy machine the last
	// closes come late; a nested one both programs missed, or the closing
	// pair the kernel rarely makes unseen, may be absent: README, "Lost
	// transitions"), then stop the recorder.
	const enough = 1990
	f.waitForIn(t, 15*time.Second, "the traffic's transitions, followed", func(lines []string) bool { return transitionsIn(lines) >= enough })
	rec.stop(t)
	if files, _ := filepath.Glob(file + "*"); len(files) < 2 {
		t.Errorf("want the recording to rotate during the test, got %v", files)
	}
	// The follower ends up with all of it, as a plain read sees it.
	out, _ := readCapture(t, "-o", "json", file+"*")
	all := strings.Split(strings.TrimSpace(out), "\n")
	f.waitFor(t, "every record, followed", func(lines []string) bool { return len(lines) >= len(all) })
	got := f.stop(t)
	if strings.Join(got, "\n") != strings.Join(all, "\n") || transitionsIn(all) < enough {
		t.Errorf("followed %d records (%d transitions), a plain read has %d: %s", len(got), transitionsIn(got), len(all), firstDiff(all, got))
	}
}

// linesWith counts the lines that hold every one of subs.
func linesWith(lines []string, subs ...string) int {
	n := 0
	for _, l := range lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}

// fillUntil makes traffic in ns until cond holds of p's output, and
// fails after rounds rounds.
func fillUntil(t *testing.T, p *proc, ns *testnet.NS, port, rounds int, what string, cond func([]string) bool) {
	t.Helper()
	for i := 0; i < rounds; i++ {
		if cond(p.output()) {
			return
		}
		traffic(t, ns, port, 100)
		time.Sleep(50 * time.Millisecond)
	}
	p.waitFor(t, what, cond)
}

// TestCaptureFullDisk: -w onto a filesystem that fills (a small tmpfs)
// never stops the trace: the recording pauses (one stderr line, a
// recording record), transitions keep coming, it resumes once there is
// room, socktrace ends with exit 0 and its count line, and the file
// reads back, the gap marked.
func TestCaptureFullDisk(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	dir := testfs.Tmpfs(t, 2<<20)
	filler := testfs.Fill(t, dir, 2<<20-256<<10) // about 256K left
	file := filepath.Join(dir, "trace.st")
	p := start(t, "-o", "json", "--netns", ns.Path(), "-w", file)
	paused := func(lines []string) bool { return linesWith(lines, `"type":"recording"`, `"status":"paused"`) > 0 }
	fillUntil(t, p, ns, port, 60, "the recording to pause on a full disk", paused)
	var rec record
	for _, r := range parseJSON(t, p.output()) {
		if r.str("type") == "recording" {
			rec = r
			break
		}
	}
	if rec.str("file") != file || !strings.Contains(rec.str("error"), "no space left on device") || rec.num("errors_total") != 1 {
		t.Errorf("recording record %v: want the file, ENOSPC, errors_total 1", rec)
	}
	// Tracing goes on: a refused connect made now is shown.
	before := linesWith(p.output(), `"error":"ECONNREFUSED"`)
	refuse(t, ns, "127.0.0.1:1")
	p.waitFor(t, "a refused connect shown while the recording is paused", func(lines []string) bool {
		return linesWith(lines, `"error":"ECONNREFUSED"`) > before
	})
	// Room again: it resumes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p.waitForIn(t, 20*time.Second, "the recording to resume", func(lines []string) bool {
		return linesWith(lines, `"type":"recording"`, `"status":"resumed"`) > 0
	})
	traffic(t, ns, port, 20)
	time.Sleep(300 * time.Millisecond)
	live := p.stop(t) // exit 0
	stderr := p.stderr.String()
	if n := strings.Count(stderr, "PAUSED: "); n != 1 || !strings.Contains(stderr, "no space left on device") {
		t.Errorf("stderr has %d pause lines, want 1 with the cause:\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "recording resumed in "+file) || !regexp.MustCompile(`transitions recorded to .*; the recording PAUSED 1 time\(s\) on write errors: \d+ transitions not recorded`).MatchString(stderr) {
		t.Errorf("stderr lacks the resumption or the final count line with the pause:\n%s", stderr)
	}
	if n := linesWith(live, `"type":"recording"`); n != 2 {
		t.Errorf("%d recording records, want paused and resumed", n)
	}
	// The file reads back, whole records only, the gap where it was.
	out, rstderr := readCapture(t, "-o", "json", file)
	replay := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(rstderr, "socktrace: the recording paused at ") || !strings.Contains(rstderr, "no space left on device") || strings.Count(rstderr, "\n") != 1 {
		t.Errorf("read: stderr %q, want one line for the gap (and no damage)", rstderr)
	}
	if linesWith(replay, `"type":"recording"`, `"status":"paused"`) != 1 || linesWith(replay, `"type":"recording"`, `"status":"resumed"`) != 1 {
		t.Errorf("the replay does not show the gap:\n%s", out)
	}
	recorded := transitionsIn(replay)
	if recorded < 1000 || recorded >= transitionsIn(live) {
		t.Errorf("replay has %d transitions, the live trace %d: want most, not all", recorded, transitionsIn(live))
	}
	// Transitions after the gap were recorded too.
	gapAt := -1
	for i, l := range replay {
		if strings.Contains(l, `"status":"resumed"`) {
			gapAt = i
		}
	}
	if gapAt < 0 || transitionsIn(replay[gapAt:]) < 20 {
		t.Errorf("want the transitions after the resumption recorded, got %d", transitionsIn(replay[max(gapAt, 0):]))
	}
}
