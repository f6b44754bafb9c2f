package output

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/names"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// otBuffer is a bytes.Buffer with the Flush the writers need.
type otBuffer struct {
	bytes.Buffer
	flushes int
}

func (b *otBuffer) Flush() error { b.flushes++; return nil }

// otFailing fails every write.
type otFailing struct{}

var errOtWrite = errors.New("disk full")

func (otFailing) Write([]byte) (int, error) { return 0, errOtWrite }
func (otFailing) Flush() error              { return nil }

// otTime is a wall-clock time outside UTC, with nanoseconds.
var otTime = time.Date(2024, 3, 1, 12, 34, 56, 789, time.FixedZone("CET", 3600))

const otTimeJSON = "2024-03-01T11:34:56.000000789Z"

// otRecord checks that line is one JSON record: valid, ending in exactly one
// newline, with "type" first, and returns it decoded with exact numbers.
func otRecord(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' {
		t.Fatalf("record does not end in a newline: %q", line)
	}
	if n := bytes.Count(line, []byte("\n")); n != 1 {
		t.Fatalf("record has %d newlines, want 1: %q", n, line)
	}
	if !bytes.HasPrefix(line, []byte(`{"type":"`)) {
		t.Errorf("record does not start with the type: %q", line)
	}
	if !json.Valid(line) {
		t.Fatalf("record is not valid JSON: %q", line)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding %q: %v", line, err)
	}
	if dec.More() {
		t.Fatalf("more than one value in %q", line)
	}
	return m
}

// otCheck compares a decoded record with want, key by key.
func otCheck(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("key %q missing", k)
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%q = %#v (%T), want %#v (%T)", k, g, g, w, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected key %q = %#v", k, g)
		}
	}
}

type num = json.Number

// otPod is a Kubernetes container's identity.
var otPod = &identity.Identity{
	Cgroup:      "/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8899-aabbccddeeff/0123456789abcdef",
	ContainerID: "0123456789abcdef", PodUID: "0f1e2d3c-4b5a-6978-8899-aabbccddeeff",
	Namespace: "shop", Pod: "checkout-7d9f8b6c5-x2x4z", Container: "checkout",
}

// otIdentityJSON is otPod as JSON keys.
const otIdentityJSON = `"cgroup":"/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8899-aabbccddeeff/0123456789abcdef",` +
	`"unit":null,"container_id":"0123456789abcdef","runtime":null,"pod":"checkout-7d9f8b6c5-x2x4z",` +
	`"namespace":"shop","container":"checkout"`

// otNoIdentity is the identity keys of an unknown owner.
var otNoIdentity = map[string]any{"cgroup": nil, "unit": nil, "container_id": nil, "runtime": nil, "pod": nil, "namespace": nil, "container": nil}

// with returns a new map with the keys of both.
func with(a, b map[string]any) map[string]any {
	m := map[string]any{}
	for _, x := range []map[string]any{a, b} {
		for k, v := range x {
			m[k] = v
		}
	}
	return m
}

func otTransition() record.Transition {
	return record.Transition{Transition: events.Transition{
		Time: otTime, Ktime: 123456789012, Cookie: 1<<64 - 1, Netns: 4026531840,
		Family: unix.AF_INET,
		Src:    netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("198.51.100.7"),
		SPort: 40000, DPort: 9092,
		Old: tcpstate.SynSent, New: tcpstate.Close,
		InOld: 1500 * time.Microsecond, InOldKnown: true,
		TaskPID: 0, TaskTID: 0, TaskComm: "swapper/3",
		OwnerKnown: true, OwnerPID: 42, OwnerTID: 43, OwnerComm: "java",
		UID:   1000,
		SkErr: uint16(unix.ECONNREFUSED)}, OwnerID: otPod}
}

