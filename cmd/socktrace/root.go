package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/flight"
	"github.com/socktrace/socktrace/internal/owner/cri"
	"github.com/socktrace/socktrace/internal/pipeline"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

func newRootCmd() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "socktrace [flags] [FILTER]",
		Short: "Watch every TCP socket change state, live",
		Long: `socktrace shows TCP state transitions as the kernel makes them
(close -> syn-sent -> established -> ...), with the process that owns each
socket and the time it spent in its previous state.

Filters work like ss's: --state takes ss state names (` + strings.Join(stateNames(), ", ") + `)
and groups (` + strings.Join(tcpstate.GroupNames(), ", ") + `); a transition matches
when its new state does. --sport is the local port and --dport the peer's.
The local port of a connecting socket is not known yet at syn-sent, so
--sport does not match close -> syn-sent.

FILTER is an ss filter expression, e.g. 'dport = :9092 and ( state syn-sent
or state syn-recv )', with = == eq != ne > gt < lt >= ge <= le, and, or,
not, parentheses, src/dst with addresses or CIDRs, state, pid and comm.

Before streaming, socktrace lists the sockets that exist (as ss does), so
that each transition has a socket to belong to; --once lists and exits,
--no-snapshot skips the list.

Connect attempts are followed to their end: a destination whose connects
keep failing (refused, timeout, unreachable, aborted) raises an alert;
--summary adds CLOSE-WAIT leaks, TIME-WAIT and listener pressure.
-w FILE records everything; 'socktrace read FILE' replays it, and
'socktrace report FILE -o page.html' makes one HTML page of it.`,
		Example: `  socktrace --state syn-sent --dport 9092     # connect attempts to Kafka
  socktrace --once                             # like ss -tanpo
  socktrace 'dport = :9092 and ( state syn-sent or state syn-recv )'
  socktrace --state close-wait -o json         # sockets the app is not closing
  socktrace -o json | jq 'select(.error != null)'`,
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.parse(args)
			if err != nil {
				return err
			}
			stop, err := startProfiles(f.cpuProfile, f.memProfile)
			if err != nil {
				return err
			}
			defer stop()
			if o.Once {
				return pipeline.Once(o)
			}
			return pipeline.Trace(cmd.Context(), o)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun 'socktrace --help' for usage.", err)
	})
	fl := cmd.Flags()
	fl.SortFlags = false
	addViewFlags(fl, f)
	fl.DurationVar(&f.duration, "duration", 0, "stop after `D`, e.g. 30s or 5m (default: until Ctrl-C)")
	fl.BoolVar(&f.once, "once", false, "list the TCP sockets that exist (like ss -tanpo) and exit")
	fl.BoolVar(&f.noSnapshot, "no-snapshot", false, "do not list existing sockets first: only stream transitions")
	fl.DurationVar(&f.interval, "interval", 0, "print the summary every `D`, e.g. 1m (implies --summary)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "with --write: record only, print nothing")
	addTraceFlags(fl, f)
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a Go CPU profile to `FILE` (for developers)")
	fl.StringVar(&f.memProfile, "memprofile", "", "write a Go heap profile to `FILE` at exit and on SIGUSR1 (for developers)")
	fl.MarkHidden("cpuprofile")
	fl.MarkHidden("memprofile")
	cmd.AddCommand(newReadCmd(), newAgentCmd(), newSSCmd(), newReportCmd())
	return cmd
}

func stateNames() []string {
	var out []string
	for _, s := range tcpstate.All.States() {
		out = append(out, s.String())
	}
	return out
}

// addViewFlags registers the flags that choose what to show and how:
// the same for a live trace and for reading a capture.
func addViewFlags(fl *pflag.FlagSet, f *flags) {
	addFilterFlags(fl, f)
	fl.StringVarP(&f.output, "output", "o", "table", "output `FORMAT`: table or json (one object per line)")
	fl.BoolVarP(&f.numeric, "numeric", "n", false, "show port numbers, not service names")
	fl.BoolVarP(&f.resolve, "resolve", "r", false, "show host names (looked up in the background, never delaying output)")
	fl.BoolVarP(&f.info, "info", "i", false, "show TCP details: in the listing, each socket's tcp_info (like ss -i); on closes and connects, bytes, RTT, retransmits, lifetime")
	fl.BoolVarP(&f.mem, "memory", "m", false, "in the listing, each socket's memory (like ss -m)")
	fl.BoolVar(&f.summary, "summary", false, "at the end, print connect attempts by destination, CLOSE-WAIT leaks by process, TIME-WAIT and listener pressure (also on SIGUSR1)")
	addAnalysisFlags(fl, f)
	fl.IntVar(&f.maxDests, "max-destinations", analysis.DefaultMaxDests, "remember at most `N` destinations of connect attempts (the least recently attempted are forgotten first, failing ones last, and counted)")
}

