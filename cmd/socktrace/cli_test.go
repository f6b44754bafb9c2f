package main

// End-to-end tests of the socktrace binary on the real kernel: the tests
// make TCP traffic in a network namespace of their own and read what
// socktrace prints.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// socktraceBin builds the command once for all tests.
func socktraceBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "socktrace-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755) // the not-root test runs it as nobody
		binPath = filepath.Join(dir, "socktrace")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a running socktrace.
type proc struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr bytes.Buffer
	mu     sync.Mutex
	lines  []string
	eof    chan struct{}
}

// start runs socktrace with args plus --ready-file and waits until it is
// attached.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	return startCmd(t, exec.Command(socktraceBin(t), append(args, "--ready-file", ready)...), ready, "")
}

// startCmd starts cmd, a socktrace that writes the ready file, and
// waits for the file; who says how it runs, for the failure messages.
func startCmd(t *testing.T, cmd *exec.Cmd, ready, who string) *proc {
	t.Helper()
	p := &proc{cmd: cmd, eof: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdout, err = p.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	go p.scan()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("socktrace%s not ready after 10s; stderr:\n%s", who, p.stderr.String())
		}
		select {
		case <-p.eof: // exited early: say why
			p.cmd.Wait()
			t.Fatalf("socktrace%s exited before it was ready: %v; stderr:\n%s", who, p.cmd.ProcessState, p.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// scan collects stdout's lines until it closes.
func (p *proc) scan() {
	sc := bufio.NewScanner(p.stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		p.mu.Unlock()
	}
	close(p.eof)
}

// waitFor polls the output lines until cond holds.
func (p *proc) waitFor(t *testing.T, what string, cond func(lines []string) bool) {
	t.Helper()
	p.waitForIn(t, 5*time.Second, what, cond)
}

func (p *proc) waitForIn(t *testing.T, d time.Duration, what string, cond func(lines []string) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		ok := cond(p.lines)
		p.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; output:\n%s", what, strings.Join(p.output(), "\n"))
}

func (p *proc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// stop sends SIGINT and waits: socktrace must drain and exit 0.
func (p *proc) stop(t *testing.T) []string {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.eof:
	case <-time.After(5 * time.Second):
		t.Fatal("socktrace did not exit within 5s of SIGINT")
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("socktrace exited with %v; stderr:\n%s", err, p.stderr.String())
	}
	return p.output()
}

// record is a decoded JSON line.
type record map[string]any

func (r record) str(k string) string  { s, _ := r[k].(string); return s }
func (r record) num(k string) float64 { n, _ := r[k].(float64); return n }

// parseJSON decodes every line, failing on any that is not a JSON object.
func parseJSON(t *testing.T, lines []string) []record {
	t.Helper()
	var out []record
	for _, l := range lines {
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line is not JSON: %v\n%s", err, l)
		}
		out = append(out, r)
	}
	return out
}

// inNetns keeps the transition records of one namespace.
func inNetns(recs []record, inode uint32) []record {
	var out []record
	for _, r := range recs {
		if r.str("type") == "transition" && uint32(r.num("netns")) == inode {
			out = append(out, r)
		}
	}
	return out
}

func countNetns(inode uint32, n int) func([]string) bool {
	return func(lines []string) bool {
		c := 0
		for _, l := range lines {
			if strings.Contains(l, fmt.Sprintf(`"netns":%d,`, inode)) {
				c++
			}
		}
		return c >= n
	}
}

// exchange makes, in ns, one connection to listenAddr, closed by the
// client first, and returns the server's port.
func exchange(t *testing.T, ns *testnet.NS, listenAddr string) int {
	t.Helper()
	var port int
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp", listenAddr)
		if err != nil {
			return err
		}
		defer ln.Close()
		port = ln.Addr().(*net.TCPAddr).Port
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		c.Close()
		s.Read(make([]byte, 1))
		return s.Close()
	})
	return port
}

func refuse(t *testing.T, ns *testnet.NS, addr string) {
	t.Helper()
	ns.Run(t, func() error {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return fmt.Errorf("connect to %s succeeded, want refused", addr)
		}
		return nil
	})
}

