package filter

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Expr is a parsed ss-style filter expression, such as
//
//	dport = :9092 and ( state syn-sent or state syn-recv )
//
// It is matched in Go against transitions and snapshot rows alike.
type Expr interface {
	Match(s *Subject) bool
	// String renders the expression in a canonical form that ParseExpr
	// reads back to the same meaning.
	String() string
}

// SyntaxError tells where an expression went wrong.
type SyntaxError struct {
	Input string // the expression as given (arguments joined by spaces)
	Pos   int    // byte offset of the offending token in Input
	Token string // the offending token; "" at the end of the input
	Msg   string
}

func (e *SyntaxError) Error() string {
	width := len(e.Token)
	if width == 0 {
		width = 1
	}
	return fmt.Sprintf("bad filter expression: %s\n  %s\n  %s%s",
		e.Msg, e.Input, strings.Repeat(" ", e.Pos), strings.Repeat("^", width))
}

// ParseExpr parses the expression made of args joined by spaces, the way
// ss reads its arguments. No arguments give a nil Expr (match all).
//
// Grammar, loosest first:
//
//	expr    = and { ("or" | "||" | "|") and }
//	and     = unary { ["and" | "&&" | "&"] unary }   (juxtaposition is and)
//	unary   = ("not" | "!") unary | "(" expr ")" | test
//	test    = ("sport" | "dport") [op] PORT          PORT: 9092, :9092, :https, *
//	        | ("src" | "dst") [eq | ne] HOST         HOST: ADDR[/LEN][:PORT], [V6][:PORT], *:PORT
//	        | "state" [eq | ne] STATES | "exclude" STATES
//	        | "pid" [op] N | "comm" [eq | ne] NAME
//	op      = "=" | "==" | "eq" | "!=" | "ne" | ">" | "gt" | "<" | "lt" | ">=" | "ge" | "<=" | "le"
func ParseExpr(args []string) (Expr, error) {
	input := strings.Join(args, " ")
	toks := tokenize(input)
	if len(toks) == 0 {
		return nil, nil
	}
	p := &parser{input: input, toks: toks}
	e, err := p.list()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t != nil {
		if t.text == ")" {
			return nil, p.errAt(t, "unbalanced ')': no '(' opens it")
		}
		return nil, p.errAt(t, fmt.Sprintf("unexpected %q", t.text))
	}
	if len(p.families) > 0 {
		// The last family named wins, as ss's preferred family does.
		e = familyExpr{p.families[len(p.families)-1:], e}
	}
	return e, nil
}

type token struct {
	text string
	pos  int
}

// tokenize splits at spaces, around parentheses and around the
// comparison operators, so "dport>=1024" reads like "dport >= 1024".
func tokenize(s string) []token {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(' || c == ')':
			out = append(out, token{string(c), i})
			i++
		case c == '&' || c == '|':
			j := i + 1
			if j < len(s) && s[j] == c {
				j++
			}
			out = append(out, token{s[i:j], i})
			i = j
		case c == '=' || c == '!' || c == '<' || c == '>':
			j := i + 1
			if j < len(s) && s[j] == '=' {
				j++
			}
			out = append(out, token{s[i:j], i})
			i = j
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n()&|=!<>", rune(s[j])) {
				j++
			}
			out = append(out, token{s[i:j], i})
			i = j
		}
	}
	return out
}

type parser struct {
	input    string
	toks     []token
	i        int
	families []uint16 // named by inet: and inet6: prefixes
}

func (p *parser) peek() *token {
	if p.i < len(p.toks) {
		return &p.toks[p.i]
	}
	return nil
}

func (p *parser) next() *token {
	t := p.peek()
	if t != nil {
		p.i++
	}
	return t
}

func (p *parser) errAt(t *token, msg string) error {
	if t == nil {
		return &SyntaxError{Input: p.input, Pos: len(p.input), Msg: msg}
	}
	return &SyntaxError{Input: p.input, Pos: t.pos, Token: t.text, Msg: msg}
}

func isOr(s string) bool  { return s == "or" || s == "||" || s == "|" }
func isAnd(s string) bool { return s == "and" || s == "&&" || s == "&" }