func TestJSONTransition(t *testing.T) {
	var buf otBuffer
	j := NewJSON(&buf)
	tr := otTransition()
	if err := j.Transition(&tr); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"transition","time":"` + otTimeJSON + `","ktime_ns":123456789012,` +
		`"cookie":18446744073709551615,"netns":4026531840,"family":"inet",` +
		`"saddr":"192.0.2.10","sport":40000,"daddr":"198.51.100.7","dport":9092,"dns_name":null,"actual_daddr":null,"actual_dport":null,` +
		`"old_state":"syn-sent","new_state":"close","old_state_duration_ns":1500000,` +
		`"pid":42,"tid":43,"comm":"java",` + otIdentityJSON + `,"task_pid":0,"task_tid":0,"task_comm":"swapper/3",` +
		`"uid":1000,"error":"ECONNREFUSED","syn_retransmits":0,` +
		`"bytes_acked":null,"bytes_received":null,"segs_out":null,"segs_in":null,"total_retrans":null,"srtt_us":null,` +
		`"rst_received":false,"rst_sent":false,"lifetime_ns":null,"drops":0,"drop_reason":null,"drop_direction":null}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("Transition wrote\n%s\nwant\n%s", got, want)
	}
	otCheck(t, otRecord(t, buf.Bytes()), map[string]any{
		"type": "transition", "time": otTimeJSON, "ktime_ns": num("123456789012"),
		"cookie": num("18446744073709551615"), "netns": num("4026531840"), "family": "inet",
		"saddr": "192.0.2.10", "sport": num("40000"), "daddr": "198.51.100.7", "dport": num("9092"), "dns_name": nil, "actual_daddr": nil, "actual_dport": nil,
		"old_state": "syn-sent", "new_state": "close", "old_state_duration_ns": num("1500000"),
		"pid": num("42"), "tid": num("43"), "comm": "java",
		"cgroup": otPod.Cgroup, "unit": nil, "container_id": "0123456789abcdef", "runtime": nil,
		"pod": "checkout-7d9f8b6c5-x2x4z", "namespace": "shop", "container": "checkout",
		"task_pid": num("0"), "task_tid": num("0"), "task_comm": "swapper/3",
		"uid": num("1000"), "error": "ECONNREFUSED", "syn_retransmits": num("0"),
		"bytes_acked": nil, "bytes_received": nil, "segs_out": nil, "segs_in": nil, "total_retrans": nil, "srtt_us": nil,
		"rst_received": false, "rst_sent": false, "lifetime_ns": nil,
		"drops": num("0"), "drop_reason": nil, "drop_direction": nil,
	})
	if buf.flushes != 0 {
		t.Errorf("Transition flushed %d times; flushing is the caller's", buf.flushes)
	}
	if err := j.Flush(); err != nil || buf.flushes != 1 {
		t.Errorf("Flush = %v, flushes = %d", err, buf.flushes)
	}
}

func TestJSONTransitionNulls(t *testing.T) {
	tr := otTransition()
	tr.Family = unix.AF_INET6
	tr.Src, tr.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	tr.SPort, tr.DPort = 443, 0
	tr.Old, tr.New = tcpstate.Listen, tcpstate.SynRecv
	tr.InOldKnown, tr.InOld = false, 0
	tr.OwnerKnown, tr.OwnerPID, tr.OwnerTID, tr.OwnerComm, tr.OwnerID = false, 0, 0, "", nil
	tr.SkErr = 0
	tr.Cookie, tr.Ktime, tr.UID = 0, 0, 0
	tr.Time = time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC)
	var buf otBuffer
	if err := NewJSON(&buf).Transition(&tr); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"transition","time":"2024-12-31T23:59:59.000000000Z","ktime_ns":0,` +
		`"cookie":0,"netns":4026531840,"family":"inet6",` +
		`"saddr":"2001:db8::1","sport":443,"daddr":"2001:db8::2","dport":0,"dns_name":null,"actual_daddr":null,"actual_dport":null,` +
		`"old_state":"listening","new_state":"syn-recv","old_state_duration_ns":null,` +
		`"pid":null,"tid":null,"comm":null,"cgroup":null,"unit":null,"container_id":null,"runtime":null,` +
		`"pod":null,"namespace":null,"container":null,"task_pid":0,"task_tid":0,"task_comm":"swapper/3",` +
		`"uid":0,"error":null}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("Transition wrote\n%s\nwant\n%s", got, want)
	}
	otCheck(t, otRecord(t, buf.Bytes()), with(otNoIdentity, map[string]any{
		"type": "transition", "time": "2024-12-31T23:59:59.000000000Z", "ktime_ns": num("0"),
		"cookie": num("0"), "netns": num("4026531840"), "family": "inet6",
		"saddr": "2001:db8::1", "sport": num("443"), "daddr": "2001:db8::2", "dport": num("0"), "dns_name": nil, "actual_daddr": nil, "actual_dport": nil,
		"old_state": "listening", "new_state": "syn-recv", "old_state_duration_ns": nil,
		"pid": nil, "tid": nil, "comm": nil,
		"task_pid": num("0"), "task_tid": num("0"), "task_comm": "swapper/3",
		"uid": num("0"), "error": nil,
	}))
}

