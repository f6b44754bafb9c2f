package proto

import (
	"testing"
)

func TestRoundTrip(t *testing.T) {
	line := Format(KindSkip, "test", "events", "name", "TestX/a b", "reason", `needs "x" = y`, "n", 3)
	m, ok := Parse("[   12.345] garbage " + line)
	if !ok {
		t.Fatalf("no marker in %q", line)
	}
	if m.Kind != KindSkip || m.Get("test") != "events" || m.Get("name") != "TestX/a b" ||
		m.Get("reason") != `needs "x" = y` || m.Int("n") != 3 {
		t.Fatalf("parsed %+v from %q", m, line)
	}
	if got := m.String(); got != `@@vmtest skip n=3 name="TestX/a b" reason="needs \"x\" = y" test=events` {
		t.Errorf("String() = %s", got)
	}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		line string
		ok   bool
		kind string
		f    map[string]string
	}{
		{"plain console output", false, "", nil},
		{"@@vmtest end test=events exit=0 secs=1.5\r\n", true, KindEnd, map[string]string{"test": "events", "exit": "0", "secs": "1.5"}},
		{"@@vmtest done", true, KindDone, map[string]string{}},
		{"@@vmtest ", false, "", nil},
		{`@@vmtest error msg="unterminated`, true, KindError, map[string]string{}},
		{`@@vmtest begin test=x junk`, true, KindBegin, map[string]string{"test": "x"}},
		{`@@vmtest module name="" err=`, true, KindModule, map[string]string{"name": "", "err": ""}},
	} {
		m, ok := Parse(tt.line)
		if ok != tt.ok {
			t.Errorf("%q: ok=%v, want %v", tt.line, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		if m.Kind != tt.kind || len(m.Fields) != len(tt.f) {
			t.Errorf("%q: got %+v, want kind %s fields %v", tt.line, m, tt.kind, tt.f)
			continue
		}
		for k, v := range tt.f {
			if m.Fields[k] != v {
				t.Errorf("%q: %s=%q, want %q", tt.line, k, m.Fields[k], v)
			}
		}
	}
	if m, _ := Parse("@@vmtest end secs=2.25 exit=x"); m.Float("secs") != 2.25 || m.Int("exit") != 0 || m.Int("missing") != 0 {
		t.Errorf("numbers: %+v", m)
	}
}