// list reads tests joined by and, or or nothing (and), strictly left to
// right, as ss's grammar does: "a or b and c" is "(a or b) and c".
func (p *parser) list() (Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t != nil && t.text != ")"; t = p.peek() {
		or := isOr(t.text)
		if or || isAnd(t.text) {
			p.next()
		}
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		if or {
			l = orExpr{l, r}
		} else {
			l = andExpr{l, r}
		}
	}
	return l, nil
}

const keywords = "sport, dport, src, dst, dev, fwmark, cgroup, autobound, state, exclude, pid, comm, unit, container, pod, namespace, with and, or, not and ( )"

func (p *parser) unary() (Expr, error) {
	t := p.next()
	if t == nil {
		return nil, p.errAt(nil, "the expression ends where a test was expected ("+keywords+")")
	}
	switch strings.ToLower(t.text) {
	case "not", "!":
		e, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notExpr{e}, nil
	case "(":
		e, err := p.list()
		if err != nil {
			return nil, err
		}
		c := p.next()
		if c == nil || c.text != ")" {
			if c == nil {
				return nil, p.errAt(t, "unbalanced '(': no ')' closes it")
			}
			return nil, p.errAt(c, fmt.Sprintf("want ')' to close the '(' at column %d, got %q", t.pos+1, c.text))
		}
		return e, nil
	case ")":
		return nil, p.errAt(t, "unexpected ')': a test was expected here")
	case "sport", "dport":
		return p.port(strings.ToLower(t.text))
	case "src", "dst":
		return p.host(strings.ToLower(t.text))
	case "state", "exclude":
		return p.state(strings.ToLower(t.text))
	case "pid":
		return p.pid()
	case "comm":
		return p.comm()
	case "unit", "container", "pod", "namespace":
		return p.ident(strings.ToLower(t.text))
	case "cgroup", "dev", "fwmark":
		return p.sockAttr(strings.ToLower(t.text))
	case "autobound":
		return newAutobound(), nil
	case "and", "&&", "&", "or", "||", "|":
		return nil, p.errAt(t, fmt.Sprintf("%q needs a test on its left", t.text))
	}
	return nil, p.errAt(t, fmt.Sprintf("unknown keyword %q: use %s", t.text, keywords))
}

// cmpOp is a comparison operator.
type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opGt
	opLt
	opGe
	opLe
)

var opNames = [...]string{"=", "!=", ">", "<", ">=", "<="}

func (o cmpOp) String() string { return opNames[o] }

func (o cmpOp) cmp(a, b int64) bool {
	switch o {
	case opEq:
		return a == b
	case opNe:
		return a != b
	case opGt:
		return a > b
	case opLt:
		return a < b
	case opGe:
		return a >= b
	default:
		return a <= b
	}
}

func parseOp(s string) (cmpOp, bool) {
	switch strings.ToLower(s) {
	case "=", "==", "eq":
		return opEq, true
	case "!=", "ne", "neq":
		return opNe, true
	case ">", "gt":
		return opGt, true
	case "<", "lt":
		return opLt, true
	case ">=", "ge", "geq":
		return opGe, true
	case "<=", "le", "leq":
		return opLe, true
	}
	return 0, false
}

// op reads an optional operator; without one the test is equality.
// onlyEq limits it to = and != (for addresses, states, names).
func (p *parser) op(key string, onlyEq bool) (cmpOp, error) {
	t := p.peek()
	if t == nil {
		return 0, p.errAt(nil, fmt.Sprintf("%q needs a value", key))
	}
	o, ok := parseOp(t.text)
	if !ok {
		if t.text == "!" {
			return 0, p.errAt(t, "'!' alone is not a comparison: write != or ne")
		}
		return opEq, nil
	}
	if onlyEq && o != opEq && o != opNe {
		return 0, p.errAt(t, fmt.Sprintf("%q compares with = or != only, not %s", key, t.text))
	}
	p.next()
	return o, nil
}

