// Package smoke runs the real socktrace binary, as a user would, and checks
// its JSON output against TCP traffic the test makes on loopback.
//
// The binary is $SOCKTRACE_BIN (the vmtest harness puts a static build in
// its VMs); without it, the test builds ./cmd/socktrace with go build.
package smoke

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// record holds the fields of socktrace's JSON records the test reads.
type record struct {
	Type   string  `json:"type"`
	Cookie uint64  `json:"cookie"`
	Saddr  string  `json:"saddr"`
	Sport  uint16  `json:"sport"`
	Daddr  string  `json:"daddr"`
	Dport  uint16  `json:"dport"`
	State  string  `json:"state"`
	Old    string  `json:"old_state"`
	New    string  `json:"new_state"`
	PID    *uint32 `json:"pid"`
	Comm   *string `json:"comm"`
	Error  *string `json:"error"`
}

func (r record) String() string {
	pid := "-"
	if r.PID != nil {
		pid = fmt.Sprint(*r.PID)
	}
	if r.Type == "transition" {
		return fmt.Sprintf("%s %s:%d -> %s:%d %s -> %s pid=%s cookie=%d", r.Type, r.Saddr, r.Sport, r.Daddr, r.Dport, r.Old, r.New, pid, r.Cookie)
	}
	return fmt.Sprintf("%s %s:%d -> %s:%d %s pid=%s cookie=%d", r.Type, r.Saddr, r.Sport, r.Daddr, r.Dport, r.State, pid, r.Cookie)
}

var binary string // path of socktrace, set by TestMain

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	binary = os.Getenv("SOCKTRACE_BIN")
	if binary == "" && os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "socktrace-smoke-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "socktrace")
		cmd := exec.Command("go", "build", "-o", binary, "github.com/socktrace/socktrace/cmd/socktrace")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build socktrace (or set SOCKTRACE_BIN): %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// socktrace runs the binary with args to completion and returns its records.
