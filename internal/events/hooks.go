package events

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/socktrace/socktrace/internal/kernelbtf"
)

// Hooks besides inet_sock_set_state: retransmits, resets and errors.
// Each is optional: a kernel that lacks one (inet_sk_error_report before
// 5.14) traces without it, and Tracer.Hooks says so.

// hook is one tracepoint and its programs.
type hook struct {
	tracepoint string // tcp:NAME or sock:NAME
	name       string
	// Programs: tp_btf and raw_tracepoint; the _err ones are for the
	// kernels (6.17+) where the tracepoint has an err argument.
	tpBtf, tpBtfErr, raw, rawErr string
	errArgs                      int // the argument count that has err
	// byArgs: for a tracepoint whose arguments grew, its tp_btf program
	// for each argument count (the last for more); it has no raw one.
	byArgs map[int]string
}

var hooks = []hook{
	{"tcp", "tcp_retransmit_skb", "tp_btf_retransmit", "tp_btf_retransmit_err", "raw_retransmit", "raw_retransmit_err", 3, nil},
	{"tcp", "tcp_retransmit_synack", "tp_btf_synack", "", "raw_synack", "", 0, nil},
	{"tcp", "tcp_send_reset", "tp_btf_send_reset", "", "raw_send_reset", "", 0, nil},
	{"tcp", "tcp_receive_reset", "tp_btf_receive_reset", "", "raw_receive_reset", "", 0, nil},
	{"sock", "inet_sk_error_report", "tp_btf_error_report", "", "raw_error_report", "", 0, nil},
	// Packets dropped (bpf/drops.h): (skb, location) before 5.17, then
	// the reason, then (6.11) the receiving socket.
	{tracepoint: "skb", name: "kfree_skb", byArgs: map[int]string{2: "tp_btf_drop", 3: "tp_btf_drop_reason", 4: "tp_btf_drop_rx_sk"}},
}

// dropHook is the tracepoint of packets dropped.
const dropHook = "skb:kfree_skb"

// HookStatus says how one hook is attached, or why not.
type HookStatus struct {
	Tracepoint string // e.g. tcp:tcp_retransmit_skb
	Method     string // tp_btf or raw_tracepoint; "" if not attached
	Err        error  // why not attached
}

// Hooks reports the optional hooks: attached, or why not.
func (t *Tracer) Hooks() []HookStatus { return t.hookStatus }

// tracepointArgs returns how many arguments the kernel's tracepoint
// takes, from its btf_trace_NAME type; ok false when the kernel has no
// such tracepoint.
func tracepointArgs(kernel *btf.Spec, name string) (int, bool) {
	if kernel == nil {
		var err error
		if kernel, err = kernelbtf.Spec(); err != nil {
			return 0, false
		}
	}
	var td *btf.Typedef
	if err := kernel.TypeByName("btf_trace_"+name, &td); err != nil {
		return 0, false
	}
	ptr, ok := btf.UnderlyingType(td.Type).(*btf.Pointer)
	if !ok {
		return 0, false
	}
	proto, ok := btf.UnderlyingType(ptr.Target).(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return 0, false
	}
	return len(proto.Params) - 1, true // the first is the context
}

// sharedMaps are the main program's maps, which the hooks and the backup
// program use too.
func (t *Tracer) sharedMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"events": t.maps.Events, "lost": t.maps.Lost, "socks": t.maps.Socks, "listeners": t.maps.Listeners,
		"held": t.maps.Held, "dests": t.maps.Dests, "dests_overflow": t.maps.DestsOverflow, "synacks": t.maps.Synacks,
		"running": t.maps.Running, "rescued": t.maps.Rescued,
		"drops_other": t.maps.DropsOther, "drops_nosock": t.maps.DropsNosock, "drop_dests": t.maps.DropDests,
		"drop_dests_overflow": t.maps.DropDestsOver,
	}
}

// attachHooks loads and attaches the optional hooks, sharing the maps of
// the main program; tp_btf says whether to try tracing programs first.
func (t *Tracer) attachHooks(spec *ebpf.CollectionSpec, kernelTypes *btf.Spec, tpBtf bool) {
	replace := t.sharedMaps()
	kernel := kernelTypes
	if kernel == nil {
		kernel, _ = kernelbtf.Spec()
	}
	// Each hook is loaded (the verifier's work, most of the time to
	// start) on a goroutine of its own: on several CPUs they load side by
	// side. Each is on a tracepoint of its own: the order they are
	// attached in does not matter, only that all are before the main
	// program.
	type result struct {
		st   HookStatus
		prog *ebpf.Program
		link link.Link
		args int
	}
	results := make([]result, len(hooks))
	var wg sync.WaitGroup
	for i, h := range hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			var args int
			r.st, r.prog, r.link, args = attachHook(spec, h, kernel, kernelTypes, replace, tpBtf)
			if h.byArgs != nil {
				r.args = args
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.prog != nil {
			t.hookProgs = append(t.hookProgs, r.prog)
			t.hookLinks = append(t.hookLinks, r.link)
		}
		if r.args != 0 {
			t.dropArgs = r.args
		}
		t.hookStatus = append(t.hookStatus, r.st)
	}
}

