package ss

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Summary writes ss -s: the kernel's socket counters of the current
// network namespace (/proc/net/sockstat, sockstat6, snmp), as ss 6.1
// prints them.
func Summary(w io.Writer) error {
	v4, err := readStat("/proc/net/sockstat")
	if err != nil {
		return err
	}
	v6, err := readStat("/proc/net/sockstat6")
	if err != nil {
		return err
	}
	estab, err := currEstab("/proc/net/snmp")
	if err != nil {
		return err
	}
	n := func(m map[string]int, k string) int { return m[k] }
	alloc, tw, orphans := n(v4, "TCP alloc"), n(v4, "TCP tw"), n(v4, "TCP orphan")
	tcp4, tcp6 := n(v4, "TCP inuse"), n(v6, "TCP6 inuse")
	udp4, udp6 := n(v4, "UDP inuse"), n(v6, "UDP6 inuse")
	raw4, raw6 := n(v4, "RAW inuse"), n(v6, "RAW6 inuse")
	frag4, frag6 := n(v4, "FRAG inuse"), n(v6, "FRAG6 inuse")
	var b strings.Builder
	fmt.Fprintf(&b, "Total: %d\n", n(v4, "sockets used"))
	fmt.Fprintf(&b, "TCP:   %d (estab %d, closed %d, orphaned %d, timewait %d)\n",
		alloc+tw, estab, alloc-(tcp4+tcp6-tw), orphans, tw)
	b.WriteString("\nTransport Total     IP        IPv6\n")
	row := func(name string, a, c int) { fmt.Fprintf(&b, "%s\t  %-9d %-9d %-9d\n", name, a+c, a, c) }
	row("RAW", raw4, raw6)
	row("UDP", udp4, udp6)
	row("TCP", tcp4, tcp6)
	row("INET", raw4+udp4+tcp4, raw6+udp6+tcp6)
	row("FRAG", frag4, frag6)
	b.WriteString("\n")
	_, err = io.WriteString(w, b.String())
	return err
}

// readStat reads "PROTO: key value key value" lines into "PROTO key".
func readStat(path string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("socket summary: %w", err)
	}
	m := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		proto, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.Atoi(f[i+1]); err == nil {
				m[proto+" "+f[i]] = v
			}
		}
	}
	return m, nil
}

// currEstab is Tcp: CurrEstab of /proc/net/snmp.
func currEstab(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("socket summary: %w", err)
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Tcp:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if keys == nil {
			keys = f
			continue
		}
		for i, k := range keys {
			if k == "CurrEstab" && i < len(f) {
				return strconv.Atoi(f[i])
			}
		}
	}
	return 0, nil
}
