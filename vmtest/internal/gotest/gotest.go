// Package gotest follows the output of a Go test binary run with -test.v,
// line by line, and reports each test's result as it is printed.
package gotest

import (
	"regexp"
	"strings"
)

// Status is a test's outcome.
type Status string

// Outcomes as go test prints them.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Result is one test's outcome.
type Result struct {
	Name   string // TestX or TestX/sub
	Status Status
	Top    bool   // a top-level test, not a subtest
	Reason string // for Skip: the last line the test logged (its skip message)
}

var (
	resultRe = regexp.MustCompile(`^(\s*)--- (PASS|FAIL|SKIP): (\S+) \(`)
	startRe  = regexp.MustCompile(`^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)`)
	logRe    = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)$`)
)

// Parser follows one binary's output.
type Parser struct {
	current string
	logs    map[string]string
	counts  map[Status]int
}

// NewParser returns a Parser.
func NewParser() *Parser {
	return &Parser{logs: map[string]string{}, counts: map[Status]int{}}
}

// Line reads one line (without its newline) and returns the result it
// prints, if it is a result line.
func (p *Parser) Line(line string) (Result, bool) {
	line = strings.TrimRight(line, "\r")
	if m := startRe.FindStringSubmatch(line); m != nil {
		p.current = m[1]
		return Result{}, false
	}
	if m := resultRe.FindStringSubmatch(line); m != nil {
		r := Result{Name: m[3], Status: Status(m[2]), Top: m[1] == ""}
		if r.Status == Skip {
			r.Reason = p.logs[r.Name]
		}
		delete(p.logs, r.Name)
		if r.Top {
			p.counts[r.Status]++
		}
		return r, true
	}
	if m := logRe.FindStringSubmatch(line); m != nil && p.current != "" {
		p.logs[p.current] = m[1]
	}
	return Result{}, false
}

// Count returns how many top-level tests ended with s so far.
func (p *Parser) Count(s Status) int { return p.counts[s] }
