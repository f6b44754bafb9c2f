package smoke

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testcgroup"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestIdentity: the binary names the container of a socket's owner, live
// (the cgroup id the BPF program records) and in --once (the owner's
// /proc/PID/cgroup). This test process itself moves into a cgroup named
// as docker names its containers.
func TestIdentity(t *testing.T) {
	testnet.RequireRoot(t)
	id := strings.Repeat("d0", 32)
	testcgroup.New(t, "/system.slice/docker-"+id+".scope").Join(t)

	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(binary, "--duration", "3s", "-o", "json", "--ready-file", ready)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socktrace wrote no ready file in 30s\nstderr:\n%s", stderr.String())
		}
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
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

	// Listed: the listener, owned by this process, in the container.
	once := exec.Command(binary, "--once", "-o", "json", "--container", id[:12], "--state", "listening")
	out, err := once.Output()
	if err != nil {
		t.Fatalf("--once: %v", err)
	}
	if !identified(t, out, "socket", port, id) {
		t.Errorf("--once --container %s: no listener on port %d in container %s:\n%s", id[:12], port, id, out)
	}
	if err := waitWithin(cmd, time.Minute); err != nil {
		t.Fatalf("socktrace: %v\nstderr:\n%s", err, stderr.String())
	}
	if !identified(t, stdout.Bytes(), "transition", port, id) {
		t.Errorf("no transition of port %d in container %s:\n%s", port, id, stdout.String())
	}
}

// identified says whether out holds a record of type typ on port
// (local or peer) whose owner is in docker container id.
func identified(t *testing.T, out []byte, typ string, port int, id string) bool {
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var r struct {
			Type        string  `json:"type"`
			Sport       int     `json:"sport"`
			Dport       int     `json:"dport"`
			ContainerID *string `json:"container_id"`
			Runtime     *string `json:"runtime"`
		}
		if len(line) == 0 {
			continue
		}
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("bad JSON %q: %v", line, err)
		}
		if r.Type == typ && (r.Sport == port || r.Dport == port) && r.ContainerID != nil && *r.ContainerID == id &&
			r.Runtime != nil && *r.Runtime == "docker" {
			return true
		}
	}
	return false
}