func TestJSONStream(t *testing.T) {
	ns := testnet.New(t)
	p := start(t, "-o", "json")
	port := exchange(t, ns, "127.0.0.1:0")
	refuse(t, ns, "[::1]:1")
	p.waitFor(t, "14 transitions in the test's namespace", countNetns(ns.Inode, 14))
	recs := inNetns(parseJSON(t, p.stop(t)), ns.Inode)
	if len(recs) != 14 {
		t.Fatalf("got %d records in our namespace, want 14 (listener 2, client 5, accepted 5, refused 2)", len(recs))
	}
	keys := []string{"type", "time", "ktime_ns", "cookie", "netns", "family", "saddr", "sport", "daddr", "dport", "dns_name", "actual_daddr", "actual_dport",
		"old_state", "new_state", "old_state_duration_ns", "pid", "tid", "comm",
		"cgroup", "unit", "container_id", "runtime", "pod", "namespace", "container",
		"task_pid", "task_tid", "task_comm", "uid", "error"}
	var transitions []string
	for _, r := range recs {
		// What happened on the wire, on the transitions it explains.
		wire := 0
		if r.str("old_state") == "syn-sent" && (r.str("new_state") == "close" || r.str("new_state") == "established") {
			wire++ // syn_retransmits
		}
		if r.str("old_state") == "syn-sent" && r.str("new_state") == "established" {
			wire++ // srtt_us
		}
		if r.str("new_state") == "close" {
			wire += 12 // bytes_acked ... lifetime_ns, drops, drop_reason, drop_direction
		}
		if len(r) != len(keys)+wire {
			t.Errorf("record has %d fields, want %d: %v", len(r), len(keys)+wire, r)
		}
		for _, k := range keys {
			if _, ok := r[k]; !ok {
				t.Errorf("record lacks %q: %v", k, r)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, r.str("time")); err != nil {
			t.Errorf("time %q: %v", r.str("time"), err)
		}
		if int(r.num("pid")) != os.Getpid() {
			t.Errorf("pid %v, want %d (the test process owns every socket): %v", r["pid"], os.Getpid(), r)
		}
		transitions = append(transitions, fmt.Sprintf("%s:%v>%v %s->%s", r.str("family"), r.num("sport"), r.num("dport"), r.str("old_state"), r.str("new_state")))
	}
	joined := strings.Join(transitions, "\n")
	for _, want := range []string{
		fmt.Sprintf("inet:%d>0 close->listening", port),
		fmt.Sprintf("inet:0>%d close->syn-sent", port),
		fmt.Sprintf("inet:%d>0 listening->close", port),
		"inet6:0>1 close->syn-sent",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in:\n%s", want, joined)
		}
	}
	// The port is picked in connect: none at close -> syn-sent, the
	// socket's at syn-sent -> close (TestFailedConnectFigures checks it
	// is the one getsockname gives).
	last := recs[len(recs)-1]
	if last.str("error") != "ECONNREFUSED" || last.str("daddr") != "::1" || last.str("old_state") != "syn-sent" || last.num("sport") == 0 {
		t.Errorf("refused connect: got %v, want syn-sent -> close with its local port", last)
	}
}