// addFilterFlags registers the filters.
func addFilterFlags(fl *pflag.FlagSet, f *flags) {
	fl.StringArrayVar(&f.states, "state", nil, "only transitions into these `STATES`: ss names or groups, comma separated")
	fl.StringArrayVar(&f.sports, "sport", nil, "local `PORTS`: 80,443,8000-8100 or service names")
	fl.StringArrayVar(&f.dports, "dport", nil, "peer `PORTS`: 80,443,8000-8100 or service names")
	fl.StringArrayVar(&f.srcs, "src", nil, "local `ADDRS`: addresses or CIDR prefixes, comma separated")
	fl.StringArrayVar(&f.dsts, "dst", nil, "peer `ADDRS`: addresses or CIDR prefixes, comma separated")
	fl.StringArrayVar(&f.pids, "pid", nil, "owning process `PIDS`, comma separated")
	fl.StringArrayVar(&f.comms, "comm", nil, "owning process `NAMES`, comma separated")
	fl.StringArrayVar(&f.units, "unit", nil, "owner's systemd `UNITS` (nginx or nginx.service), comma separated")
	fl.StringArrayVar(&f.containers, "container", nil, "owner's `CONTAINERS`: names, or ids (4+ characters of them), comma separated")
	fl.StringArrayVar(&f.pods, "pod", nil, "owner's Kubernetes `PODS`: NAME or NAMESPACE/NAME, comma separated")
	fl.StringArrayVar(&f.namespaces, "namespace", nil, "owner's Kubernetes `NAMESPACES` (pods' namespaces, not network namespaces: see --netns), comma separated")
	fl.BoolVarP(&f.ipv4, "ipv4", "4", false, "only IPv4 sockets")
	fl.BoolVarP(&f.ipv6, "ipv6", "6", false, "only IPv6 sockets")
}

// addAnalysisFlags registers the thresholds of the analysis.
func addAnalysisFlags(fl *pflag.FlagSet, f *flags) {
	fl.IntVar(&f.failAfter, "fail-after", analysis.DefaultFailAfter, "a destination is failing after `N` connects in a row fail (alert records and lines)")
	fl.DurationVar(&f.closeWaitAfter, "close-wait-after", 30*time.Second, "sockets in CLOSE-WAIT for `D` or longer count as leaks in the summary")
	fl.IntVar(&f.history, "history", timeline.DefaultClosedCap, "remember the last `N` closed sockets with their history (memory stays bounded)")
}

