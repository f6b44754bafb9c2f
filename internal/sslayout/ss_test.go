package sslayout

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// parse reads rows back from ss's own output: whitespace separates the
// fields up to the peer port, the rest of the line is Ext (whose items all
// start with one blank), and lines starting with a TAB continue it (-i, -m).
// Ext's trailing blanks are taken as padding.
func parse(t *testing.T, out string, c Columns) []Row {
	t.Helper()
	if out == "" {
		return nil
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if c.Header {
		lines = lines[1:]
	}
	var rows []Row
	for _, l := range lines {
		if strings.HasPrefix(l, "\t") {
			rows[len(rows)-1].Ext += "\n" + strings.TrimRight(l, " ")
			continue
		}
		f, rest := fields(l, 4+btoi(c.State))
		var r Row
		if c.State {
			r.State, f = f[0], f[1:]
		}
		rq, err1 := strconv.ParseInt(f[0], 10, 32)
		wq, err2 := strconv.ParseInt(f[1], 10, 32)
		i, j := strings.LastIndexByte(f[2], ':'), strings.LastIndexByte(f[3], ':')
		if err1 != nil || err2 != nil || i < 0 || j < 0 {
			t.Fatalf("cannot parse %q in\n%s", l, out)
		}
		r.RecvQ, r.SendQ = uint32(rq), uint32(wq)
		r.Local, r.LPort, r.Peer, r.PPort = f[2][:i], f[2][i+1:], f[3][:j], f[3][j+1:]
		if rest = strings.Trim(rest, " "); rest != "" {
			r.Ext = " " + rest
		}
		rows = append(rows, r)
	}
	return rows
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fields splits n blank-separated fields off l and returns the rest.
func fields(l string, n int) ([]string, string) {
	var f []string
	for range n {
		l = strings.TrimLeft(l, " ")
		i := strings.IndexByte(l, ' ')
		if i < 0 {
			i = len(l)
		}
		f, l = append(f, l[:i]), l[i:]
	}
	return f, l
}

// TestSS re-renders the installed ss's output from the rows read back from
// it, byte for byte, for whatever sockets the network namespace has (run it
// with `ip netns exec` in a populated one). Terminal widths are checked with
// script(1) on a pseudo-terminal. SSLAYOUT_SS=1 makes it fail rather than
// skip when ss is not 6.1.
func TestSS(t *testing.T) {
	if v, _ := exec.Command("ss", "-V").Output(); !bytes.Contains(v, []byte("iproute2-6.1.0")) {
		if os.Getenv("SSLAYOUT_SS") != "" {
			t.Fatalf("ss -V: %q, want iproute2-6.1.0", v)
		}
		t.Skip("needs ss from iproute2 6.1")
	}
	_, err := exec.LookPath("script")
	tty := err == nil && !testing.Short()
	for _, args := range []string{"-tan", "-tanH", "-tln", "-tlnH", "-tlnp", "-ta", "-tanoe", "-tanp",
		"-tn state established", "-tnH state established", "-tn state syn-sent", "-tnH state syn-sent",
		"-tani", "-tanm", "-tanimO", "-tanm --inet-sockopt", "-tanHie"} {
		c := Columns{State: !strings.Contains(args, "state"), Header: !strings.Contains(args, "H")}
		widths := []int{0}
		if tty {
			widths = append(widths, 300, 132, 80, 50, 33, 20, 7)
		}
		for _, width := range widths {
			var out []byte
			if width == 0 {
				out, err = exec.Command("ss", strings.Fields(args)...).Output()
			} else {
				out, err = exec.Command("script", "-qec", fmt.Sprintf("stty cols %d; ss %s 2>/dev/null", width, args), "/dev/null").Output()
				out = bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n"))
			}
			if err != nil {
				t.Fatalf("ss %s (width %d): %v", args, width, err)
			}
			var got bytes.Buffer
			if err := Render(&got, c, parse(t, string(out), c), width); err != nil {
				t.Fatal(err)
			}
			if got.String() != string(out) {
				want, got := strings.SplitAfter(string(out), "\n"), strings.SplitAfter(got.String(), "\n")
				i := 0
				for i < min(len(got), len(want)) && got[i] == want[i] {
					i++
				}
				t.Errorf("ss %s, width %d: line %d differs (of %d):\nss:     %q\nRender: %q",
					args, width, i+1, len(want), want[min(i, len(want)-1)], got[min(i, len(got)-1)])
			}
		}
	}
}