func socktrace(t *testing.T, args ...string) []record {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runWithin(cmd, time.Minute); err != nil {
		t.Fatalf("socktrace %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return parse(t, stdout.Bytes())
}

func runWithin(cmd *exec.Cmd, limit time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	return waitWithin(cmd, limit)
}

func waitWithin(cmd *exec.Cmd, limit time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("still running after %v: killed", limit)
	}
}

func parse(t *testing.T, out []byte) []record {
	t.Helper()
	var recs []record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("output line is not JSON (%v): %s", err, sc.Text())
		}
		if r.Type == "" {
			t.Fatalf("record without a type: %s", sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

func dump(recs []record) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString("  " + r.String() + "\n")
	}
	return b.String()
}

// TestOnce lists sockets with --once -o json: a listener and both ends of a
// connection the test holds must be there, with their owner.
func TestOnce(t *testing.T) {
	testnet.RequireRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	cport := uint16(c.LocalAddr().(*net.TCPAddr).Port)

	recs := socktrace(t, "--once", "-o", "json", "-n")
	want := map[string]bool{"listening": false, "established client": false, "established server": false}
	for _, r := range recs {
		if r.Type != "socket" {
			t.Errorf("--once printed a %q record", r.Type)
			continue
		}
		var which string
		switch {
		case r.State == "listening" && r.Sport == port:
			which = "listening"
		case r.State == "established" && r.Sport == cport && r.Dport == port:
			which = "established client"
		case r.State == "established" && r.Sport == port && r.Dport == cport:
			which = "established server"
		default:
			continue
		}
		want[which] = true
		if r.Saddr != "127.0.0.1" {
			t.Errorf("%s: local address %s, want 127.0.0.1", which, r.Saddr)
		}
		if r.PID == nil || *r.PID != uint32(os.Getpid()) {
			t.Errorf("%s: owner %v, want pid %d", which, r.PID, os.Getpid())
		}
		if r.Cookie == 0 {
			t.Errorf("%s: cookie 0; sock_diag always gives one", which)
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("no %s socket on port %d in the list:\n%s", k, port, dump(recs))
		}
	}
}

// TestTrace runs a short trace (--duration 2s -o json) while the test makes
// a loopback connection and a refused one, and checks that every
// transition of the three sockets and of the refused attempt is there.
func TestTrace(t *testing.T) {
	testnet.RequireRoot(t)
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(binary, "--duration", "2s", "-o", "json", "-n", "--ready-file", ready)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("socktrace wrote no ready file in 30s\nstderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	port, cport := exchange(t)
	refused := refuse(t)
	if err := waitWithin(cmd, time.Minute); err != nil {
		t.Fatalf("socktrace: %v\nstderr:\n%s", err, stderr.String())
	}
	recs := parse(t, stdout.Bytes())

	type step struct{ old, new string }
	var got []step
	var mine []record
	pid := uint32(os.Getpid())
	for _, r := range recs {
		if r.Type != "transition" {
			continue
		}
		if r.Sport != port && r.Dport != port && r.Dport != refused {
			continue
		}
		mine = append(mine, r)
		got = append(got, step{r.Old, r.New})
		if (r.Old == "close" && (r.New == "syn-sent" || r.New == "listening")) && (r.PID == nil || *r.PID != pid) {
			t.Errorf("%s: owner %v, want pid %d", r, r.PID, pid)
		}
		if r.Dport == refused && r.New == "close" && (r.Error == nil || *r.Error != "ECONNREFUSED") {
			t.Errorf("%s: error %v, want ECONNREFUSED", r, r.Error)
		}
		if r.Sport == cport && r.Dport == port && r.Saddr != "127.0.0.1" {
			t.Errorf("%s: local address %s, want 127.0.0.1", r, r.Saddr)
		}
	}
	want := []step{
		// listener
		{"close", "listening"}, {"listening", "close"},
		// client, which closes first
		{"close", "syn-sent"}, {"syn-sent", "established"}, {"established", "fin-wait-1"},
		{"fin-wait-1", "fin-wait-2"}, {"fin-wait-2", "close"},
		// accepted socket
		{"listening", "syn-recv"}, {"syn-recv", "established"}, {"established", "close-wait"},
		{"close-wait", "last-ack"}, {"last-ack", "close"},
		// refused attempt
		{"close", "syn-sent"}, {"syn-sent", "close"},
	}
	count := map[step]int{}
	for _, s := range got {
		count[s]++
	}
	for _, s := range want {
		count[s]--
	}
	for s, n := range count {
		if n != 0 {
			t.Errorf("transition %s -> %s: %+d against what the traffic makes", s.old, s.new, n)
		}
	}
	if t.Failed() {
		t.Logf("transitions on ports %d and %d:\n%s\nstderr:\n%s", port, refused, dump(mine), stderr.String())
	}
}

// exchange makes one connection on loopback, client closing first, and
// waits for every socket to close. It returns the server and client ports.
func exchange(t *testing.T) (port, cport uint16) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read: want EOF, got %v", err)
	}
	s.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port), uint16(c.LocalAddr().(*net.TCPAddr).Port)
}

// refuse connects to a loopback port nobody listens on and returns it.
func refuse(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		c.Close()
		t.Fatalf("connect to closed port %d succeeded", port)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to closed port %d: %v, want ECONNREFUSED", port, err)
	}
	return port
}

// TestAgent runs socktrace agent: healthy, and its connect counters and
// live-socket gauges right on this kernel.
func TestAgent(t *testing.T) {
	testnet.RequireRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(binary, "agent", "--listen", addr, "--ready-file", ready, "--reconcile-every", "1s")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent wrote no ready file in 30s\nstderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v\nstderr:\n%s", path, err, stderr.String())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	refused := refuse(t)
	refuse2 := fmt.Sprintf(`socktrace_connect_attempts_total{comm="smoke.test",daddr="127.0.0.1",dport="%d",netns="host",outcome="refused"} 1`, refused)
	port, _ := exchange(t)
	established := fmt.Sprintf(`socktrace_connect_attempts_total{comm="smoke.test",daddr="127.0.0.1",dport="%d",netns="host",outcome="established"} 1`, port)
	var body string
	for deadline = time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, body = get("/metrics")
		if strings.Contains(body, refuse2) && strings.Contains(body, established) && strings.Contains(body, "socktrace_reconciliations_total") {
			break
		}
	}
	for _, want := range []string{refuse2, established, `socktrace_up{attach="`, `socktrace_sockets{state="listening"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in /metrics", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s\nstderr:\n%s", body, stderr.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := waitWithin(cmd, 10*time.Second); err != nil {
		t.Errorf("agent after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
	}
}
