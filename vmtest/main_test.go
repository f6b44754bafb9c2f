package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/vmtest/internal/proto"
)

func plan(names ...string) proto.Plan {
	var p proto.Plan
	for _, n := range names {
		p.Tests = append(p.Tests, proto.Test{Name: n})
	}
	return p
}

func feed(t *testing.T, p proto.Plan, lines ...string) *vmResult {
	t.Helper()
	res := &vmResult{}
	c := newConsole(res, p, time.Now(), func(string) {})
	for _, l := range lines {
		c.line(l + "\r")
	}
	return res
}

func TestConsolePass(t *testing.T) {
	res := feed(t, plan("events", "smoke"),
		"SeaBIOS (version 1.16.2)",
		"[    0.000000] Linux version 6.1.0-56-cloud-amd64",
		proto.Format(proto.KindModule, "name", "inet_diag"),
		proto.Format(proto.KindBoot, "release", "6.1.0-56-cloud-amd64", "uptime", "2.50"),
		proto.Format(proto.KindBegin, "test", "events"),
		"=== RUN   TestLifecycle",
		"--- PASS: TestLifecycle (1.00s)",
		proto.Format(proto.KindSkip, "test", "events", "name", "TestCookieHelper", "reason", "no helper"),
		proto.Format(proto.KindEnd, "test", "events", "exit", 0, "passed", 11, "failed", 0, "skipped", 1, "secs", "9.50"),
		// The kernel may print into a marker's line.
		"[   12.1] random: crng init done"+proto.Format(proto.KindBegin, "test", "smoke"),
		proto.Format(proto.KindEnd, "test", "smoke", "exit", 0, "passed", 2, "failed", 0, "skipped", 0, "secs", "3"),
		proto.Format(proto.KindDone, "uptime", "20.00"),
	)
	if !res.pass() || res.result() != "PASS" {
		t.Fatalf("result %s, want PASS: %+v", res.result(), res)
	}
	if res.Release != "6.1.0-56-cloud-amd64" || !res.Booted {
		t.Errorf("release %q booted %v", res.Release, res.Booted)
	}
	if p, f, s := res.count(); p != 13 || f != 0 || s != 1 {
		t.Errorf("counts %d/%d/%d, want 13/0/1", p, f, s)
	}
	ev := res.Tests[0]
	if len(ev.Skips) != 1 || ev.Skips[0] != (skip{"TestCookieHelper", "no helper"}) {
		t.Errorf("skips %+v", ev.Skips)
	}
	if len(ev.output) != 2 || ev.output[1] != "--- PASS: TestLifecycle (1.00s)" {
		t.Errorf("events output %q", ev.output)
	}
}

func TestConsoleFailures(t *testing.T) {
	boot := proto.Format(proto.KindBoot, "release", "5.10.0-46-cloud-amd64")
	for _, tt := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"no boot", []string{"Kernel panic - not syncing: VFS: Unable to mount root fs"}, "NO BOOT"},
		{"crash mid-test", []string{boot, proto.Format(proto.KindBegin, "test", "a")}, "CRASHED"},
		{"failed test", []string{boot,
			proto.Format(proto.KindBegin, "test", "a"),
			proto.Format(proto.KindFail, "test", "a", "name", "TestX"),
			proto.Format(proto.KindEnd, "test", "a", "exit", 1, "passed", 3, "failed", 1),
			proto.Format(proto.KindBegin, "test", "b"),
			proto.Format(proto.KindEnd, "test", "b", "exit", 0, "passed", 1),
			proto.Format(proto.KindDone)}, "FAIL"},
		{"binary not run", []string{boot,
			proto.Format(proto.KindBegin, "test", "a"),
			proto.Format(proto.KindEnd, "test", "a", "exit", 0, "passed", 3),
			proto.Format(proto.KindDone)}, "FAIL"},
		{"exit without failed test", []string{boot,
			proto.Format(proto.KindBegin, "test", "a"),
			proto.Format(proto.KindEnd, "test", "a", "exit", 2, "passed", 3),
			proto.Format(proto.KindBegin, "test", "b"),
			proto.Format(proto.KindEnd, "test", "b", "exit", 0, "passed", 1),
			proto.Format(proto.KindDone)}, "FAIL"},
		{"module failed", []string{
			proto.Format(proto.KindModule, "name", "tcp_diag", "err", "exec format error"), boot,
			proto.Format(proto.KindBegin, "test", "a"),
			proto.Format(proto.KindEnd, "test", "a", "exit", 0, "passed", 3),
			proto.Format(proto.KindBegin, "test", "b"),
			proto.Format(proto.KindEnd, "test", "b", "exit", 0, "passed", 1),
			proto.Format(proto.KindDone)}, "FAIL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := feed(t, plan("a", "b"), tt.lines...)
			if got := res.result(); got != tt.want || res.pass() {
				t.Errorf("result %s (pass %v), want %s", got, res.pass(), tt.want)
			}
		})
	}
	res := feed(t, plan("a"), boot)
	res.TimedOut = true
	if res.result() != "TIMEOUT" {
		t.Errorf("timed out: %s", res.result())
	}
}

func TestReport(t *testing.T) {
	ok := feed(t, plan("events"),
		proto.Format(proto.KindBoot, "release", "6.12.118+deb13-cloud-amd64"),
		proto.Format(proto.KindBegin, "test", "events"),
		proto.Format(proto.KindEnd, "test", "events", "exit", 0, "passed", 12, "secs", "10"),
		proto.Format(proto.KindDone))
	bad := feed(t, plan("events"),
		proto.Format(proto.KindBoot, "release", "5.10.0-46-cloud-amd64"),
		proto.Format(proto.KindBegin, "test", "events"),
		"    tracer_test.go:263: peer 0.0.0.0:0, want 127.0.0.1:1",
		proto.Format(proto.KindFail, "test", "events", "name", "TestLifecycle"),
		proto.Format(proto.KindEnd, "test", "events", "exit", 1, "passed", 10, "failed", 1),
		proto.Format(proto.KindDone))
	runs := []*kernelRun{
		{k: &Kernel{Series: allSeries[0]}, res: bad},
		{k: &Kernel{Series: allSeries[2]}, res: ok},
	}
	var b bytes.Buffer
	report(&b, vmConfig{accel: "tcg", cpus: 2, memMiB: 1024}, runs, time.Minute)
	out := b.String()
	for _, want := range []string{
		"--- 5.10: events failed (exit 1): TestLifecycle",
		"    tracer_test.go:263: peer 0.0.0.0:0, want 127.0.0.1:1",
		"5.10    5.10.0-46-cloud-amd64",
		"FAIL 1/11",
		"ok 12 10.0s",
		"\nvmtest: 22 passed, 1 failed, 0 skipped\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
