// Package privs tells which Linux capabilities the process has, and which
// of those socktrace needs for what are missing, so that a run without
// them says so instead of quietly showing less.
//
// What needs what (Linux 5.8+, measured on 6.18 as uid 65534 holding only
// the capabilities named):
//
//   - Trace: loading and attaching the tracing program, reading its ring
//     buffer, maps and run statistics (the recursion-miss counter) need
//     CAP_BPF and CAP_PERFMON; CAP_SYS_ADMIN stands in for both. Since
//     5.11 BPF memory is charged to the memory cgroup, so RLIMIT_MEMLOCK
//     and CAP_SYS_RESOURCE do not matter.
//   - Owners: the processes holding a socket are found in /proc/PID/fd.
//     For another user's process that directory is mode 0500, so listing
//     it needs CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE), and reading its
//     links needs ptrace read access: CAP_SYS_PTRACE. Without either the
//     socket shows no owner.
//   - Netns: listing the sockets of a namespace other than socktrace's own
//     means entering it (setns), which needs CAP_SYS_ADMIN.
//   - AllNetns (--netns all): entering every namespace needs CAP_SYS_ADMIN
//     (socktrace enters its own too); finding the namespaces of other
//     users' processes through /proc/PID/ns/net needs CAP_SYS_PTRACE, and
//     those held open only by another user's file descriptor need
//     CAP_DAC_READ_SEARCH as well. Namespaces named under /run/netns need
//     nothing more.
//
// Listing socktrace's own namespace (sock_diag) needs no capability.
// Asking conntrack for NAT backends (ctnetlink) needs CAP_NET_ADMIN;
// without it they are not shown (package nat says so once).
package privs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Cap is a capability number (linux/capability.h).
type Cap uint8

// The capabilities socktrace may need, or that stand in for them.
const (
	DacOverride   Cap = 1
	DacReadSearch Cap = 2
	NetAdmin      Cap = 12
	SysPtrace     Cap = 19
	SysAdmin      Cap = 21
	SysResource   Cap = 24
	Perfmon       Cap = 38
	BPF           Cap = 39
)

var capNames = map[Cap]string{
	DacOverride:   "CAP_DAC_OVERRIDE",
	DacReadSearch: "CAP_DAC_READ_SEARCH",
	NetAdmin:      "CAP_NET_ADMIN",
	SysPtrace:     "CAP_SYS_PTRACE",
	SysAdmin:      "CAP_SYS_ADMIN",
	SysResource:   "CAP_SYS_RESOURCE",
	Perfmon:       "CAP_PERFMON",
	BPF:           "CAP_BPF",
}

// String is the capability's name, e.g. CAP_BPF.
func (c Cap) String() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return "capability " + strconv.Itoa(int(c))
}

// Set is a set of capabilities, as /proc/PID/status shows them.
type Set uint64

// Of returns the set of caps.
func Of(caps ...Cap) Set {
	var s Set
	for _, c := range caps {
		s |= 1 << c
	}
	return s
}

// All is every capability: what root has.
const All = ^Set(0)

// Has says whether c is in s.
func (s Set) Has(c Cap) bool { return s&(1<<c) != 0 }

// Parse reads a set in the hexadecimal form of /proc/PID/status
// ("000001ffffffffff").
func Parse(hex string) (Set, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("bad capability set %q: %w", hex, err)
	}
	return Set(v), nil
}

// ParseStatus returns the effective set (CapEff) of a /proc/PID/status.
func ParseStatus(r io.Reader) (Set, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return Parse(v)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line")
}

// Effective returns the process's effective capabilities.
func Effective() (Set, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s, err := ParseStatus(f)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/status: %w", err)
	}
	return s, nil
}

// Purpose is something socktrace does that needs capabilities.
type Purpose uint8

// The purposes, as the package documentation describes them.
const (
	Trace    Purpose = iota + 1 // load and attach the BPF program (every live run)
	Owners                      // find the owners of other users' sockets (the listing, summaries)
	Netns                       // list the sockets of another namespace (--netns PATH)
	AllNetns                    // list the sockets of every namespace (--netns all)
)

// need is one capability a purpose needs, and what happens without it.
type need struct {
	purpose Purpose
	cap     Cap
	or      Cap // another capability that does as well; 0 if none
	fatal   bool
	effect  string
}