func TestJSONTransitionFields(t *testing.T) {
	tests := []struct {
		name   string
		change func(*record.Transition)
		key    string
		want   any
	}{
		{"errno ETIMEDOUT", func(tr *record.Transition) { tr.SkErr = uint16(unix.ETIMEDOUT) }, "error", "ETIMEDOUT"},
		{"errno EHOSTUNREACH", func(tr *record.Transition) { tr.SkErr = uint16(unix.EHOSTUNREACH) }, "error", "EHOSTUNREACH"},
		{"errno ECONNRESET", func(tr *record.Transition) { tr.SkErr = uint16(unix.ECONNRESET) }, "error", "ECONNRESET"},
		{"errno without a name", func(tr *record.Transition) { tr.SkErr = 4000 }, "error", "errno 4000"},
		{"zero duration is known", func(tr *record.Transition) { tr.InOld = 0 }, "old_state_duration_ns", num("0")},
		{"long duration", func(tr *record.Transition) { tr.InOld = 90 * time.Minute }, "old_state_duration_ns", num("5400000000000")},
		{"unknown state", func(tr *record.Transition) { tr.New = 0 }, "new_state", "unknown-0"},
		{"new-syn-recv", func(tr *record.Transition) { tr.Old = tcpstate.NewSynRecv }, "old_state", "new-syn-recv"},
		{"inet6 family", func(tr *record.Transition) { tr.Family = unix.AF_INET6 }, "family", "inet6"},
		{"comm with quotes", func(tr *record.Transition) { tr.OwnerComm = `a"b\c` }, "comm", `a"b\c`},
		{"comm with control", func(tr *record.Transition) { tr.OwnerComm = "a\nb\x00\x1f\x7f" }, "comm", "a\nb\x00\x1f\x7f"},
		{"comm invalid UTF-8", func(tr *record.Transition) { tr.OwnerComm = "j\xffv\xc3" }, "comm", "j\uFFFDv\uFFFD"},
		{"task comm U+2028", func(tr *record.Transition) { tr.TaskComm = "kworker/\u2028" }, "task_comm", "kworker/\u2028"},
		{"empty comm", func(tr *record.Transition) { tr.OwnerComm = "" }, "comm", ""},
		{"max pid", func(tr *record.Transition) { tr.OwnerPID = 1<<32 - 1 }, "pid", num("4294967295")},
		{"max port", func(tr *record.Transition) { tr.DPort = 65535 }, "dport", num("65535")},
		{"a unit", func(tr *record.Transition) {
			tr.OwnerID = &identity.Identity{Cgroup: "/system.slice/payments.service", Unit: "payments.service"}
		}, "unit", "payments.service"},
		{"a pod name with a quote", func(tr *record.Transition) {
			tr.OwnerID = &identity.Identity{Pod: `a"b`, Namespace: "x"}
		}, "pod", `a"b`},
		{"dns name", func(tr *record.Transition) {
			tr.DNS = &dnscache.Origin{Name: "kafka.example.com"}
		}, "dns_name", "kafka.example.com"},
		{"a NAT backend", func(tr *record.Transition) {
			tr.Actual = netip.MustParseAddrPort("10.4.1.81:9092")
		}, "actual_daddr", "10.4.1.81"},
		{"v4-mapped given as v4", func(tr *record.Transition) {
			tr.Family = unix.AF_INET6
			tr.Src = netip.MustParseAddr("10.0.0.1")
		}, "saddr", "10.0.0.1"},
	}
	for _, c := range tests {
		tr := otTransition()
		c.change(&tr)
		var buf otBuffer
		if err := NewJSON(&buf).Transition(&tr); err != nil {
			t.Fatal(err)
		}
		m := otRecord(t, buf.Bytes())
		if got := m[c.key]; !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %q = %#v, want %#v (line %s)", c.name, c.key, got, c.want, buf.Bytes())
		}
		if want := 31 + wireKeys(&tr); len(m) != want {
			t.Errorf("%s: %d keys, want %d", c.name, len(m), want)
		}
	}
}

func TestJSONLost(t *testing.T) {
	var buf otBuffer
	j := NewJSON(&buf)
	if err := j.Lost(3, 10, otTime); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"lost","time":"` + otTimeJSON + `","count":3,"total":10}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("Lost wrote %q, want %q", got, want)
	}
	otCheck(t, otRecord(t, buf.Bytes()), map[string]any{
		"type": "lost", "time": otTimeJSON, "count": num("3"), "total": num("10"),
	})
	buf.Reset()
	if err := j.Lost(1<<64-1, 1<<64-1, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	otCheck(t, otRecord(t, buf.Bytes()), map[string]any{
		"type": "lost", "time": "1970-01-01T00:00:00.000000000Z",
		"count": num("18446744073709551615"), "total": num("18446744073709551615"),
	})
}

func TestJSONSkipped(t *testing.T) {
	var buf otBuffer
	if err := NewJSON(&buf).Skipped(2, 5, otTime); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"skipped","time":"` + otTimeJSON + `","count":2,"total":5}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("Skipped wrote %q, want %q", got, want)
	}
}

func otRow() timeline.Row {
	return timeline.Row{
		Cookie: 99, Netns: 4026531840, Family: unix.AF_INET6,
		Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
		SPort: 443, DPort: 51000, State: tcpstate.Established,
		Preexisting: true, InSnapshot: true,
		Diag: &snapshot.Socket{
			Family: unix.AF_INET6, State: tcpstate.Established,
			Timer: snapshot.TimerKeepalive, Retrans: 2, Expires: 61500 * time.Millisecond,
			RecvQ: 0, SendQ: 517, UID: 33, Inode: 123456, Netns: 4026531840, Cookie: 99,
		},
		OwnerKnown: true, OwnerPID: 7, OwnerComm: "nginx",
		OwnerID: &identity.Identity{Cgroup: "/system.slice/nginx.service", Unit: "nginx.service"},
		Users:   []procs.Owner{{PID: 7, Comm: "nginx", FD: 12}, {PID: 8, Comm: `ng"x`, FD: 3}},
	}
}

