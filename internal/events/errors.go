package events

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/kernelbtf"
	"github.com/socktrace/socktrace/internal/privs"
)

// Errors Open returns for what the user must fix; test with errors.Is.
var (
	ErrPrivileges   = errors.New("not enough privileges")
	ErrNoBTF        = errors.New("kernel has no BTF")
	ErrKernelTooOld = errors.New("kernel too old")
	ErrAttach       = errors.New("cannot attach to inet_sock_set_state")
)

// checkPrivileges reads the effective capabilities: loading the program
// needs CAP_BPF and CAP_PERFMON (5.8+), or CAP_SYS_ADMIN; then it checks
// that the kernel lets the process create a map.
func checkPrivileges() error {
	caps, err := privs.Effective()
	if err != nil {
		return nil // cannot tell: let the kernel decide
	}
	if len(caps.Lacks(privs.Trace)) > 0 {
		return privilegeError(nil)
	}
	// The capabilities may not reach the kernel's checks (a user
	// namespace, a security module): a map it refuses says so now, where
	// later the refusal would look like a locked-memory limit (cilium/ebpf
	// takes it for a kernel without memcg accounting).
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if errors.Is(err, os.ErrPermission) {
		return privilegeError(fmt.Errorf("create a BPF map: %w", err))
	}
	if err == nil {
		m.Close()
	}
	return nil // other errors: let loading tell
}

// privilegeError is ErrPrivileges with what this process lacks; cause is
// the kernel's refusal, nil when the capabilities were checked first.
func privilegeError(cause error) error {
	caps, err := privs.Effective()
	msg := privilegeMessage(caps, err == nil, cause, userNamespace())
	if cause != nil {
		return fmt.Errorf("%w: %s (%v)", ErrPrivileges, msg, cause)
	}
	return fmt.Errorf("%w: %s", ErrPrivileges, msg)
}

// privilegeMessage says what socktrace needs and, when known (caps is
// the effective set), what this process lacks. userns is the process's
// uid_map when it is not the initial user namespace's, "" when it is.
func privilegeMessage(caps privs.Set, known bool, cause error, userns string) string {
	const needs = "socktrace loads a BPF program into the kernel, which needs root, or the capabilities CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8)"
	const grant = "setcap cap_bpf,cap_perfmon=ep on the binary, or systemd AmbientCapabilities=CAP_BPF CAP_PERFMON"
	if !known {
		return needs + ": run it as root (sudo), or grant them (" + grant + ")"
	}
	if missing := caps.Missing(privs.Trace); len(missing) > 0 {
		them := "it"
		if len(missing) > 1 {
			them = "them"
		}
		return fmt.Sprintf("%s; this process lacks %s: run it as root (sudo), or grant %s (%s)",
			needs, privs.Join(missing), them, grant)
	}
	if path, ok := tracefsPath(cause); ok && !caps.Has(privs.DacReadSearch) && !caps.Has(privs.DacOverride) {
		return fmt.Sprintf("%s, and the tracepoint attach method reads %s in tracefs, which only root can read: "+
			"it needs CAP_DAC_READ_SEARCH, which this process lacks: run it as root (sudo), grant CAP_DAC_READ_SEARCH, "+
			"or use --attach tp_btf or raw_tp, which do not read tracefs", needs, path)
	}
	if userns != "" {
		return fmt.Sprintf("%s; this process has CAP_BPF and CAP_PERFMON, yet the kernel refused: it runs in a user namespace "+
			"(uid_map %s: a container?), where capabilities do not reach the kernel's BPF checks: run it as root (sudo) "+
			"in the host's user namespace (a container: docker run --privileged, or a privileged pod)", needs, userns)
	}
	return needs + "; this process has CAP_BPF and CAP_PERFMON, yet the kernel refused: a security module (SELinux, AppArmor), " +
		"kernel lockdown or a seccomp filter may forbid BPF (or, before Linux 5.11, RLIMIT_MEMLOCK is too low); run it as root (sudo)"
}

// tracefsPath returns the tracefs file an error is about, if it is one.
func tracefsPath(err error) (string, bool) {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return "", false
	}
	if strings.HasPrefix(pe.Path, "/sys/kernel/tracing/") || strings.HasPrefix(pe.Path, "/sys/kernel/debug/tracing/") {
		return pe.Path, true
	}
	return "", false
}