func (p *parser) value(key, what string) (*token, error) {
	t := p.next()
	if t == nil {
		return nil, p.errAt(nil, fmt.Sprintf("%q needs %s", key, what))
	}
	if t.text == "(" || t.text == ")" || isAnd(t.text) || isOr(t.text) {
		return nil, p.errAt(t, fmt.Sprintf("%q needs %s, not %q", key, what, t.text))
	}
	if _, isOp := parseOp(t.text); isOp && strings.ContainsAny(t.text, "=<>!") {
		return nil, p.errAt(t, fmt.Sprintf("%q needs %s, not a second operator %q", key, what, t.text))
	}
	return t, nil
}

func (p *parser) port(key string) (Expr, error) {
	o, err := p.op(key, false)
	if err != nil {
		return nil, err
	}
	t, err := p.value(key, "a port such as :9092, 9092, :https or *")
	if err != nil {
		return nil, err
	}
	v := t.text
	for _, fam := range []string{"inet:", "inet6:"} {
		v = strings.TrimPrefix(v, fam)
	}
	n, any, err := parsePortValue(strings.TrimPrefix(v, ":"))
	if err != nil {
		return nil, p.errAt(t, err.Error())
	}
	if any {
		switch o {
		case opEq:
			return trueExpr{key + " = *"}, nil
		case opNe:
			return notExpr{trueExpr{key + " = *"}}, nil
		}
		return nil, p.errAt(t, "'*' (any port) only goes with = or !=")
	}
	return portExpr{dst: key == "dport", op: o, port: n}, nil
}

func (p *parser) host(key string) (Expr, error) {
	o, err := p.op(key, true)
	if err != nil {
		return nil, err
	}
	t, err := p.value(key, "an address, a CIDR prefix or ADDR:PORT")
	if err != nil {
		return nil, err
	}
	var family uint16
	if len(p.families) > 0 {
		family = p.families[len(p.families)-1]
	}
	h, err := parseHost(t.text, family)
	if err != nil {
		return nil, p.errAt(t, err.Error())
	}
	h.dst = key == "dst"
	if h.family != 0 {
		p.families = append(p.families, h.family)
	}
	var e Expr = h
	if o == opNe {
		e = notExpr{e}
	}
	return e, nil
}

func (p *parser) state(key string) (Expr, error) {
	o := opEq
	if key == "state" {
		var err error
		if o, err = p.op(key, true); err != nil {
			return nil, err
		}
	}
	t, err := p.value(key, "a state name or group such as syn-sent or connected")
	if err != nil {
		return nil, err
	}
	m, err := tcpstate.ParseList(t.text)
	if err != nil {
		return nil, p.errAt(t, err.Error())
	}
	var e Expr = stateExpr{m}
	if o == opNe || key == "exclude" {
		e = notExpr{e}
	}
	return e, nil
}

func (p *parser) pid() (Expr, error) {
	o, err := p.op("pid", false)
	if err != nil {
		return nil, err
	}
	t, err := p.value("pid", "a process id")
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(t.text, 10, 32)
	if err != nil {
		return nil, p.errAt(t, fmt.Sprintf("bad process id %q: want a number", t.text))
	}
	return pidExpr{op: o, pid: uint32(n)}, nil
}

func (p *parser) comm() (Expr, error) {
	o, err := p.op("comm", true)
	if err != nil {
		return nil, err
	}
	t, err := p.value("comm", "a process name")
	if err != nil {
		return nil, err
	}
	name := t.text
	if len(name) > commLen {
		name = name[:commLen]
	}
	return commExpr{name: name, ne: o == opNe}, nil
}

// identWhat says what each identity keyword takes.
var identWhat = map[string]string{
	"unit":      "a systemd unit such as nginx.service",
	"container": "a container name or id (4+ characters of it)",
	"pod":       "a pod NAME or NAMESPACE/NAME",
	"namespace": "a Kubernetes namespace",
}

// ident parses cgroup, unit, container, pod and namespace tests: who owns
// the socket beyond its process (package identity).
func (p *parser) ident(key string) (Expr, error) {
	o, err := p.op(key, true)
	if err != nil {
		return nil, err
	}
	t, err := p.value(key, identWhat[key])
	if err != nil {
		return nil, err
	}
	return identExpr{key: key, val: t.text, ne: o == opNe}, nil
}

