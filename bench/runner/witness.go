package main

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/socktrace/socktrace/internal/witness"
)

// witnessCounts is what the witness (internal/witness) saw in a trial: the
// transitions the kernel handed to its program on inet_sock_set_state for
// the benchmark's address, and the times it was skipped (recursion misses,
// of any socket).
type witnessCounts struct {
	Seen   int64
	Misses int64
}

// startWitness attaches the witness to the sockets of addr. The runner
// turns kernel.bpf_stats_enabled on itself, so the witness need not.
func startWitness(addr string) (*witness.Witness, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("load address %q: %w", addr, err)
	}
	return witness.Open(witness.Filter{Addr: a}, false)
}

// stopWitness reads the witness's counts and detaches it (nil: nothing).
func stopWitness(w *witness.Witness) (witnessCounts, error) {
	if w == nil {
		return witnessCounts{}, fmt.Errorf("no witness")
	}
	defer w.Close()
	c, err := w.Counts()
	if err != nil {
		return witnessCounts{}, err
	}
	return witnessCounts{Seen: int64(c.Seen()), Misses: int64(c.SetState.Misses)}, nil
}

// notRun is how many of the transitions the load made the kernel ran no
// BPF program on inet_sock_set_state for, and counted no miss, as the
// witness counted: expected less what it saw and what it was skipped for
// (its misses are of any socket, so this errs low). 0 without a witness.
func notRun(t trial) int64 {
	if t.Witness == nil {
		return 0
	}
	n := t.Expected - t.Witness.Seen - t.Witness.Misses
	if n < 0 {
		return 0
	}
	return n
}

// notRunText is notRun for the log: "-" without a witness.
func notRunText(t trial) string {
	if t.Witness == nil {
		return "-"
	}
	return strconv.FormatInt(notRun(t), 10)
}