func TestJSONSocket(t *testing.T) {
	var buf otBuffer
	r := otRow()
	if err := NewJSON(&buf).Socket(&r, otTime); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"socket","time":"` + otTimeJSON + `","cookie":99,"netns":4026531840,"netns_name":null,` +
		`"family":"inet6","saddr":"2001:db8::1","sport":443,"daddr":"2001:db8::2","dport":51000,"dns_name":null,"actual_daddr":null,"actual_dport":null,` +
		`"state":"established","pid":7,"comm":"nginx",` +
		`"cgroup":"/system.slice/nginx.service","unit":"nginx.service","container_id":null,"runtime":null,"pod":null,"namespace":null,"container":null,` +
		`"users":[{"pid":7,"comm":"nginx","fd":12},{"pid":8,"comm":"ng\"x","fd":3}],` +
		`"uid":33,"inode":123456,"recv_q":0,"send_q":517,"timer":"keepalive",` +
		`"timer_expires_ms":61500,"retrans":2,"preexisting":true,"drops":0,"drop_reason":null,"drop_direction":null}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("Socket wrote\n%s\nwant\n%s", got, want)
	}
	otCheck(t, otRecord(t, buf.Bytes()), map[string]any{
		"type": "socket", "time": otTimeJSON, "cookie": num("99"), "netns": num("4026531840"), "netns_name": nil,
		"family": "inet6", "saddr": "2001:db8::1", "sport": num("443"),
		"daddr": "2001:db8::2", "dport": num("51000"), "dns_name": nil, "actual_daddr": nil, "actual_dport": nil, "state": "established",
		"pid": num("7"), "comm": "nginx",
		"cgroup": "/system.slice/nginx.service", "unit": "nginx.service", "container_id": nil, "runtime": nil,
		"pod": nil, "namespace": nil, "container": nil,
		"users": []any{
			map[string]any{"pid": num("7"), "comm": "nginx", "fd": num("12")},
			map[string]any{"pid": num("8"), "comm": `ng"x`, "fd": num("3")},
		},
		"uid": num("33"), "inode": num("123456"), "recv_q": num("0"), "send_q": num("517"),
		"timer": "keepalive", "timer_expires_ms": num("61500"), "retrans": num("2"),
		"preexisting": true, "drops": num("0"), "drop_reason": nil, "drop_direction": nil,
	})
}

func TestJSONSocketNulls(t *testing.T) {
	r := timeline.Row{
		Cookie: 5, Netns: 1, Family: unix.AF_INET,
		Src: netip.MustParseAddr("0.0.0.0"), Dst: netip.MustParseAddr("0.0.0.0"),
		SPort: 22, State: tcpstate.Listen,
		Diag: &snapshot.Socket{RecvQ: 0, SendQ: 128},
	}
	var buf otBuffer
	if err := NewJSON(&buf).Socket(&r, otTime); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"socket","time":"` + otTimeJSON + `","cookie":5,"netns":1,"netns_name":null,` +
		`"family":"inet","saddr":"0.0.0.0","sport":22,"daddr":"0.0.0.0","dport":0,"dns_name":null,"actual_daddr":null,"actual_dport":null,` +
		`"state":"listening","pid":null,"comm":null,` +
		`"cgroup":null,"unit":null,"container_id":null,"runtime":null,"pod":null,"namespace":null,"container":null,"users":[],` +
		`"uid":0,"inode":0,"recv_q":0,"send_q":128,"timer":null,` +
		`"timer_expires_ms":null,"retrans":0,"preexisting":false,"drops":0,"drop_reason":null,"drop_direction":null}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("Socket wrote\n%s\nwant\n%s", got, want)
	}
	m := otRecord(t, buf.Bytes())
	otCheck(t, m, with(otNoIdentity, map[string]any{
		"type": "socket", "time": otTimeJSON, "cookie": num("5"), "netns": num("1"), "netns_name": nil,
		"family": "inet", "saddr": "0.0.0.0", "sport": num("22"),
		"daddr": "0.0.0.0", "dport": num("0"), "dns_name": nil, "actual_daddr": nil, "actual_dport": nil, "state": "listening",
		"pid": nil, "comm": nil, "users": []any{},
		"uid": num("0"), "inode": num("0"), "recv_q": num("0"), "send_q": num("128"),
		"timer": nil, "timer_expires_ms": nil, "retrans": num("0"),
		"preexisting": false, "drops": num("0"), "drop_reason": nil, "drop_direction": nil,
	}))
}

