package metrics

import "net/netip"

// workloadLabels are the identity labels --workload-labels adds.
var workloadLabels = []string{"namespace", "pod", "container", "unit"}

// labeller makes the label names and values of the metrics by
// destination and by owner: with workload, the owner's identity labels
// follow the others.
type labeller struct{ workload bool }

// names is a metric's label names: l, then the workload labels if on.
func (lb labeller) names(l ...string) []string {
	if lb.workload {
		return append(l, workloadLabels...)
	}
	return l
}

// vals is a metric's label values: vs, then the workload labels if on.
func (lb labeller) vals(who workload, vs ...string) []string {
	if lb.workload {
		return append(vs, who.values()...)
	}
	return vs
}

func commOf(known bool, comm string) string {
	if known {
		return comm
	}
	return UnknownComm
}

func addrString(a netip.Addr) string { return a.Unmap().String() }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
