package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// evilComm is what a hostile process may call itself: it would clear the
// operator's terminal, turn it red, and start a forged line.
const evilComm = "\x1b[2J\x1b[31mEV\nIL"

// TestEscapedNames: a process whose name holds escape sequences and a
// newline connects; every text output shows the name escaped, and JSON
// faithfully.
func TestEscapedNames(t *testing.T) {
	ns := testnet.New(t)
	port := listen(t, ns)
	// The kernel names a process after the file it runs: a copy of bash
	// under that name, holding a connection open with its /dev/tcp.
	bash, err := exec.LookPath("bash")
	if err != nil {
		testnet.Skip(t, "needs bash")
	}
	evil := filepath.Join(t.TempDir(), evilComm)
	in, err := os.ReadFile(bash)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(evil, in, 0o755); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--no-snapshot", "-n", "--netns", ns.Path())
	script := "exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(port) + "; read -t 10 <&3"
	cmd := exec.Command("nsenter", "--net="+ns.Path(), evil, "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	escaped := `\x1b[2J\x1b[31mEV\nIL`
	p.waitFor(t, "the connect of the process with the hostile name", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, escaped) && strings.Contains(l, "syn-sent") {
				return true
			}
		}
		return false
	})
	once, err := exec.Command(socktraceBin(t), "--once", "--netns", ns.Path(), "dport = :"+strconv.Itoa(port)).Output()
	if err != nil {
		t.Fatal(err)
	}
	ssOut, err := exec.Command("nsenter", "--net="+ns.Path(), socktraceBin(t), "ss", "-tnp", "dport = :"+strconv.Itoa(port)).Output()
	if err != nil {
		t.Fatal(err)
	}
	jsonOut, err := exec.Command(socktraceBin(t), "--once", "-o", "json", "--netns", ns.Path(), "dport = :"+strconv.Itoa(port)).Output()
	if err != nil {
		t.Fatal(err)
	}
	stream := strings.Join(p.stop(t), "\n")
	for name, out := range map[string]string{"the stream": stream, "--once": string(once), "ss -p": string(ssOut)} {
		if !strings.Contains(out, escaped) {
			t.Errorf("%s does not show the name escaped (%s):\n%s", name, escaped, out)
		}
		if strings.ContainsAny(out, "\x1b") || strings.Contains(out, "EV\nIL") {
			t.Errorf("%s holds the raw name:\n%q", name, out)
		}
	}
	// JSON keeps the name as it is, escaped the JSON way.
	if !bytes.Contains(jsonOut, []byte(`"comm":"\u001b[2J\u001b[31mEV\nIL"`)) {
		t.Errorf("--once -o json does not hold the name faithfully:\n%s", jsonOut)
	}
}
