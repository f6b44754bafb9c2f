package gotest

import (
	"strings"
	"testing"
)

// Output of go test -v (Go 1.26) for tests that log, skip and fail.
const output = `=== RUN   TestA
    a_test.go:3: hello
--- PASS: TestA (0.00s)
=== RUN   TestSkip
    a_test.go:4: no feature here
--- SKIP: TestSkip (0.00s)
=== RUN   TestSub
=== RUN   TestSub/one
    a_test.go:6: sub skip reason
=== RUN   TestSub/two
    a_test.go:7: bad thing
        second line
--- FAIL: TestSub (0.00s)
    --- SKIP: TestSub/one (0.00s)
    --- FAIL: TestSub/two (0.00s)
=== RUN   TestF
    a_test.go:9: fatal
--- FAIL: TestF (0.01s)
FAIL
`

func TestParser(t *testing.T) {
	p := NewParser()
	var got []Result
	for _, l := range strings.Split(output, "\n") {
		if r, ok := p.Line(l + "\r"); ok {
			got = append(got, r)
		}
	}
	want := []Result{
		{"TestA", Pass, true, ""},
		{"TestSkip", Skip, true, "no feature here"},
		{"TestSub", Fail, true, ""},
		{"TestSub/one", Skip, false, "sub skip reason"},
		{"TestSub/two", Fail, false, ""},
		{"TestF", Fail, true, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if p.Count(Pass) != 1 || p.Count(Fail) != 2 || p.Count(Skip) != 1 {
		t.Errorf("counts pass %d fail %d skip %d, want 1 2 1", p.Count(Pass), p.Count(Fail), p.Count(Skip))
	}
}
