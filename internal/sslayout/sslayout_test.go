package sslayout

import (
	"bytes"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// text turns an example written as in the spec (cat -A: '$' ends a line, so
// trailing blanks are visible, and ^I is a TAB) into the bytes ss prints.
func text(s string) string {
	s = strings.TrimPrefix(s, "\n")
	return strings.ReplaceAll(strings.ReplaceAll(s, "$\n", "\n"), "^I", "\t")
}

func v4(s string) string { return Addr(syscall.AF_INET, netip.MustParseAddr(s), -1, "") }
func v6(s string, v6only int8) string {
	return Addr(syscall.AF_INET6, netip.MustParseAddr(s), v6only, "")
}
func port(p uint16) string { return Port(p, "") }

// The spec's test population (§ header): listeners, three ESTAB pairs, one
// TIME-WAIT.
var (
	l22    = Row{"LISTEN", 0, 128, v4("127.0.0.1"), v4("0.0.0.0"), port(22), port(0), ""}
	l8080  = Row{"LISTEN", 0, 128, v4("0.0.0.0"), v4("0.0.0.0"), port(8080), port(0), ""}
	l80    = Row{"LISTEN", 0, 128, v6("::", 1), v6("::", 1), port(80), port(0), ""}
	l443   = Row{"LISTEN", 0, 128, v6("::1", 1), v6("::", 1), port(443), port(0), ""}
	l5000  = Row{"LISTEN", 0, 128, v6("::", 0), v6("::", 0), port(5000), port(0), ""}
	e40002 = Row{"ESTAB", 0, 0, v4("127.0.0.1"), v4("127.0.0.1"), port(40002), port(5000), ""}
	e22    = Row{"ESTAB", 100, 0, v4("127.0.0.1"), v4("127.0.0.1"), port(22), port(40000), ""}
	e40000 = Row{"ESTAB", 0, 0, v4("127.0.0.1"), v4("127.0.0.1"), port(40000), port(22), ""}
	tw     = Row{"TIME-WAIT", 0, 0, v4("127.0.0.1"), v4("127.0.0.1"), port(40003), port(8080), ""}
	e443   = Row{"ESTAB", 0, 0, v6("::1", -1), v6("::1", -1), port(443), port(40001), ""}
	e5000  = Row{"ESTAB", 0, 0, v6("127.0.0.1", -1), v6("127.0.0.1", -1), port(5000), port(40002), ""}
	e40001 = Row{"ESTAB", 0, 0, v6("::1", -1), v6("::1", -1), port(40001), port(443), ""}

	listeners = []Row{l22, l8080, l80, l443, l5000}
	estab     = []Row{e40002, e22, e40000, e443, e5000, e40001}
)

func with(r Row, ext string) Row { r.Ext = ext; return r }

var keepalive = Timer("keepalive", 117*time.Minute+20*time.Second, 0)

// Every complete output example of the spec, from the same field values.
var renderTests = []struct {
	name  string
	c     Columns
	rows  []Row
	width int
	want  string
}{
	{"ss -tln", Columns{true, true}, listeners, 0, `
State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess$
LISTEN 0      128        127.0.0.1:22        0.0.0.0:*          $
LISTEN 0      128          0.0.0.0:8080      0.0.0.0:*          $
LISTEN 0      128             [::]:80           [::]:*          $
LISTEN 0      128            [::1]:443          [::]:*          $
LISTEN 0      128                *:5000            *:*          $
`},
	{"ss -tlnH", Columns{true, false}, listeners, 0, `
LISTEN 0      128    127.0.0.1:22   0.0.0.0:*$
LISTEN 0      128      0.0.0.0:8080 0.0.0.0:*$
LISTEN 0      128         [::]:80      [::]:*$
LISTEN 0      128        [::1]:443     [::]:*$
LISTEN 0      128            *:5000       *:*$
`},
	{"ss -tn state established", Columns{false, true}, estab, 0, `
Recv-Q Send-Q      Local Address:Port        Peer Address:Port Process$
0      0               127.0.0.1:40002          127.0.0.1:5000        $
100    0               127.0.0.1:22             127.0.0.1:40000       $
0      0               127.0.0.1:40000          127.0.0.1:22          $
0      0                   [::1]:443                [::1]:40001       $
0      0      [::ffff:127.0.0.1]:5000  [::ffff:127.0.0.1]:40002       $
0      0                   [::1]:40001              [::1]:443         $
`},
	{"ss -tno dport = :22: the last token is not measured", Columns{true, true}, []Row{with(e40000, keepalive)}, 0, `
State Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess$
ESTAB 0      0          127.0.0.1:40000    127.0.0.1:22   timer:(keepalive,117min,0)$
`},
	{"ss -tno, timer row last", Columns{true, true}, []Row{e22, with(e40000, keepalive)}, 0, `
State Recv-Q Send-Q Local Address:Port  Peer Address:Port Process$
ESTAB 100    0          127.0.0.1:22       127.0.0.1:40000       $
ESTAB 0      0          127.0.0.1:40000    127.0.0.1:22    timer:(keepalive,117min,0)$
`},
	{"ss -tno, timer row first", Columns{true, true}, []Row{
		{"ESTAB", 0, 0, "127.0.0.1", "127.0.0.1", "53040", "22", Timer("keepalive", 116*time.Minute, 0)},
		{"ESTAB", 100, 0, "127.0.0.1", "127.0.0.1", "22", "53040", ""}}, 0, `
State Recv-Q Send-Q Local Address:Port  Peer Address:Port Process                    $
ESTAB 0      0          127.0.0.1:53040    127.0.0.1:22    timer:(keepalive,116min,0)$
ESTAB 100    0          127.0.0.1:22       127.0.0.1:53040                           $
`},
	{"ss -tan", Columns{true, true}, []Row{l22, l8080, e40002, e22, e40000, tw, l80, l443, l5000, e443, e5000, e40001}, 0, `
State     Recv-Q Send-Q      Local Address:Port        Peer Address:Port Process$
LISTEN    0      128             127.0.0.1:22               0.0.0.0:*           $
LISTEN    0      128               0.0.0.0:8080             0.0.0.0:*           $
ESTAB     0      0               127.0.0.1:40002          127.0.0.1:5000        $
ESTAB     100    0               127.0.0.1:22             127.0.0.1:40000       $
ESTAB     0      0               127.0.0.1:40000          127.0.0.1:22          $
TIME-WAIT 0      0               127.0.0.1:40003          127.0.0.1:8080        $
LISTEN    0      128                  [::]:80                  [::]:*           $
LISTEN    0      128                 [::1]:443                 [::]:*           $
LISTEN    0      128                     *:5000                   *:*           $
ESTAB     0      0                   [::1]:443                [::1]:40001       $
ESTAB     0      0      [::ffff:127.0.0.1]:5000  [::ffff:127.0.0.1]:40002       $
ESTAB     0      0                   [::1]:40001              [::1]:443         $
`},
	{"ss -tnH", Columns{true, false}, estab, 0, `
ESTAB 0      0               127.0.0.1:40002          127.0.0.1:5000 $
ESTAB 100    0               127.0.0.1:22             127.0.0.1:40000$
ESTAB 0      0               127.0.0.1:40000          127.0.0.1:22   $
ESTAB 0      0                   [::1]:443                [::1]:40001$
ESTAB 0      0      [::ffff:127.0.0.1]:5000  [::ffff:127.0.0.1]:40002$
ESTAB 0      0                   [::1]:40001              [::1]:443  $
`},
	{"ss -Htan 'sport = :22 or ( sport = :5000 and dport = :40002 )'", Columns{true, false}, []Row{l22, e22, e5000}, 0, `
LISTEN 0      128             127.0.0.1:22              0.0.0.0:*    $
ESTAB  100    0               127.0.0.1:22            127.0.0.1:40000$
ESTAB  0      0      [::ffff:127.0.0.1]:5000 [::ffff:127.0.0.1]:40002$
`},
	{"ss -tlnp", Columns{true, true}, []Row{
		with(l22, Users([]Owner{{"python3", 13327, 3}})), with(l8080, Users([]Owner{{"python3", 13327, 4}})),
		with(l80, Users([]Owner{{"python3", 13327, 5}})), with(l443, Users([]Owner{{"python3", 13327, 7}})),
		with(l5000, Users([]Owner{{"python3", 13327, 6}}))}, 0, `
State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess                            $
LISTEN 0      128        127.0.0.1:22        0.0.0.0:*    users:(("python3",pid=13327,fd=3))$
LISTEN 0      128          0.0.0.0:8080      0.0.0.0:*    users:(("python3",pid=13327,fd=4))$
LISTEN 0      128             [::]:80           [::]:*    users:(("python3",pid=13327,fd=5))$
LISTEN 0      128            [::1]:443          [::]:*    users:(("python3",pid=13327,fd=7))$
LISTEN 0      128                *:5000            *:*    users:(("python3",pid=13327,fd=6))$
`},
	{"ss -tnm sport = :22: Ext over two lines", Columns{true, true},
		[]Row{with(e22, "\n\t skmem:(r932,rb131072,t0,tb3939840,f3164,w0,o0,bl0,d0)")}, 0, `
State Recv-Q Send-Q Local Address:Port Peer Address:Port Process$
ESTAB 100    0          127.0.0.1:22      127.0.0.1:40000$
^I skmem:(r932,rb131072,t0,tb3939840,f3164,w0,o0,bl0,d0)$
`},
	{"ss -tln on 80 columns", Columns{true, true}, []Row{l22, l8080}, 80, `
State    Recv-Q   Send-Q     Local Address:Port     Peer Address:Port  Process  $
LISTEN   0        128            127.0.0.1:22            0.0.0.0:*              $
LISTEN   0        128              0.0.0.0:8080          0.0.0.0:*              $
`},
	{"ss -tln on 50 columns: two screen lines", Columns{true, true}, []Row{l22, l8080}, 50, `
State    Recv-Q   Send-Q     Local Address:Port            Peer Address:Port        Process         $
LISTEN   0        128            127.0.0.1:22                   0.0.0.0:*                           $
LISTEN   0        128              0.0.0.0:8080                 0.0.0.0:*                           $
`},
	{"empty, header", Columns{true, true}, nil, 0, `
State Recv-Q Send-Q Local Address:Port Peer Address:PortProcess$
`},
	{"empty, header, one state", Columns{false, true}, nil, 0, `
Recv-Q Send-Q Local Address:Port Peer Address:PortProcess$
`},
	{"empty, -H: nothing", Columns{true, false}, nil, 0, ``},
	{"empty, -H, terminal: nothing", Columns{true, false}, nil, 80, ``},
}

func TestRender(t *testing.T) {
	for _, tt := range renderTests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Render(&b, tt.c, tt.rows, tt.width); err != nil {
				t.Fatal(err)
			}
			if want := text(tt.want); b.String() != want {
				t.Errorf("got\n%s\nwant\n%s", strings.ReplaceAll(b.String(), "\n", "$\n"), strings.ReplaceAll(want, "\n", "$\n"))
			}
		})
	}
}