// addTraceFlags registers the flags of a live trace that the agent shares.
func addTraceFlags(fl *pflag.FlagSet, f *flags) {
	fl.StringVar(&f.ringSize, "ring-size", "8M", "ring buffer `SIZE` (power of two, e.g. 64K, 8M; 8M holds about 43,000 transitions, in 8 MiB of kernel memory); larger loses less under bursts")
	fl.StringVar(&f.attach, "attach", events.AttachAuto, "how to attach, `METHOD`: "+strings.Join(events.AttachMethods, ", "))
	fl.StringVar(&f.netns, "netns", "", "network namespace to list and trace: an ip netns `NAME` (as ss -N), a path (/run/netns/NAME, /proc/PID/ns/net), pod:NAMESPACE/NAME (a Kubernetes pod's), or all (default: socktrace's own for the listing, every namespace for transitions)")
	fl.DurationVar(&f.reconcileEvery, "reconcile-every", pipeline.DefaultReconcileEvery, "check the live sockets against the kernel (sock_diag) every `D`, and after any loss; 0: only after losses")
	fl.IntVar(&f.bpfMaxSockets, "bpf-max-sockets", events.DefaultMaxSockets, "the kernel side follows at most `N` sockets at once (an LRU map of about 100 bytes each): beyond, the least recently active socket's owner, birth time and counters are forgotten, and counted")
	fl.IntVar(&f.maxSockets, "max-sockets", pipeline.DefaultMaxSockets, "remember at most `N` live sockets (beyond, new ones are traced but not remembered, and counted)")
	fl.StringVarP(&f.write, "write", "w", "", "record the snapshot and every transition to `FILE`, for socktrace read")
	fl.BoolVar(&f.force, "force", false, "with --write: overwrite FILE if it exists")
	fl.StringVar(&f.rotateSize, "rotate-size", "", "with --write: start a new file (FILE.1, FILE.2, ...) once one reaches `SIZE`, e.g. 100M (like tcpdump -C)")
	fl.IntVar(&f.rotateCount, "rotate-count", 0, "with --rotate-size: keep only the newest `N` files (like tcpdump -W)")
	fl.DurationVar(&f.flightRecorder, "flight-recorder", 0, "flight recorder: keep the last `D` (e.g. 10m) of transitions, DNS answers, drops and alerts in memory, and when an alert fires (failing, stale-dns, listen-overflow, close-wait) write them to a capture file in --flight-dir, with --flight-after more; 0: off")
	fl.StringVar(&f.flightSize, "flight-recorder-size", "64M", "with --flight-recorder: keep at most `SIZE` in memory (oldest dropped first, counted)")
	fl.StringVar(&f.flightDir, "flight-dir", "", "with --flight-recorder: write recordings to `DIR`, named by time, alert and destination (socktrace read replays them)")
	fl.DurationVar(&f.flightAfter, "flight-after", flight.DefaultAfter, "with --flight-recorder: go on recording for `D` after the alert")
	fl.IntVar(&f.flightMaxFiles, "flight-max-files", flight.DefaultMaxFiles, "with --flight-recorder: keep at most `N` recordings in --flight-dir (oldest removed, counted)")
	fl.StringVar(&f.kernelBTF, "kernel-btf", "", "BTF `FILE` for the running kernel, if it has no /sys/kernel/btf/vmlinux")
	fl.StringArrayVar(&f.events, "events", nil, "also show these per-packet `EVENTS` of the sockets traced: retransmit, reset, error, drop (a packet dropped on this host) (comma separated; they are always counted)")
	fl.StringVar(&f.readyFile, "ready-file", "", "write `FILE` once tracing has started, for scripts")
	fl.BoolVar(&f.noDNS, "no-dns", false, "do not watch DNS answers: no dns_name on destinations, no stale-dns alerts")
	fl.BoolVar(&f.noDNSLookup, "no-dns-lookup", false, "never ask a DNS server whether a failing destination's name moved (socktrace asks the server that answered, at most once per name and namespace every 30s)")
	addIdentityFlags(fl, f)
}

// addIdentityFlags registers where the owner's identity is read from.
func addIdentityFlags(fl *pflag.FlagSet, f *flags) {
	fl.StringVar(&f.hostRoot, "host-root", "", "the host's / is mounted at `DIR` (e.g. /host, in a container): read its mount table, cgroups, processes' cgroups and the kubelet's logs there (owners and namespaces come from socktrace's own /proc: run with the host's PID namespace)")
	fl.StringVar(&f.kubeletLogDir, "kubelet-log-dir", "/var/log", "pod and container names from the kubelet's `DIR`/pods and DIR/containers (under --host-root)")
	fl.StringVar(&f.criSocket, "cri-socket", "", "pod and container names from the container runtime's CRI socket `PATH` (under --host-root), before the kubelet's logs; none: do not ask (default: the first found of "+strings.Join(cri.Sockets, ", ")+")")
}

// startProfiles starts the developer profiles asked for; stop writes them.
func startProfiles(cpu, mem string) (stop func(), err error) {
	stop = func() {}
	if cpu != "" {
		f, err := os.Create(cpu)
		if err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		stop = func() { pprof.StopCPUProfile(); f.Close() }
	}
	if mem != "" {
		// Sample every 4 KiB allocated, not every 512 KiB: an idle
		// agent's heap is a few MiB, too little for the default rate.
		runtime.MemProfileRate = 4096
		write := func() {
			if f, err := os.Create(mem); err == nil {
				runtime.GC()
				pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		// SIGUSR1 writes it too, while socktrace runs: what an agent
		// holds is gone by the time it exits.
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				write()
			}
		}()
		cpuStop := stop
		stop = func() {
			cpuStop()
			signal.Stop(usr1)
			write()
		}
	}
	return stop, nil
}