// attachHook loads and attaches hook h: how, or why not.
func attachHook(spec *ebpf.CollectionSpec, h hook, kernel, kernelTypes *btf.Spec, replace map[string]*ebpf.Map, tpBtf bool) (st HookStatus, p *ebpf.Program, l link.Link, args int) {
	st = HookStatus{Tracepoint: h.tracepoint + ":" + h.name}
	args, ok := tracepointArgs(kernel, h.name)
	if !ok {
		st.Err = fmt.Errorf("the kernel has no %s tracepoint", st.Tracepoint)
		return st, nil, nil, 0
	}
	type try struct {
		method, prog string
		attach       func(*ebpf.Program) (link.Link, error)
	}
	tpProg, rawProg := h.tpBtf, h.raw
	if h.errArgs != 0 && args >= h.errArgs {
		tpProg, rawProg = h.tpBtfErr, h.rawErr
	}
	if h.byArgs != nil {
		tpProg = progForArgs(h.byArgs, args)
	}
	var tries []try
	if tpBtf && tpProg != "" {
		tries = append(tries, try{"tp_btf", tpProg, attachTracing})
	}
	name := h.name
	if rawProg != "" {
		tries = append(tries, try{"raw_tracepoint", rawProg, func(p *ebpf.Program) (link.Link, error) {
			return link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: p})
		}})
	}
	if len(tries) == 0 {
		st.Err = fmt.Errorf("%s needs tp_btf (BTF-typed tracing programs, and the kernel's BTF)", st.Tracepoint)
		return st, nil, nil, 0
	}
	var errs []error
	for _, tr := range tries {
		p, l, err := loadHook(spec, tr.prog, replace, kernelTypes, tr.attach)
		if err == nil {
			st.Method = tr.method
			return st, p, l, args
		}
		errs = append(errs, fmt.Errorf("%s: %s", tr.method, summarize(err)))
	}
	st.Err = fmt.Errorf("attach %s: %w", st.Tracepoint, errors.Join(errs...))
	return st, nil, nil, 0
}

func loadHook(spec *ebpf.CollectionSpec, prog string, maps map[string]*ebpf.Map, kernelTypes *btf.Spec,
	attach func(*ebpf.Program) (link.Link, error)) (*ebpf.Program, link.Link, error) {
	p, err := loadProg(spec, prog, maps, kernelTypes)
	if err != nil {
		return nil, nil, err
	}
	l, err := attach(p)
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("attach: %w", err)
	}
	return p, l, nil
}

// loadProg loads program prog of spec, with the main program's maps.
func loadProg(spec *ebpf.CollectionSpec, prog string, maps map[string]*ebpf.Map, kernelTypes *btf.Spec) (*ebpf.Program, error) {
	if _, ok := spec.Programs[prog]; !ok {
		return nil, fmt.Errorf("no program %s in the BPF object", prog)
	}
	var objs struct {
		Hook *ebpf.Program `ebpf:"hook"`
	}
	opts, err := kernelbtf.Options(kernelTypes)
	if err != nil {
		return nil, err
	}
	opts.MapReplacements, opts.Programs.LogSizeStart = maps, 1<<20
	if err := specOf(spec, prog, "hook").LoadAndAssign(&objs, opts); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return objs.Hook, nil
}

// specOf is a copy of spec with only its program prog, named as: a
// copy of every program for each one loaded was a tenth of the CPU
// time to start.
func specOf(spec *ebpf.CollectionSpec, prog, as string) *ebpf.CollectionSpec {
	s := &ebpf.CollectionSpec{
		Maps:      make(map[string]*ebpf.MapSpec, len(spec.Maps)),
		Programs:  map[string]*ebpf.ProgramSpec{as: spec.Programs[prog].Copy()},
		Variables: make(map[string]*ebpf.VariableSpec, len(spec.Variables)),
		ByteOrder: spec.ByteOrder,
		Types:     spec.Types.Copy(),
	}
	for n, m := range spec.Maps {
		s.Maps[n] = m.Copy()
	}
	for n, v := range spec.Variables {
		s.Variables[n] = v.Copy()
	}
	return s
}

// progForArgs is the program of byArgs for a tracepoint of args
// arguments: the one for the most arguments up to args; "" if none.
func progForArgs(byArgs map[int]string, args int) string {
	best, prog := -1, ""
	for n, p := range byArgs {
		if n <= args && n > best {
			best, prog = n, p
		}
	}
	return prog
}
