// Package tcpstate names the kernel's TCP states the way ss does, and parses
// the state names and groups that users type (--state syn-sent,close-wait).
package tcpstate

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"
)

// State is a kernel TCP state (include/net/tcp_states.h).
type State uint8

// The kernel's TCP states.
const (
	Established State = iota + 1
	SynSent
	SynRecv
	FinWait1
	FinWait2
	TimeWait
	Close
	CloseWait
	LastAck
	Listen
	Closing
	NewSynRecv
)

// First and Last bound the valid states.
const (
	First = Established
	Last  = NewSynRecv
)

// names are ss's filter names; String returns them and Parse accepts them.
var names = [...]string{
	Established: "established",
	SynSent:     "syn-sent",
	SynRecv:     "syn-recv",
	FinWait1:    "fin-wait-1",
	FinWait2:    "fin-wait-2",
	TimeWait:    "time-wait",
	Close:       "close",
	CloseWait:   "close-wait",
	LastAck:     "last-ack",
	Listen:      "listening",
	Closing:     "closing",
	NewSynRecv:  "new-syn-recv",
}

// String returns the ss name of s ("syn-sent"), or "unknown-N".
func (s State) String() string {
	if s >= First && s <= Last {
		return names[s]
	}
	return fmt.Sprintf("unknown-%d", uint8(s))
}

// Valid reports whether s is a state the kernel defines.
func (s State) Valid() bool { return s >= First && s <= Last }

// Mask is a set of states: bit (1 << State).
type Mask uint32

// All holds every state.
const All Mask = (1<<(Last+1) - 1) &^ 1

// MaskOf returns the set holding the given states.
func MaskOf(states ...State) Mask {
	var m Mask
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// Has reports whether s is in m.
func (m Mask) Has(s State) bool { return s <= Last && m&(1<<s) != 0 }

// States lists the states in m in kernel order.
func (m Mask) States() []State {
	var out []State
	for s := First; s <= Last; s++ {
		if m.Has(s) {
			out = append(out, s)
		}
	}
	return out
}

// Len is the number of states in m.
func (m Mask) Len() int { return bits.OnesCount32(uint32(m & All)) }

// String lists the states in m, comma separated.
func (m Mask) String() string {
	var parts []string
	for _, s := range m.States() {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, ",")
}

// Groups are ss's state groups, with the members ss gives them (ss(8),
// scan_state in iproute2's ss.c): "connected" is every state but
// listening and close; "synchronized" is connected but syn-sent.
var Groups = map[string]Mask{
	"all":          All,
	"connected":    All &^ MaskOf(Listen, Close),
	"synchronized": All &^ MaskOf(Listen, Close, SynSent),
	"bucket":       MaskOf(SynRecv, TimeWait),
	"big":          All &^ MaskOf(SynRecv, TimeWait),
}

// aliases are other spellings users bring from ss's columns and tcpstates.
var aliases = map[string]State{
	"estab":      Established,
	"listen":     Listen,
	"closed":     Close,
	"fin-wait1":  FinWait1,
	"fin-wait2":  FinWait2,
	"finwait1":   FinWait1,
	"finwait2":   FinWait2,
	"syn-recv-n": NewSynRecv,
}

func normalize(name string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "_", "-")
}

// Parse returns the state named name: an ss name ("syn-sent"), an ss column
// spelling ("ESTAB", "LISTEN") or a tcpstates one ("SYN_SENT").
func Parse(name string) (State, error) {
	n := normalize(name)
	for s := First; s <= Last; s++ {
		if names[s] == n {
			return s, nil
		}
	}
	if s, ok := aliases[n]; ok {
		return s, nil
	}
	return 0, fmt.Errorf("unknown TCP state %q: use one of %s, or a group: %s",
		name, strings.Join(names[First:], ", "), strings.Join(GroupNames(), ", "))
}

// ParseList parses a comma-separated list of state names and groups
// ("syn-sent,close-wait", "connected") into a set.
func ParseList(list string) (Mask, error) {
	var m Mask
	for _, item := range strings.Split(list, ",") {
		if strings.TrimSpace(item) == "" {
			return 0, fmt.Errorf("empty state name in %q", list)
		}
		if g, ok := Groups[normalize(item)]; ok {
			m |= g
			continue
		}
		s, err := Parse(item)
		if err != nil {
			return 0, err
		}
		m |= MaskOf(s)
	}
	return m, nil
}

// GroupNames lists the group names, sorted.
func GroupNames() []string {
	out := make([]string, 0, len(Groups))
	for g := range Groups {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}