// TestStateDport is the README's first example: a connect attempt to port
// 9092 shows up live in the table, and nothing else does.
func TestStateDport(t *testing.T) {
	ns := testnet.New(t)
	p := start(t, "--state", "syn-sent", "--dport", "9092")
	refuse(t, ns, "127.0.0.1:9092")
	exchange(t, ns, "127.0.0.1:0") // other port: must not show
	p.waitFor(t, "the connect attempt", func(lines []string) bool {
		return len(lines) >= 2
	})
	lines := p.stop(t)
	if !strings.HasPrefix(lines[0], "TIME ") {
		t.Errorf("first line is not the header: %q", lines[0])
	}
	// The stream, then (after a blank line) the failed destinations.
	var footer []string
	for i, l := range lines {
		if l == "" {
			lines, footer = lines[:i], lines[i+1:]
			break
		}
	}
	if len(footer) < 3 || !strings.HasPrefix(footer[0], "CONNECT FAILURES BY DESTINATION") ||
		!strings.Contains(strings.Join(footer, "\n"), "127.0.0.1:9092") {
		t.Errorf("no failed destination 127.0.0.1:9092 at the end: %q", footer)
	}
	found := false
	for _, l := range lines[1:] {
		if !strings.Contains(l, ":9092") || !strings.Contains(l, "-> syn-sent") {
			t.Errorf("line does not match --state syn-sent --dport 9092: %q", l)
		}
		if strings.Contains(l, "127.0.0.1:9092") && strings.Contains(l, "close -> syn-sent") &&
			strings.Contains(l, fmt.Sprint(os.Getpid())) {
			found = true
		}
	}
	if !found {
		t.Errorf("no line for our connect to 127.0.0.1:9092 with our pid:\n%s", strings.Join(lines, "\n"))
	}
	if !strings.Contains(p.stderr.String(), "transitions shown, 0 lost") {
		t.Errorf("no summary on stderr: %q", p.stderr.String())
	}
}

// TestUserSpaceFilters checks filters applied in Go: --dst, --pid, --comm.
func TestUserSpaceFilters(t *testing.T) {
	ns := testnet.New(t)
	self := fmt.Sprint(os.Getpid())
	keep := start(t, "-o", "json", "--dst", "127.0.0.3/32", "--pid", self, "--comm", selfComm())
	none := start(t, "-o", "json", "--dst", "127.0.0.0/8", "--comm", "no-such-comm")
	exchange(t, ns, "127.0.0.2:0")
	exchange(t, ns, "127.0.0.3:0")
	keep.waitFor(t, "the client's 5 transitions to 127.0.0.3", countNetns(ns.Inode, 5))
	time.Sleep(100 * time.Millisecond) // let anything wrong arrive too
	kept := inNetns(parseJSON(t, keep.stop(t)), ns.Inode)
	for _, r := range kept {
		if r.str("daddr") != "127.0.0.3" || int(r.num("pid")) != os.Getpid() {
			t.Errorf("filter let through %v", r)
		}
	}
	if len(kept) != 5 {
		t.Errorf("kept %d records, want the client's 5", len(kept))
	}
	if got := inNetns(parseJSON(t, none.stop(t)), ns.Inode); len(got) != 0 {
		t.Errorf("--comm no-such-comm kept %d records: %v", len(got), got)
	}
}

// TestClosedStdout is `socktrace -o json | head -1`: once the reader is
// gone, socktrace exits 0, promptly.
func TestClosedStdout(t *testing.T) {
	ns := testnet.New(t)
	p := start(t, "-o", "json")
	refuse(t, ns, "127.0.0.1:1")
	p.waitFor(t, "one line", func(l []string) bool { return len(l) >= 1 })
	p.stdout.Close() // what head does after one line
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v; stderr:\n%s", err, p.stderr.String())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("socktrace still running 3s after its stdout was closed")
	}
	if strings.Contains(p.stderr.String(), "panic") {
		t.Errorf("stderr: %s", p.stderr.String())
	}
}

func TestDuration(t *testing.T) {
	testnet.RequireRoot(t)
	begin := time.Now()
	out, err := exec.Command(socktraceBin(t), "--duration", "300ms", "-o", "json", "--dport", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("--duration 300ms ran %v", d)
	}
}