func TestJSONSocketTimers(t *testing.T) {
	tests := []struct {
		timer   snapshot.Timer
		expires time.Duration
		name    string
		ms      string
	}{
		{snapshot.TimerOn, 208 * time.Millisecond, "on", "208"},
		{snapshot.TimerKeepalive, 2 * time.Hour, "keepalive", "7200000"},
		{snapshot.TimerTimewait, 59999 * time.Millisecond, "timewait", "59999"},
		{snapshot.TimerPersist, 0, "persist", "0"},
		{snapshot.TimerOn, 1500 * time.Microsecond, "on", "1"},
	}
	for _, c := range tests {
		r := otRow()
		r.Diag.Timer, r.Diag.Expires = c.timer, c.expires
		var buf otBuffer
		if err := NewJSON(&buf).Socket(&r, otTime); err != nil {
			t.Fatal(err)
		}
		m := otRecord(t, buf.Bytes())
		if m["timer"] != c.name || m["timer_expires_ms"] != num(c.ms) {
			t.Errorf("timer %v, %v: got %v, %v; want %s, %s", c.timer, c.expires, m["timer"], m["timer_expires_ms"], c.name, c.ms)
		}
	}
}

// TestJSONStream writes records of every kind, long then short, into one
// buffer (the writer reuses its scratch space) and checks each line.
func TestJSONStream(t *testing.T) {
	var buf otBuffer
	j := NewJSON(&buf)
	long := otTransition()
	long.OwnerComm = strings.Repeat("x", 3000) // past the initial buffer
	short := otTransition()
	short.OwnerKnown = false
	row := otRow()
	steps := []func() error{
		func() error { return j.Transition(&long) },
		func() error { return j.Lost(1, 1, otTime) },
		func() error { return j.Socket(&row, otTime) },
		func() error { return j.Transition(&short) },
		func() error { return j.Lost(2, 3, otTime) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	lines := bytes.SplitAfter(buf.Bytes(), []byte("\n"))
	if last := lines[len(lines)-1]; len(last) != 0 {
		t.Fatalf("trailing partial line %q", last)
	}
	lines = lines[:len(lines)-1]
	wantTypes := []string{"transition", "lost", "socket", "transition", "lost"}
	if len(lines) != len(wantTypes) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(wantTypes), buf.Bytes())
	}
	for i, l := range lines {
		m := otRecord(t, l)
		if m["type"] != wantTypes[i] {
			t.Errorf("line %d type %v, want %s", i, m["type"], wantTypes[i])
		}
	}
	if m := otRecord(t, lines[0]); m["comm"] != long.OwnerComm {
		t.Errorf("long comm not kept")
	}
	if m := otRecord(t, lines[3]); m["comm"] != nil || m["pid"] != nil {
		t.Errorf("short record: comm %v pid %v, want null", m["comm"], m["pid"])
	}
	if m := otRecord(t, lines[4]); m["total"] != num("3") {
		t.Errorf("last lost total %v", m["total"])
	}
}

func TestJSONWriteError(t *testing.T) {
	j := NewJSON(otFailing{})
	tr := otTransition()
	row := otRow()
	if err := j.Transition(&tr); !errors.Is(err, errOtWrite) {
		t.Errorf("Transition error = %v, want %v", err, errOtWrite)
	}
	if err := j.Lost(1, 1, otTime); !errors.Is(err, errOtWrite) {
		t.Errorf("Lost error = %v, want %v", err, errOtWrite)
	}
	if err := j.Socket(&row, otTime); !errors.Is(err, errOtWrite) {
		t.Errorf("Socket error = %v, want %v", err, errOtWrite)
	}
}

// otStrings are inputs that a JSON string encoder can get wrong.
var otStrings = []string{
	"",
	"plain",
	`"`,
	`\`,
	`a"b\c`,
	`\"`,
	"\\u0041",
	"/",
	"</script>",
	"a&b<c>d",
	"\x00",
	"\x01\x02\x03\x04\x05\x06\x07",
	"\b\f\n\r\t\v",
	"\x1b[31mred\x1b[0m",
	"\x1f",
	" ",
	"\x7f",
	"é",
	"日本語",
	"😀",
	"\u2028",
	"\u2029",
	"a\u2028b\u2029c",
	"\uFFFD",
	"\uFEFF",
	"\xff",
	"\xfe\xff",
	"\xc3",
	"a\xc3",
	"\xc3(",
	"\xe2\x82",
	"\xe2\x82(",
	"\xf0\x9f\x98",
	"\xed\xa0\x80",         // a UTF-16 surrogate, encoded: invalid UTF-8
	"\xed\xbf\xbf",         // likewise
	"\xc0\xaf",             // overlong '/'
	"\xf4\x90\x80\x80",     // past U+10FFFF
	"\x80",                 // lone continuation byte
	"ok\xffok\x00ok\u2028", // a mix
	"\U0010FFFF",
	"\U00010000",
}

