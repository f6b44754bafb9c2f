package metrics

import (
	"net/netip"
	"strconv"
	"sync"
)

// netnsLabels are the netns labels of the namespaces loopback
// destinations were reached from, each fixed at first use: a
// namespace's name can change (the process it was named after ends),
// its series must not move.
type netnsLabels struct {
	nsMu    sync.Mutex
	nsNames func(uint32) string // the pipeline's namespace names; nil before it runs
	nsLabel map[uint32]string
}

func newNetnsLabels() *netnsLabels { return &netnsLabels{nsLabel: map[uint32]string{}} }

// setNames gives the namespace names to label with.
func (n *netnsLabels) setNames(names func(uint32) string) {
	n.nsMu.Lock()
	defer n.nsMu.Unlock()
	n.nsNames = names
}

// netnsLabel is the netns label of destination daddr reached from
// namespace ino: "" unless daddr is a loopback address (127.0.0.0/8,
// ::1), which is a different place in each namespace; for those, the
// namespace's name as netns_name gives it (pod:NAMESPACE/POD,
// netns:NAME, host, COMM/PID), or netns:INODE when it has none.
// Other destinations are the same place from everywhere: their series
// stay merged across namespaces.
func (n *netnsLabels) netnsLabel(ino uint32, daddr netip.Addr) string {
	if !daddr.Unmap().IsLoopback() {
		return ""
	}
	n.nsMu.Lock()
	defer n.nsMu.Unlock()
	if l, ok := n.nsLabel[ino]; ok {
		return l
	}
	l := ""
	if n.nsNames != nil {
		l = n.nsNames(ino)
	}
	if l == "" {
		l = "netns:" + strconv.FormatUint(uint64(ino), 10)
	}
	n.nsLabel[ino] = l
	return l
}

// forgetNetns drops the labels of the namespaces no series uses.
func (n *netnsLabels) forgetNetns(used map[uint32]bool) {
	n.nsMu.Lock()
	defer n.nsMu.Unlock()
	for ino := range n.nsLabel {
		if !used[ino] {
			delete(n.nsLabel, ino)
		}
	}
}