// TestErrors checks that each mistake a user can make ends with status 1
// and a message that says what is wrong and what to do.
func TestErrors(t *testing.T) {
	testnet.RequireRoot(t)
	tests := []struct {
		name string
		args []string
		uid  uint32 // run as this user when not 0
		want []string
	}{
		{"bad state", []string{"--state", "synsent"}, 0, []string{`"synsent"`, "syn-sent", "connected"}},
		{"bad port", []string{"--dport", "70000"}, 0, []string{"--dport", `"70000"`, "0-65535"}},
		{"bad output", []string{"-o", "yaml"}, 0, []string{"--output", "table, json"}},
		{"unknown flag", []string{"--nosuch"}, 0, []string{"unknown flag: --nosuch"}},
		{"positional", []string{"extra"}, 0, []string{"extra"}},
		{"not root", []string{"--duration", "1s"}, 65534, []string{"needs root", "CAP_BPF", "sudo"}},
		{"no btf", []string{"--kernel-btf", "/nonexistent/vmlinux"}, 0, []string{"BTF", "/nonexistent/vmlinux"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(socktraceBin(t), tt.args...)
			if tt.uid != 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tt.uid, Gid: tt.uid}}
			}
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("want exit status 1, got %v; output:\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// refusedWithCookie makes, in ns, a connect to 127.0.0.1:1 (refused)
// and returns its socket's cookie.
func refusedWithCookie(t *testing.T, ns *testnet.NS) uint64 {
	t.Helper()
	var cookie uint64
	ns.Run(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err != nil {
			return fmt.Errorf("SO_COOKIE: %w", err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 1, Addr: [4]byte{127, 0, 0, 1}}); err != unix.ECONNREFUSED {
			return fmt.Errorf("connect to 127.0.0.1:1: %v, want ECONNREFUSED", err)
		}
		return nil
	})
	return cookie
}

// TestReadyAfterEveryHook: socktrace shows nothing, and says it is ready
// (--ready-file), before every hook counts: a client refused over and
// over from before socktrace starts has every close with rst_received,
// a refused connect right after the ready file too. And the ready file
// says a running socktrace: one left by an earlier run goes as socktrace
// starts, and socktrace removes its own when it exits.
func TestReadyAfterEveryHook(t *testing.T) {
	ns := testnet.New(t)
	stop := make(chan struct{})
	looped := make(chan error, 1)
	go func() {
		looped <- ns.Do(func() error {
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				if c, err := net.Dial("tcp4", "127.0.0.1:1"); err == nil {
					c.Close()
					return errors.New("connect to 127.0.0.1:1 succeeded, want refused")
				}
				time.Sleep(time.Millisecond)
			}
		})
	}()
	defer func() {
		close(stop)
		if err := <-looped; err != nil {
			t.Error(err)
		}
	}()
	ready := filepath.Join(t.TempDir(), "ready")
	for run := 1; run <= 3; run++ {
		p := startCmd(t, exec.Command(socktraceBin(t), "-o", "json", "--netns", ns.Path(), "--no-snapshot",
			"--state", "close", "--ready-file", ready), ready, "")
		cookie := refusedWithCookie(t, ns)
		want := fmt.Sprintf(`"cookie":%d,`, cookie)
		p.waitFor(t, "the refused connect made right after the ready file", func(lines []string) bool {
			for _, l := range lines {
				if strings.Contains(l, want) {
					return true
				}
			}
			return false
		})
		lines := p.stop(t)
		if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("run %d: the ready file is still there after socktrace exited (%v): a script would take the next run for ready", run, err)
		}
		refused, without := 0, 0
		for _, r := range parseJSON(t, lines) {
			if r.str("type") != "transition" || r.str("error") != "ECONNREFUSED" {
				continue
			}
			refused++
			if r["rst_received"] != true {
				without++
				if without <= 3 {
					t.Errorf("run %d: refused connect closed without rst_received: %v", run, r)
				}
			}
		}
		if without > 0 {
			t.Errorf("run %d: %d of %d refused connects shown without rst_received: the reset hook was not attached yet", run, without, refused)
		}
		if refused < 2 {
			t.Errorf("run %d: %d refused connects seen, want the loop's and ours", run, refused)
		}
	}

	// A ready file left behind (by a run killed with -9, or anything
	// else) goes as socktrace starts, even when it then fails.
	if err := os.WriteFile(ready, []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(socktraceBin(t), "--netns", ns.Path(), "--ready-file", ready, "-w", "/nonexistent/dir/trace.st").CombinedOutput()
	if err == nil {
		t.Fatalf("socktrace -w /nonexistent/dir/trace.st succeeded:\n%s", out)
	}
	if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a stale ready file is still there after a socktrace that never got ready (%v):\n%s", err, out)
	}
}