// otJSONRoundTrip is what encoding/json makes of s: marshalled and read back.
func otJSONRoundTrip(t testing.TB, s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal(%q): %v", s, err)
	}
	var back string
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	return back
}

func otCheckAppendString(t testing.TB, s string) {
	out := AppendString(nil, s)
	if !json.Valid(out) {
		t.Fatalf("AppendString(%q) = %s: not valid JSON", s, out)
	}
	if !utf8.Valid(out) {
		t.Fatalf("AppendString(%q) = %q: not valid UTF-8", s, out)
	}
	var got string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("AppendString(%q) = %s: %v", s, out, err)
	}
	if want := otJSONRoundTrip(t, s); got != want {
		t.Fatalf("AppendString(%q) = %s, reads back as %q; encoding/json gives %q", s, out, got, want)
	}
	if utf8.ValidString(s) && got != s {
		t.Fatalf("AppendString(%q) reads back as %q", s, got)
	}
	// Appending keeps what is already in the slice.
	prefix := []byte(`{"k":`)
	out2 := AppendString(append([]byte(nil), prefix...), s)
	if !bytes.Equal(out2, append(prefix, out...)) {
		t.Fatalf("AppendString(%q, %q) = %q", prefix, s, out2)
	}
}

func TestAppendStringRoundTrip(t *testing.T) {
	for _, s := range otStrings {
		otCheckAppendString(t, s)
	}
	// Every single byte, and every byte after a valid prefix.
	for c := 0; c < 256; c++ {
		otCheckAppendString(t, string([]byte{byte(c)}))
		otCheckAppendString(t, "é"+string([]byte{byte(c)})+"x")
	}
}

