// Package ss is socktrace's ss: it reads iproute2 ss's own command line
// for TCP and lists the sockets as ss 6.1 prints them, byte for byte
// (package sslayout lays the table out).
package ss

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/owner/netnsname"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Options is an ss command line, read.
type Options struct {
	States    tcpstate.Mask // the sockets' states (ss's default: connected but syn-recv and time-wait)
	Numeric   bool          // -n
	Resolve   bool          // -r
	Timers    bool          // -o (and -e)
	Extended  bool          // -e
	Processes bool          // -p
	Info      bool          // -i
	Memory    bool          // -m
	NoHeader  bool          // -H
	OneLine   bool          // -O
	Summary   bool          // -s
	// Family: 0 both, else AF_INET or AF_INET6 (the last of -4/-6/-f).
	Family uint16
	Netns  string // -N NAME: /run/netns/NAME, or a path
	Expr   filter.Expr
	Args   []string // the expression's words

	// TableAsked: -t, -A tcp or a family option was given (with -s, the
	// socket table follows the summary only then, or with state words or
	// a filter).
	TableAsked bool
	StateWords bool // state or exclude words were given
	Follow     bool // socktrace's own: then keep showing transitions
	Help       bool // -h: print Usage
	Version    bool // -V
}

// Usage is what socktrace ss --help prints.
const Usage = `Usage: socktrace ss [ OPTIONS ] [ state STATE-FILTER ] [ EXPRESSION ]
   ss's own command line, for TCP sockets; the output is what ss prints.
   -h, --help          this message
   -V, --version       socktrace's version
   -n, --numeric       don't resolve service names
   -r, --resolve       resolve host names
   -a, --all           display all sockets
   -l, --listening     display listening sockets
   -o, --options       show timer information
   -e, --extended      show detailed socket information
   -m, --memory        show socket memory usage
   -p, --processes     show process using socket
   -i, --info          show internal TCP information
   -s, --summary       show socket usage summary
   -H, --no-header     suppress header line
   -O, --oneline       socket's data printed on a single line
   -4, --ipv4          display only IP version 4 sockets
   -6, --ipv6          display only IP version 6 sockets
   -f, --family=FAMILY inet or inet6
   -t, --tcp           display only TCP sockets (the only ones socktrace ss shows)
   -A, --query=QUERY   tcp, inet (TCP sockets only)
   -N, --net=NETNS     switch to the named network namespace (/run/netns/NETNS)
   -F, --filter=FILE   read the filter from FILE ('-' for standard input)
       --follow        after the listing, keep showing the state transitions
                       of the sockets selected (socktrace's own)

   STATE-FILTER := { all | connected | synchronized | bucket | big | STATE }
   STATE := { established | syn-sent | syn-recv | fin-wait-1 | fin-wait-2 |
              time-wait | closed | close-wait | last-ack | listening | closing }
   EXPRESSION: ss's: src, dst, sport, dport, dev, fwmark, cgroup, autobound,
              with = != < > <= >= (and eq ne lt gt le ge neq leq geq), and, or,
              not, ( ); and socktrace's own (see socktrace --help)
`

// other protocols ss shows, and which of its options ask for them.
var otherProtocols = map[string]string{
	"u": "UDP", "udp": "UDP", "w": "raw", "raw": "raw", "x": "Unix", "unix": "Unix",
	"S": "SCTP", "sctp": "SCTP", "d": "DCCP", "dccp": "DCCP", "M": "MPTCP", "mptcp": "MPTCP",
	"0": "packet", "packet": "packet", "vsock": "vsock", "tipc": "TIPC", "xdp": "XDP",
}

// long options: name -> the short option it means ("" for those with
// no short form).
var longOptions = map[string]string{
	"help": "h", "version": "V", "numeric": "n", "resolve": "r", "all": "a", "listening": "l",
	"options": "o", "extended": "e", "memory": "m", "processes": "p", "info": "i", "summary": "s",
	"no-header": "H", "oneline": "O", "ipv4": "4", "ipv6": "6", "family": "f", "tcp": "t",
	"query": "A", "socket": "A", "net": "N", "filter": "F", "follow": "",
	"udp": "u", "raw": "w", "unix": "x", "sctp": "S", "dccp": "d", "mptcp": "M", "packet": "0",
}