// The -tnO -m -e example is the second line of the output (its header
// omitted from the spec).
func TestRenderOneline(t *testing.T) {
	var b bytes.Buffer
	ext := " ino:398521 sk:36ace cgroup:unreachable:1 <-> skmem:(r932,rb131072,t0,tb3939840,f3164,w0,o0,bl0,d0)"
	Render(&b, Columns{true, true}, []Row{with(e22, ext)}, 0)
	want := "ESTAB 100    0          127.0.0.1:22      127.0.0.1:40000" + ext + "\n"
	if got := strings.SplitAfterN(b.String(), "\n", 2)[1]; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A queue above 2^31-1 prints negative, as ss's %-6d of an int.
func TestRenderQueues(t *testing.T) {
	var b bytes.Buffer
	Render(&b, Columns{false, false}, []Row{{"ESTAB", 1<<32 - 1, 1234567, "a", "b", "1", "2", ""}}, 0)
	if want := "-1     1234567 a:1 b:2\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// In a terminal, a column wider than the screen is cut to it and the
// columns are grouped into screen lines, each filled to the screen width.
func TestRenderNarrowTerminal(t *testing.T) {
	var b bytes.Buffer
	Render(&b, Columns{true, false}, []Row{with(l22, " "+strings.Repeat("x", 30))}, 20)
	// Measured widths 6 7 7 11 2 9 1 31, Ext cut to 20. Screen lines:
	// State..Send-Q (20, exact); Local+LPort (13, Peer would make 22: +7 =
	// 3+3+1 from the right); Peer+PPort (10, Ext would make 30: +5 each);
	// Ext (20, exact). Ext's token is longer than its width: no padding.
	want := "LISTEN 0      128       127.0.0.1:22          0.0.0.0:*      " + strings.Repeat("x", 30) + "\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// ss renders its buffer when a line starts with 5 chunks of 1 MiB opened:
// the lines so far are printed with the widths measured so far, the later
// ones at least as wide.
func TestRenderBatches(t *testing.T) {
	ext := " " + strings.Repeat("x", 1000)
	var rows []Row
	for i := range 5000 {
		p := "1000"
		if i > 3940 {
			p = "10000"
		}
		rows = append(rows, Row{"ESTAB", 0, 0, "127.0.0.1", "127.0.0.1", p, "9", ext})
	}
	var b bytes.Buffer
	Render(&b, Columns{true, false}, rows, 0)
	lines := strings.Split(b.String(), "\n")
	// A row takes 9 2-byte lengths and 6+6+6+10+4+10+2+1002 bytes of
	// tokens (odd lengths rounded up), 1064 in all. A chunk has 1048560
	// bytes: the first holds rows 0-984 and row 985 up to its Ext, which
	// moves to the next chunk; chunks 2 to 4 then hold 984 rows each, so
	// row 3940's Ext opens chunk 5 and the buffer is rendered before row
	// 3941. The first batch does not see the 5-digit ports.
	for i, p := range map[int]string{0: "1000", 3940: "1000", 3941: "10000", 4999: "10000"} {
		if want := "ESTAB 0      0      127.0.0.1:" + p + " 127.0.0.1:9" + ext; lines[i] != want {
			t.Errorf("line %d: got %.50q, want %.50q", i, lines[i], want)
		}
	}
}
