package privs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// CapEff values as /proc/PID/status shows them, taken on Linux 6.18 from
// processes started with setpriv.
const (
	effRoot         = "000001fffeffffff" // root in a sandbox without CAP_SYS_RESOURCE
	effNone         = "0000000000000000"
	effBPFPerfmon   = "000000c000000000"
	effLeastTrace   = "000000c000080004" // BPF, PERFMON, SYS_PTRACE, DAC_READ_SEARCH
	effLeastAllNS   = "0000000000280004" // SYS_ADMIN, SYS_PTRACE, DAC_READ_SEARCH
	effPtraceDacOvr = "0000000000080002" // SYS_PTRACE, DAC_OVERRIDE
)

func mustParse(t *testing.T, hex string) Set {
	t.Helper()
	s, err := Parse(hex)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParse(t *testing.T) {
	s := mustParse(t, effLeastTrace)
	if want := Of(BPF, Perfmon, SysPtrace, DacReadSearch); s != want {
		t.Errorf("Parse(%s) = %x, want %x", effLeastTrace, s, want)
	}
	if s.Has(SysAdmin) || !s.Has(BPF) {
		t.Errorf("Has is wrong for %x", s)
	}
	if _, err := Parse("zz"); err == nil {
		t.Error("Parse(zz) did not fail")
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tsocktrace\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t000000c000000000\n" +
		"CapEff:\t000000c000000000\nCapBnd:\t000000c000000000\nCapAmb:\t000000c000000000\nNoNewPrivs:\t0\n"
	s, err := ParseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if s != Of(BPF, Perfmon) {
		t.Errorf("got %x, want CAP_BPF and CAP_PERFMON", s)
	}
	if _, err := ParseStatus(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("no CapEff: no error")
	}
}

func TestEffective(t *testing.T) {
	if _, err := Effective(); err != nil {
		t.Fatal(err)
	}
}

func TestMissing(t *testing.T) {
	all := []Purpose{Trace, Owners, AllNetns}
	tests := []struct {
		eff      string
		purposes []Purpose
		want     []string
	}{
		{effRoot, all, nil},
		{effNone, []Purpose{Trace}, []string{"CAP_BPF", "CAP_PERFMON"}},
		{effNone, all, []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN"}},
		{effBPFPerfmon, []Purpose{Trace}, nil},
		{effBPFPerfmon, []Purpose{Trace, Owners}, []string{"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}},
		{effLeastTrace, []Purpose{Trace, Owners}, nil},
		{effLeastTrace, []Purpose{Netns}, []string{"CAP_SYS_ADMIN"}},
		// CAP_SYS_ADMIN does for CAP_BPF and CAP_PERFMON, not for the rest.
		{effLeastAllNS, all, nil},
		{"0000000000200000", all, []string{"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}},
		// CAP_DAC_OVERRIDE does for CAP_DAC_READ_SEARCH.
		{effPtraceDacOvr, []Purpose{Owners}, nil},
		{"0000000000080000", []Purpose{Owners}, []string{"CAP_DAC_READ_SEARCH"}},
		{"0000000000000004", []Purpose{Owners}, []string{"CAP_SYS_PTRACE"}},
		{effNone, nil, nil},
	}
	for _, tt := range tests {
		got := mustParse(t, tt.eff).Missing(tt.purposes...)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("CapEff %s, purposes %v: missing %q, want %q", tt.eff, tt.purposes, got, tt.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	got := mustParse(t, effBPFPerfmon).Warnings(Owners, AllNetns)
	want := []string{
		"socktrace: without CAP_SYS_PTRACE, sockets of other users' processes show no owner, and network namespaces that only other users' processes are in are not listed (run as root, or grant CAP_SYS_PTRACE)",
		"socktrace: without CAP_DAC_READ_SEARCH, sockets of other users' processes show no owner, and network namespaces held open only by other users' file descriptors are not listed (run as root, or grant CAP_DAC_READ_SEARCH)",
		"socktrace: without CAP_SYS_ADMIN, --netns all cannot list any namespace (entering them is refused) (run as root, or grant CAP_SYS_ADMIN)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if w := mustParse(t, effRoot).Warnings(Trace, Owners, Netns, AllNetns); len(w) != 0 {
		t.Errorf("root is warned: %q", w)
	}
}

func TestRequire(t *testing.T) {
	if err := mustParse(t, effLeastTrace).Require(Trace, Owners); err != nil {
		t.Errorf("least set for tracing: %v", err)
	}
	// Owners only degrade: not an error.
	if err := mustParse(t, effBPFPerfmon).Require(Trace, Owners); err != nil {
		t.Errorf("without the owner capabilities: %v", err)
	}
	err := mustParse(t, effLeastTrace).Require(Netns)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "without CAP_SYS_ADMIN,") || !strings.Contains(err.Error(), "sudo") {
		t.Errorf("--netns PATH without CAP_SYS_ADMIN: %v", err)
	}
	err = mustParse(t, effNone).Require(Trace)
	if err == nil || !strings.Contains(err.Error(), "without CAP_BPF and CAP_PERFMON, the BPF program cannot be loaded:") {
		t.Errorf("no capabilities: %v", err)
	}
}

func TestNames(t *testing.T) {
	for c, want := range map[Cap]string{BPF: "CAP_BPF", Perfmon: "CAP_PERFMON", SysAdmin: "CAP_SYS_ADMIN",
		SysPtrace: "CAP_SYS_PTRACE", DacReadSearch: "CAP_DAC_READ_SEARCH", 3: "capability 3"} {
		if c.String() != want {
			t.Errorf("Cap(%d) = %q, want %q", c, c.String(), want)
		}
	}
	for n, want := range map[int]string{0: "", 1: "A", 2: "A and B", 3: "A, B and C"} {
		if got := Join([]string{"A", "B", "C"}[:n]); got != want {
			t.Errorf("Join of %d = %q, want %q", n, got, want)
		}
	}
}