var needs = []need{
	{Trace, BPF, SysAdmin, true, "the BPF program cannot be loaded"},
	{Trace, Perfmon, SysAdmin, true, "the BPF program cannot be loaded"},
	{Owners, SysPtrace, 0, false, "sockets of other users' processes show no owner"},
	{Owners, DacReadSearch, DacOverride, false, "sockets of other users' processes show no owner"},
	{Netns, SysAdmin, 0, true, "the sockets of another network namespace cannot be listed (entering it is refused)"},
	{AllNetns, SysAdmin, 0, true, "--netns all cannot list any namespace (entering them is refused)"},
	{AllNetns, SysPtrace, 0, false, "network namespaces that only other users' processes are in are not listed"},
	{AllNetns, DacReadSearch, DacOverride, false, "network namespaces held open only by other users' file descriptors are not listed"},
}

// Lack is a capability missing for a purpose.
type Lack struct {
	Cap     Cap
	Purpose Purpose
	// Fatal: socktrace cannot do Purpose at all without Cap (it fails),
	// rather than do it partly.
	Fatal  bool
	Effect string // what happens without it
}

// Lacks lists what s lacks for the purposes, in the order of the table
// above; a capability missing for two purposes appears twice.
func (s Set) Lacks(purposes ...Purpose) []Lack {
	var out []Lack
	for _, n := range needs {
		if !wanted(n.purpose, purposes) || s.Has(n.cap) || (n.or != 0 && s.Has(n.or)) {
			continue
		}
		out = append(out, Lack{Cap: n.cap, Purpose: n.purpose, Fatal: n.fatal, Effect: n.effect})
	}
	return out
}

func wanted(p Purpose, ps []Purpose) bool {
	for _, q := range ps {
		if p == q {
			return true
		}
	}
	return false
}

// Missing returns the names of the capabilities s lacks for the
// purposes, each once.
func (s Set) Missing(purposes ...Purpose) []string {
	var out []string
	for _, l := range s.Lacks(purposes...) {
		if n := l.Cap.String(); !contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Warnings returns one line per capability s lacks for the purposes,
// saying what happens without it, e.g. "socktrace: without
// CAP_SYS_PTRACE, sockets of other users' processes show no owner".
func (s Set) Warnings(purposes ...Purpose) []string {
	var caps []Cap
	effects := map[Cap][]string{}
	for _, l := range s.Lacks(purposes...) {
		if _, ok := effects[l.Cap]; !ok {
			caps = append(caps, l.Cap)
		}
		if !contains(effects[l.Cap], l.Effect) {
			effects[l.Cap] = append(effects[l.Cap], l.Effect)
		}
	}
	var out []string
	for _, c := range caps {
		out = append(out, fmt.Sprintf("socktrace: without %s, %s (run as root, or grant %s)",
			c, strings.Join(effects[c], ", and "), c))
	}
	return out
}

// Missing returns the names of the capabilities this process lacks for
// the purposes; nil if it has them all, or if it cannot tell.
func Missing(purposes ...Purpose) []string {
	s, err := Effective()
	if err != nil {
		return nil
	}
	return s.Missing(purposes...)
}

// Warn writes to w one line per capability this process lacks for the
// purposes (nothing if it cannot tell), and says whether it wrote any.
// Call it at start-up with what the run will do, e.g.
// Warn(os.Stderr, privs.Owners, privs.AllNetns) for --once --netns all.
func Warn(w io.Writer, purposes ...Purpose) bool {
	s, err := Effective()
	if err != nil {
		return false
	}
	lines := s.Warnings(purposes...)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return len(lines) > 0
}

// ErrMissing is what Require's errors wrap.
var ErrMissing = errors.New("missing capability")

// Require returns an error naming the capabilities this process lacks
// that the purposes cannot do without (Fatal ones), nil if none or if it
// cannot tell. Missing ones that only make the output partial are for
// Warn.
func Require(purposes ...Purpose) error {
	s, err := Effective()
	if err != nil {
		return nil
	}
	return s.Require(purposes...)
}

// Require is the package's Require for the set s.
func (s Set) Require(purposes ...Purpose) error {
	var names, effects []string
	for _, l := range s.Lacks(purposes...) {
		if !l.Fatal {
			continue
		}
		if n := l.Cap.String(); !contains(names, n) {
			names = append(names, n)
		}
		if !contains(effects, l.Effect) {
			effects = append(effects, l.Effect)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("%w: without %s, %s: run it as root (sudo), or grant it %s (setcap, systemd AmbientCapabilities)",
		ErrMissing, Join(names), strings.Join(effects, ", and "), Join(names))
}

// Join lists names in English: "A", "A and B", "A, B and C".
func Join(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