// userNamespace returns the process's uid_map, one line, when it is not
// the initial user namespace's ("0 0 4294967295"); "" when it is, or
// when it cannot tell.
func userNamespace() string {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return ""
	}
	m := strings.Join(strings.Fields(string(b)), " ")
	if m == "0 0 4294967295" {
		return ""
	}
	return m
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelBTF returns the BTF to relocate against: the file given, or nil
// for the kernel's own, which it checks is there.
func kernelBTF(path string) (*btf.Spec, error) {
	if path != "" {
		spec, err := btf.LoadSpec(path)
		if err != nil {
			return nil, fmt.Errorf("%w: read --kernel-btf %s: %v", ErrNoBTF, path, err)
		}
		return spec, nil
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, fmt.Errorf("%w: kernel %s has no /sys/kernel/btf/vmlinux, and socktrace's CO-RE programs need the kernel's type information. "+
			"Use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian 11+, Ubuntu 20.10+, RHEL 8.2+ and most distributions since 2020 are), "+
			"or pass --kernel-btf FILE with a BTF file for this exact kernel (e.g. from BTFHub)", ErrNoBTF, kernelRelease())
	}
	return nil, nil
}

func checkRingBuf() error {
	err := features.HaveMapType(ebpf.RingBuf)
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%w: kernel %s has no BPF ring buffer; socktrace needs Linux 5.8 or later", ErrKernelTooOld, kernelRelease())
	}
	if errors.Is(err, os.ErrPermission) {
		return privilegeError(err)
	}
	return nil // other errors: let loading tell
}

// HaveCookieHelper says whether the kernel lets tracing programs call
// bpf_get_socket_cookie() (Linux 5.12 and later), by loading a tiny tp_btf
// program on inet_sock_set_state that calls it: nil if it does, an error
// wrapping ebpf.ErrNotSupported if it does not, another error if it
// cannot tell. kernelTypes is the kernel's BTF, nil for its own.
func HaveCookieHelper(kernelTypes *btf.Spec) error {
	cookieProbe.once.Do(func() {
		cookieProbe.err = probeCookieHelper(kernelTypes)
	})
	return cookieProbe.err
}

var cookieProbe struct {
	once sync.Once
	err  error
}

func probeCookieHelper(kernelTypes *btf.Spec) error {
	spec := &ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   "inet_sock_set_state",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord), // the struct sock *
			asm.FnGetSocketCookie.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	}
	// A collection of one, to find the attach target in the shared BTF
	// cache (a lone program parses the kernel's BTF again).
	opts, err := kernelbtf.Options(kernelTypes)
	if err != nil {
		return err
	}
	coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{"probe": spec}}, *opts)
	if err == nil {
		coll.Close()
		return nil
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) && errors.Is(err, unix.EINVAL) {
		for _, l := range ve.Log {
			if strings.Contains(l, "unknown func") || strings.Contains(l, "cannot use helper") {
				return fmt.Errorf("%w: kernel %s does not let tracing programs call bpf_get_socket_cookie (Linux 5.12+)", ebpf.ErrNotSupported, kernelRelease())
			}
		}
	}
	return fmt.Errorf("probe for bpf_get_socket_cookie in tracing programs: %w", err)
}

// verifierTail is how many lines of the verifier's log errors show.
const verifierTail = 12

// summarize shortens an error for the list of failed attach methods: a
// verifier rejection becomes its last log lines.
func summarize(err error) string {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	return fmt.Sprintf("the kernel's verifier rejected the program (%v)", ve.Cause)
}

func attachError(failures []string, verifier error) error {
	var b strings.Builder
	fmt.Fprintf(&b, " on kernel %s; tried:", kernelRelease())
	for _, f := range failures {
		b.WriteString("\n  ")
		b.WriteString(f)
	}
	var ve *ebpf.VerifierError
	if errors.As(verifier, &ve) {
		b.WriteString("\nlast lines of the verifier's log:")
		log := ve.Log
		if len(log) > verifierTail {
			log = log[len(log)-verifierTail:]
		}
		for _, l := range log {
			b.WriteString("\n  ")
			b.WriteString(l)
		}
		b.WriteString("\nThis is a bug in socktrace or a kernel it does not support yet: please report it with the output of `uname -r` and the lines above.")
	} else {
		b.WriteString("\nsocktrace needs a kernel with BPF tracing (Linux 5.8 or later with CONFIG_BPF_SYSCALL and BTF); " +
			"to force a method, use --attach (the tracepoint one needs tracefs: mount -t tracefs nodev /sys/kernel/tracing)")
	}
	return fmt.Errorf("%w%s", ErrAttach, b.String())
}