type (
	orExpr    struct{ l, r Expr }
	andExpr   struct{ l, r Expr }
	notExpr   struct{ e Expr }
	trueExpr  struct{ s string }
	stateExpr struct{ m tcpstate.Mask }
	commExpr  struct {
		name string
		ne   bool
	}
	identExpr struct {
		key, val string
		ne       bool
	}
	portExpr struct {
		dst  bool
		op   cmpOp
		port int64 // as ss: any number, even beyond 65535 (it never matches)
	}
	pidExpr struct {
		op  cmpOp
		pid uint32
	}
)

func (e orExpr) Match(s *Subject) bool  { return e.l.Match(s) || e.r.Match(s) }
func (e orExpr) String() string         { return "( " + e.l.String() + " or " + e.r.String() + " )" }
func (e andExpr) Match(s *Subject) bool { return e.l.Match(s) && e.r.Match(s) }
func (e andExpr) String() string        { return e.l.String() + " and " + e.r.String() }
func (e notExpr) Match(s *Subject) bool { return !e.e.Match(s) }
func (e notExpr) String() string        { return "not " + paren(e.e) }
func (trueExpr) Match(*Subject) bool    { return true }
func (e trueExpr) String() string       { return e.s }

func paren(e Expr) string {
	if _, ok := e.(andExpr); ok {
		return "( " + e.String() + " )"
	}
	return e.String()
}

func (e stateExpr) Match(s *Subject) bool { return e.m.Has(s.State) }
func (e stateExpr) String() string        { return "state " + e.m.String() }

func (e portExpr) Match(s *Subject) bool {
	p := s.SPort
	if e.dst {
		p = s.DPort
	}
	return e.op.cmp(int64(p), e.port)
}

func (e portExpr) String() string {
	k := "sport"
	if e.dst {
		k = "dport"
	}
	return fmt.Sprintf("%s %s :%d", k, e.op, e.port)
}

func (e pidExpr) Match(s *Subject) bool { return s.OwnerKnown && e.op.cmp(int64(s.PID), int64(e.pid)) }
func (e pidExpr) String() string        { return fmt.Sprintf("pid %s %d", e.op, e.pid) }

// An owner test never matches a socket whose owner is unknown, whatever
// its operator: "comm != java" does not claim an unknown owner is not java.
func (e commExpr) Match(s *Subject) bool { return s.OwnerKnown && (s.Comm == e.name) != e.ne }

func (e commExpr) String() string {
	if e.ne {
		return "comm != " + e.name
	}
	return "comm = " + e.name
}

// Like an owner test, an identity test never matches a socket whose
// owner's identity is unknown, whatever its operator.
func (e identExpr) Match(s *Subject) bool {
	id := s.Owner
	if id == nil {
		return false
	}
	var is bool
	switch e.key {
	case "unit":
		is = UnitIs(id, e.val)
	case "container":
		is = ContainerIs(id, e.val)
	case "pod":
		is = PodIs(id, e.val)
	case "namespace":
		is = id.Namespace == e.val
	}
	return is != e.ne
}

func (e identExpr) String() string {
	if e.ne {
		return e.key + " != " + e.val
	}
	return e.key + " = " + e.val
}

// sockAttr reads the cgroup, dev and fwmark tests.
func (p *parser) sockAttr(key string) (Expr, error) {
	o, err := p.op(key, true)
	if err != nil {
		return nil, err
	}
	what := map[string]string{"cgroup": "a cgroup path such as /system.slice/nginx.service",
		"dev": "an interface name or index", "fwmark": "a mark, VALUE or VALUE/MASK"}[key]
	t, err := p.value(key, what)
	if err != nil {
		return nil, err
	}
	var e Expr
	switch key {
	case "cgroup":
		if !strings.HasPrefix(t.text, "/") {
			return nil, p.errAt(t, fmt.Sprintf("bad cgroup %q: want a path from the cgroup mount, starting with /", t.text))
		}
		c := parseCgroup(t.text)
		c.ne = o == opNe
		e = c
	case "dev":
		d, err := parseDev(t.text)
		if err != nil {
			return nil, p.errAt(t, err.Error())
		}
		d.ne = o == opNe
		e = d
	case "fwmark":
		m, err := parseMark(t.text)
		if err != nil {
			return nil, p.errAt(t, err.Error())
		}
		m.ne = o == opNe
		e = m
	}
	return e, nil
}