// Parse reads ss's command line (without the program name). Like getopt,
// options may come anywhere until "--"; "state" and "exclude" words are
// read only before the expression.
func Parse(args []string) (*Options, error) {
	o := &Options{}
	all, listening := -1, -1 // position of the last -a and -l
	var words []string
	filterFile := ""
	pos := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		pos++
		if a == "--" {
			words = append(words, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			words = append(words, a)
			continue
		}
		// value takes the argument of an option: attached or the next word.
		value := func(name, attached string) (string, error) {
			if attached != "" {
				return attached, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %s requires an argument", name)
			}
			i++
			return args[i], nil
		}
		var shorts string
		if strings.HasPrefix(a, "--") {
			name, attached, _ := strings.Cut(a[2:], "=")
			short, err := longOption(name)
			if err != nil {
				return nil, err
			}
			if short == "" { // --follow
				o.Follow = true
				continue
			}
			if strings.Contains("fAFN", short) {
				v, err := value("--"+name, attached)
				if err != nil {
					return nil, err
				}
				if err := o.withValue(short, v, &filterFile); err != nil {
					return nil, err
				}
				continue
			}
			shorts = short
		} else {
			shorts = a[1:]
		}
		for j := 0; j < len(shorts); j++ {
			c := shorts[j : j+1]
			if strings.Contains("fAFN", c) {
				v, err := value("-"+c, shorts[j+1:])
				if err != nil {
					return nil, err
				}
				if err := o.withValue(c, v, &filterFile); err != nil {
					return nil, err
				}
				break
			}
			switch c {
			case "t":
				o.TableAsked = true
			case "a":
				all = pos
			case "l":
				listening = pos
			case "n":
				o.Numeric = true
			case "r":
				o.Resolve = true
			case "o":
				o.Timers = true
			case "e":
				o.Extended, o.Timers = true, true
			case "p":
				o.Processes = true
			case "i":
				o.Info = true
			case "m":
				o.Memory = true
			case "H":
				o.NoHeader = true
			case "O":
				o.OneLine = true
			case "s":
				o.Summary = true
			case "4":
				o.Family, o.TableAsked = 2, true
			case "6":
				o.Family, o.TableAsked = 10, true
			case "h":
				o.Help = true
			case "V":
				o.Version = true
			default:
				if p, ok := otherProtocols[c]; ok {
					return nil, otherProtocol(p, "-"+c)
				}
				return nil, fmt.Errorf("invalid option -- '%s'", c)
			}
		}
	}
	// The default states, then -a/-l (the later wins), then state words.
	o.States = tcpstate.All &^ tcpstate.MaskOf(tcpstate.Listen, tcpstate.Close, tcpstate.TimeWait, tcpstate.SynRecv, tcpstate.NewSynRecv)
	switch {
	case all > listening:
		o.States = tcpstate.All
	case listening > all:
		o.States = tcpstate.MaskOf(tcpstate.Listen, tcpstate.Close)
	}
	words, err := o.stateWords(words)
	if err != nil {
		return nil, err
	}
	if filterFile != "" {
		if len(words) > 0 {
			return nil, fmt.Errorf("-F and a filter on the command line: give one of them")
		}
		b, err := readFilter(filterFile)
		if err != nil {
			return nil, err
		}
		words = strings.Fields(b)
	}
	o.Args = words
	if o.Expr, err = filter.ParseExpr(words); err != nil {
		return nil, err
	}
	return o, nil
}

func longOption(name string) (string, error) {
	if s, ok := longOptions[name]; ok {
		if p, other := otherProtocols[name]; other {
			return "", otherProtocol(p, "--"+name)
		}
		return s, nil
	}
	// getopt_long takes unique prefixes.
	var match []string
	for l := range longOptions {
		if strings.HasPrefix(l, name) && name != "" {
			match = append(match, l)
		}
	}
	if len(match) == 1 {
		return longOption(match[0])
	}
	if len(match) > 1 {
		return "", fmt.Errorf("option '--%s' is ambiguous; possibilities: --%s", name, strings.Join(match, " --"))
	}
	return "", fmt.Errorf("unrecognized option '--%s'", name)
}

