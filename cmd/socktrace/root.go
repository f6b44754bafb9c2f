package main

import (
	"fmt"
	"strings"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "socktrace [flags]",
		Short: "Watch every TCP socket change state, live",
		Long: `socktrace shows TCP state transitions as the kernel makes them
(close -> syn-sent -> established -> ...), with the process that owns each
socket and the time it spent in its previous state.

Filters work like ss's: --state takes ss state names (` + strings.Join(stateNames(), ", ") + `)
and groups (` + strings.Join(tcpstate.GroupNames(), ", ") + `); a transition matches
when its new state does. --sport is the local port and --dport the peer's.
The local port of a connecting socket is not known yet at syn-sent, so
--sport does not match close -> syn-sent.`,
		Example: `  socktrace --state syn-sent --dport 9092     # connect attempts to Kafka
  socktrace --state close-wait -o json         # sockets the app is not closing
  socktrace -o json | jq 'select(.error != null)'`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.parse()
			if err != nil {
				return err
			}
			return runTrace(cmd.Context(), o)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun 'socktrace --help' for usage.", err)
	})
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringArrayVar(&f.states, "state", nil, "only transitions into these `STATES`: ss names or groups, comma separated")
	fl.StringArrayVar(&f.sports, "sport", nil, "local `PORTS`: 80,443,8000-8100 or service names")
	fl.StringArrayVar(&f.dports, "dport", nil, "peer `PORTS`: 80,443,8000-8100 or service names")
	fl.StringArrayVar(&f.srcs, "src", nil, "local `ADDRS`: addresses or CIDR prefixes, comma separated")
	fl.StringArrayVar(&f.dsts, "dst", nil, "peer `ADDRS`: addresses or CIDR prefixes, comma separated")
	fl.StringArrayVar(&f.pids, "pid", nil, "owning process `PIDS`, comma separated")
	fl.StringArrayVar(&f.comms, "comm", nil, "owning process `NAMES`, comma separated")
	fl.BoolVarP(&f.ipv4, "ipv4", "4", false, "only IPv4 sockets")
	fl.BoolVarP(&f.ipv6, "ipv6", "6", false, "only IPv6 sockets")
	fl.StringVarP(&f.output, "output", "o", "table", "output `FORMAT`: table or json (one object per line)")
	fl.BoolVarP(&f.numeric, "numeric", "n", false, "show port numbers, not service names")
	fl.BoolVarP(&f.resolve, "resolve", "r", false, "show host names (looked up in the background, never delaying output)")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long, e.g. 30s or 5m (default: until Ctrl-C)")
	fl.StringVar(&f.readyFile, "ready-file", "", "write `FILE` once tracing has started, for scripts")
	fl.StringVar(&f.ringSize, "ring-size", "8M", "ring buffer `SIZE` (power of two, e.g. 64K, 8M); larger loses less under bursts")
	fl.StringVar(&f.attach, "attach", events.AttachAuto, "how to attach, `METHOD`: "+strings.Join(events.AttachMethods, ", "))
	fl.StringVar(&f.kernelBTF, "kernel-btf", "", "BTF `FILE` for the running kernel, if it has no /sys/kernel/btf/vmlinux")
	return cmd
}

func stateNames() []string {
	var out []string
	for _, s := range tcpstate.All.States() {
		out = append(out, s.String())
	}
	return out
}