func TestAppendStringExact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"java", `"java"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"a\nb", `"a\nb"`},
		{"a\tb", `"a\tb"`},
		{"a\rb", `"a\rb"`},
		{"\x00", `"\u0000"`},
		{"\x1f", `"\u001f"`},
		{"\x08", `"\u0008"`},
		{"\x7f", `"\u007f"`},
		{"\xff", `"\ufffd"`},
		{"a\xc3", `"a\ufffd"`},
		{"\xe2\x82", `"\ufffd\ufffd"`},
		{"é", `"é"`},
		{"\u2028", "\"\u2028\""},
		{"\uFFFD", "\"\uFFFD\""},
		{"/", `"/"`},
	}
	for _, c := range tests {
		if got := string(AppendString(nil, c.in)); got != c.want {
			t.Errorf("AppendString(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range otStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		otCheckAppendString(t, s)
	})
}

// otSSTimer is ss's print_ms_timer (misc/ss.c), for timeout > 0.
func otSSTimer(timeout int64) string {
	secs := timeout / 1000
	minutes := secs / 60
	secs %= 60
	msecs := timeout % 1000
	out := ""
	if minutes != 0 {
		msecs = 0
		out = fmt.Sprintf("%dmin", minutes)
		if minutes > 9 {
			secs = 0
		}
	}
	if secs != 0 {
		if secs > 9 {
			msecs = 0
		}
		sep := "sec"
		if msecs != 0 {
			sep = "."
		}
		out += fmt.Sprintf("%d%s", secs, sep)
	}
	if msecs != 0 {
		out += fmt.Sprintf("%03dms", msecs)
	}
	return out
}

func TestFormatTimer(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0ms"},
		{-5 * time.Second, "0ms"},
		{999 * time.Microsecond, "0ms"},
		{1 * ms, "001ms"},
		{5 * ms, "005ms"},
		{42 * ms, "042ms"},
		{208 * ms, "208ms"},
		{999 * ms, "999ms"},
		{1000 * ms, "1sec"},
		{1500 * ms, "1.500ms"},
		{1005 * ms, "1.005ms"},
		{9999 * ms, "9.999ms"},
		{10 * time.Second, "10sec"},
		{10500 * ms, "10sec"},
		{59 * time.Second, "59sec"},
		{59999 * ms, "59sec"},
		{60 * time.Second, "1min"},
		{61500 * ms, "1min1sec"},
		{150 * time.Second, "2min30sec"},
		{9*time.Minute + 59*time.Second, "9min59sec"},
		{10 * time.Minute, "10min"},
		{10*time.Minute + 30*time.Second, "10min"},
		{119 * time.Minute, "119min"},
		{119*time.Minute + 59*time.Second, "119min"},
		{2 * time.Hour, "120min"},
	}
	for _, c := range tests {
		if got := FormatTimer(c.d); got != c.want {
			t.Errorf("FormatTimer(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

// TestFormatTimerLikeSS compares with ss's own algorithm for every
// millisecond up to 11 minutes, and sparsely beyond.
func TestFormatTimerLikeSS(t *testing.T) {
	check := func(ms int64) {
		if got, want := FormatTimer(time.Duration(ms)*time.Millisecond), otSSTimer(ms); got != want {
			t.Fatalf("FormatTimer(%dms) = %q, ss prints %q", ms, got, want)
		}
	}
	for ms := int64(1); ms <= 11*60*1000; ms++ {
		check(ms)
	}
	for ms := int64(11 * 60 * 1000); ms < 48*3600*1000; ms += 997 {
		check(ms)
	}
}

// otTable returns a table writer with port numbers (no /etc/services).
func otTable(errw *bytes.Buffer) (*Table, *otBuffer) {
	var buf otBuffer
	return NewTable(&buf, errw, TableOptions{Numeric: true}), &buf
}

func otTrimRight(s string) string { return strings.TrimRight(s, " ") }

func TestTableTransition(t *testing.T) {
	var errw bytes.Buffer
	tb, buf := otTable(&errw)
	tr := otTransition()
	tr.Cookie = 12345
	if err := tb.Transition(&tr); err != nil {
		t.Fatal(err)
	}
	clock := otTime.Local().Format("15:04:05.000000")
	line1 := otTrimRight(fmt.Sprintf("%s %-10s %-7s %-15s %-28s %-28s %-29s %-9s %s",
		clock, "12345", "42", "java", "192.0.2.10:40000", "198.51.100.7:9092",
		"syn-sent -> close", "1.500", "ECONNREFUSED pod:shop/checkout-7d9f8b6c5-x2x4z/checkout")) + "\n"

	// No owner, no duration, no error, IPv6, port 0.
	tr2 := otTransition()
	tr2.Cookie = 0
	tr2.Family = unix.AF_INET6
	tr2.Src, tr2.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	tr2.SPort, tr2.DPort = 0, 443
	tr2.Old, tr2.New = tcpstate.Close, tcpstate.SynSent
	tr2.OwnerKnown, tr2.InOldKnown, tr2.SkErr = false, false, 0
	if err := tb.Transition(&tr2); err != nil {
		t.Fatal(err)
	}
	line2 := otTrimRight(fmt.Sprintf("%s %-10s %-7s %-15s %-28s %-28s %-29s %-9s",
		clock, "0", "-", "-", "[2001:db8::1]:*", "[2001:db8::2]:443",
		"close -> syn-sent", "-")) + "\n"

	want := tableHeader + line1 + line2
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	for i, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("line %d ends in a space: %q", i, l)
		}
	}
	if errw.Len() != 0 {
		t.Errorf("table wrote to errw: %q", errw.String())
	}
}

func TestTableAlignment(t *testing.T) {
	var errw bytes.Buffer
	tb, buf := otTable(&errw)
	tr := otTransition()
	tr.Cookie = 7
	if err := tb.Transition(&tr); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	header, line := lines[0], lines[1]
	for _, c := range []struct{ col, value string }{
		{"COOKIE", "7"},
		{"PID", "42"},
		{"COMM", "java"},
		{"LOCAL", "192.0.2.10:40000"},
		{"PEER", "198.51.100.7:9092"},
		{"TRANSITION", "syn-sent -> close"},
		{"MS", "1.500"},
		{"ERROR", "ECONNREFUSED"},
	} {
		i := strings.Index(header, c.col)
		if i < 0 {
			t.Fatalf("no %s in header %q", c.col, header)
		}
		if !strings.HasPrefix(line[i:], c.value) {
			t.Errorf("column %s (offset %d) holds %q, want %q", c.col, i, line[i:], c.value)
		}
	}
}

func TestTableServiceNames(t *testing.T) {
	var errw bytes.Buffer
	var buf otBuffer
	tb := NewTable(&buf, &errw, TableOptions{})
	tb.services = names.Services{443: "https", 9092: "XmlIpcRegSvc"}
	tests := []struct {
		a    string
		port uint16
		want string
	}{
		{"192.0.2.1", 443, "192.0.2.1:https"},
		{"192.0.2.1", 9092, "192.0.2.1:XmlIpcRegSvc"},
		{"192.0.2.1", 8443, "192.0.2.1:8443"},
		{"192.0.2.1", 0, "192.0.2.1:*"},
		{"2001:db8::1", 443, "[2001:db8::1]:https"},
		{"::", 0, "[::]:*"},
		{"0.0.0.0", 22, "0.0.0.0:22"},
	}
	for _, c := range tests {
		if got := tb.endpoint(netip.MustParseAddr(c.a), c.port); got != c.want {
			t.Errorf("endpoint(%s, %d) = %q, want %q", c.a, c.port, got, c.want)
		}
	}
	numeric, _ := otTable(&errw)
	if got := numeric.endpoint(netip.MustParseAddr("192.0.2.1"), 443); got != "192.0.2.1:443" {
		t.Errorf("-n endpoint = %q, want 192.0.2.1:443", got)
	}
}

func TestTableLost(t *testing.T) {
	var errw bytes.Buffer
	tb, buf := otTable(&errw)
	if err := tb.Lost(3, 10, otTime); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("Lost wrote to the table: %q", buf.String())
	}
	want := "socktrace: " + otTime.Local().Format("15:04:05.000000") +
		": lost 3 transitions, ring buffer full (10 lost so far): enlarge it with --ring-size or narrow the filter\n"
	if got := errw.String(); got != want {
		t.Errorf("Lost notice %q, want %q", got, want)
	}
}

func TestTableSocket(t *testing.T) {
	var errw bytes.Buffer
	tb, buf := otTable(&errw)
	r := otRow()
	r.Users = r.Users[:1]
	if err := tb.Socket(&r, otTime); err != nil {
		t.Fatal(err)
	}
	line1 := fmt.Sprintf("%-10s %-6s %-6s %-29s %-29s %s\n", "ESTAB", "0", "517",
		"[2001:db8::1]:443", "[2001:db8::2]:51000",
		`users:(("nginx",pid=7,fd=12)) timer:(keepalive,1min1sec,2) uid:33 ino:123456 cookie:99 unit:nginx.service`)

	// Owner known only from BPF (no fd), a listener, no timer, no uid or inode.
	r2 := timeline.Row{
		Cookie: 5, Family: unix.AF_INET,
		Src: netip.MustParseAddr("0.0.0.0"), Dst: netip.MustParseAddr("0.0.0.0"),
		SPort: 22, State: tcpstate.Listen,
		Diag:       &snapshot.Socket{RecvQ: 0, SendQ: 128},
		OwnerKnown: true, OwnerPID: 600, OwnerComm: "sshd",
	}
	if err := tb.Socket(&r2, otTime); err != nil {
		t.Fatal(err)
	}
	line2 := fmt.Sprintf("%-10s %-6s %-6s %-29s %-29s %s\n", "LISTEN", "0", "128",
		"0.0.0.0:22", "0.0.0.0:*", `users:(("sshd",pid=600,fd=-1)) cookie:5`)

	// Nobody known, time-wait.
	r3 := timeline.Row{
		Cookie: 6, Family: unix.AF_INET,
		Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"),
		SPort: 8080, DPort: 40000, State: tcpstate.TimeWait,
		Diag: &snapshot.Socket{Timer: snapshot.TimerTimewait, Expires: 59 * time.Second},
	}
	if err := tb.Socket(&r3, otTime); err != nil {
		t.Fatal(err)
	}
	line3 := fmt.Sprintf("%-10s %-6s %-6s %-29s %-29s %s\n", "TIME-WAIT", "0", "0",
		"127.0.0.1:8080", "127.0.0.1:40000", `timer:(timewait,59sec,0) cookie:6`)

	want := socketHeader + line1 + line2 + line3
	if got := buf.String(); got != want {
		t.Errorf("sockets:\n%s\nwant:\n%s", got, want)
	}
}

func TestSSStateNames(t *testing.T) {
	want := map[tcpstate.State]string{
		tcpstate.Established: "ESTAB", tcpstate.SynSent: "SYN-SENT", tcpstate.SynRecv: "SYN-RECV",
		tcpstate.FinWait1: "FIN-WAIT-1", tcpstate.FinWait2: "FIN-WAIT-2", tcpstate.TimeWait: "TIME-WAIT",
		tcpstate.Close: "UNCONN", tcpstate.CloseWait: "CLOSE-WAIT", tcpstate.LastAck: "LAST-ACK",
		tcpstate.Listen: "LISTEN", tcpstate.Closing: "CLOSING", tcpstate.NewSynRecv: "SYN-RECV",
	}
	for _, s := range tcpstate.All.States() {
		var errw bytes.Buffer
		tb, buf := otTable(&errw)
		r := timeline.Row{State: s, Family: unix.AF_INET,
			Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2")}
		if err := tb.Socket(&r, otTime); err != nil {
			t.Fatal(err)
		}
		line := strings.TrimPrefix(buf.String(), socketHeader)
		if got := strings.Fields(line)[0]; got != want[s] {
			t.Errorf("state %v shows as %q, want %q", s, got, want[s])
		}
	}
}

func TestFormats(t *testing.T) {
	if !reflect.DeepEqual(Formats, []string{"table", "json"}) {
		t.Errorf("Formats = %q", Formats)
	}
}

// wireKeys is how many of the wire fields a transition carries.
func wireKeys(tr *record.Transition) int {
	n := 0
	if tr.Old == tcpstate.SynSent && (tr.New == tcpstate.Close || tr.New == tcpstate.Established) {
		n++ // syn_retransmits
	}
	if tr.Old == tcpstate.SynSent && tr.New == tcpstate.Established {
		n++ // srtt_us
	}
	if tr.New == tcpstate.Close {
		n += 12 // bytes_acked ... lifetime_ns, drops, drop_reason, drop_direction
	}
	return n
}