func otherProtocol(proto, opt string) error {
	return fmt.Errorf("%s asks for %s sockets: socktrace ss shows TCP sockets only (use ss itself for %s)", opt, proto, proto)
}

// withValue applies an option that takes a value.
func (o *Options) withValue(opt, v string, filterFile *string) error {
	switch opt {
	case "f":
		switch v {
		case "inet":
			o.Family = 2
		case "inet6":
			o.Family = 10
		default:
			if p, ok := otherProtocols[v]; ok || v == "link" || v == "netlink" {
				if !ok {
					p = v
				}
				return otherProtocol(p, "-f "+v)
			}
			return fmt.Errorf("%q is invalid family: want inet or inet6", v)
		}
		o.TableAsked = true
	case "A":
		for _, q := range strings.Split(v, ",") {
			switch q {
			case "tcp", "inet", "all":
			default:
				p, ok := otherProtocols[q]
				if !ok {
					p = q
				}
				return otherProtocol(p, "-A "+q)
			}
		}
		o.TableAsked = true
	case "F":
		*filterFile = v
	case "N":
		path, err := netnsname.Path(v, "")
		if err != nil {
			return fmt.Errorf("-N %s: %w", v, err)
		}
		o.Netns = path
	}
	return nil
}

// stateWords reads the leading state and exclude words.
func (o *Options) stateWords(words []string) ([]string, error) {
	seen := false
	for len(words) >= 2 && (words[0] == "state" || words[0] == "exclude" || words[0] == "excl") {
		m, err := stateMask(words[1])
		if err != nil {
			return nil, err
		}
		if words[0] == "state" {
			if !seen {
				o.States = 0
			}
			o.States |= m
		} else {
			if !seen {
				o.States = tcpstate.All
			}
			o.States &^= m
		}
		seen, o.StateWords = true, true
		words = words[2:]
	}
	return words, nil
}

// stateMask is ss's scan_state: names, aliases and groups; "listen" is
// not one (ss refuses it).
func stateMask(name string) (tcpstate.Mask, error) {
	n := strings.ToLower(name)
	switch n {
	case "all":
		return tcpstate.All, nil
	case "connected", "synchronized", "bucket", "big":
		return withRequests(tcpstate.Groups[n]), nil
	case "syn-rcv":
		n = "syn-recv"
	case "closed", "unconnected":
		n = "close"
	case "established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait",
		"close", "close-wait", "last-ack", "listening", "closing":
	case "unknown":
		return 0, nil // matches no TCP socket
	case "listen":
		return 0, fmt.Errorf("wrong state name: %s (ss calls it listening)", name)
	default:
		return 0, fmt.Errorf("wrong state name: %s (want established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, closed, close-wait, last-ack, listening, closing, or all, connected, synchronized, bucket, big)", name)
	}
	s, err := tcpstate.Parse(n)
	if err != nil {
		return 0, fmt.Errorf("wrong state name: %s", name)
	}
	return withRequests(tcpstate.MaskOf(s)), nil
}

// withRequests: a request socket (new-syn-recv) is SYN-RECV to ss.
func withRequests(m tcpstate.Mask) tcpstate.Mask {
	if m.Has(tcpstate.SynRecv) {
		m |= tcpstate.MaskOf(tcpstate.NewSynRecv)
	}
	return m
}

func readFilter(path string) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("-F %s: %w", path, err)
	}
	return string(b), nil
}

// OneState says whether exactly one state is selected: then ss leaves
// the State column out (syn-recv counts once, with its request sockets).
func (o *Options) OneState() bool {
	m := o.States
	if m.Has(tcpstate.SynRecv) {
		m &^= tcpstate.MaskOf(tcpstate.NewSynRecv)
	}
	return m.Len() == 1
}

// WantTable says whether the socket table is printed: always, but after
// -s alone (ss prints only the summary then).
func (o *Options) WantTable() bool {
	return !o.Summary || o.TableAsked || o.StateWords || len(o.Args) > 0
}
