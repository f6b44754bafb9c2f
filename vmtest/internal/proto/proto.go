// Package proto is the contract between the vmtest harness on the host and
// its /init inside the VM: the plan the harness writes into the initramfs,
// and the marker lines the init prints on the serial console for the
// harness to read back.
//
// Markers are single lines that start with Prefix, followed by a kind and
// key=value fields; values are quoted with strconv.Quote when they need it.
// The kernel may print in the middle of a line on the console, so a marker
// is recognised wherever Prefix appears in a line.
package proto

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// PlanPath is where the init finds the plan in the initramfs.
const PlanPath = "/vmtest/plan.json"

// Plan tells the init what to do.
type Plan struct {
	// Modules are paths of kernel modules (uncompressed), in load order.
	Modules []string `json:"modules"`
	// Tests are run one after the other.
	Tests []Test `json:"tests"`
}

// Test is one test binary to run.
type Test struct {
	Name    string   `json:"name"` // short name, e.g. "events"
	Path    string   `json:"path"` // the binary
	Args    []string `json:"args"`
	Env     []string `json:"env"`     // added to the base environment
	Dir     string   `json:"dir"`     // working directory
	Timeout int      `json:"timeout"` // seconds; 0: none
}

// Prefix starts every marker line.
const Prefix = "@@vmtest "

// Marker kinds.
const (
	KindBoot   = "boot"   // the init runs: release=, uptime=
	KindModule = "module" // a module was loaded: name=, err= when it failed
	KindError  = "error"  // setup failed: msg=
	KindBegin  = "begin"  // a test binary starts: test=
	KindFail   = "fail"   // a test failed: test=, name=
	KindSkip   = "skip"   // a test skipped: test=, name=, reason=
	KindEnd    = "end"    // a test binary ended: test=, exit=, passed=, failed=, skipped=, secs=
	KindDone   = "done"   // everything ran: uptime=; the VM powers off next
)

// Marker is one parsed marker line.
type Marker struct {
	Kind   string
	Fields map[string]string
}

// Get returns a field, or "".
func (m Marker) Get(k string) string { return m.Fields[k] }

// Int returns a field as an int, or 0.
func (m Marker) Int(k string) int {
	n, _ := strconv.Atoi(m.Fields[k])
	return n
}

// Float returns a field as a float64, or 0.
func (m Marker) Float(k string) float64 {
	f, _ := strconv.ParseFloat(m.Fields[k], 64)
	return f
}

// Format renders a marker line (with its newline). kv alternates keys and
// values; values are printed with %v.
func Format(kind string, kv ...any) string {
	var b strings.Builder
	b.WriteString(Prefix)
	b.WriteString(kind)
	for i := 0; i+1 < len(kv); i += 2 {
		v := fmt.Sprint(kv[i+1])
		b.WriteByte(' ')
		fmt.Fprint(&b, kv[i])
		b.WriteByte('=')
		b.WriteString(quote(v))
	}
	b.WriteByte('\n')
	return b.String()
}

func quote(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\"\\=") || strconv.Quote(v) != `"`+v+`"` {
		return strconv.Quote(v)
	}
	return v
}

// Parse finds a marker in a console line.
func Parse(line string) (Marker, bool) {
	i := strings.Index(line, Prefix)
	if i < 0 {
		return Marker{}, false
	}
	rest := strings.TrimRight(line[i+len(Prefix):], "\r\n")
	kind, rest, _ := strings.Cut(rest, " ")
	if kind == "" {
		return Marker{}, false
	}
	m := Marker{Kind: kind, Fields: map[string]string{}}
	for {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" {
			return m, true
		}
		k, v, ok := strings.Cut(rest, "=")
		if !ok || k == "" || strings.Contains(k, " ") {
			return m, true // garbage after the fields: keep what was read
		}
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return m, true
			}
			m.Fields[k], _ = strconv.Unquote(q)
			rest = v[len(q):]
		} else {
			val, r, _ := strings.Cut(v, " ")
			m.Fields[k] = val
			rest = r
		}
	}
}

// String renders m as Format would, fields sorted.
func (m Marker) String() string {
	keys := make([]string, 0, len(m.Fields))
	for k := range m.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kv := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		kv = append(kv, k, m.Fields[k])
	}
	return strings.TrimSuffix(Format(m.Kind, kv...), "\n")
}
