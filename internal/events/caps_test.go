package events

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/socktrace/socktrace/internal/privs"
)

// TestPrivilegeMessage checks that the privilege error names what this
// process lacks, for CapEff values seen with setpriv on Linux 6.18.
func TestPrivilegeMessage(t *testing.T) {
	eperm := fmt.Errorf("load: %w", os.ErrPermission)
	tracefs := fmt.Errorf("attach: reading trace event ID: %w",
		&fs.PathError{Op: "open", Path: "/sys/kernel/tracing/events/sock/inet_sock_set_state/id", Err: syscall.EACCES})
	tests := []struct {
		name   string
		caps   privs.Set
		known  bool
		cause  error
		userns string
		want   []string
		not    []string
	}{
		{"no capabilities", 0, true, nil, "",
			[]string{"needs root", "CAP_BPF", "sudo", "lacks CAP_BPF and CAP_PERFMON:", "grant them", "setcap", "AmbientCapabilities"}, nil},
		{"no CAP_PERFMON", privs.Of(privs.BPF), true, nil, "",
			[]string{"needs root", "lacks CAP_PERFMON:", "grant it", "sudo"}, []string{"lacks CAP_BPF"}},
		{"no CAP_BPF", privs.Of(privs.Perfmon, privs.SysPtrace), true, eperm, "",
			[]string{"lacks CAP_BPF:"}, []string{"CAP_PERFMON:"}},
		{"cannot tell", 0, false, nil, "",
			[]string{"needs root", "CAP_BPF", "CAP_PERFMON", "sudo"}, []string{"lacks"}},
		{"tracefs", privs.Of(privs.BPF, privs.Perfmon), true, tracefs, "",
			[]string{"/sys/kernel/tracing/events/sock/inet_sock_set_state/id", "CAP_DAC_READ_SEARCH, which this process lacks", "--attach tp_btf"}, nil},
		{"tracefs readable", privs.Of(privs.BPF, privs.Perfmon, privs.DacReadSearch), true, tracefs, "",
			[]string{"kernel refused"}, []string{"CAP_DAC_READ_SEARCH"}},
		{"refused anyway", privs.Of(privs.BPF, privs.Perfmon), true, eperm, "",
			[]string{"has CAP_BPF and CAP_PERFMON, yet the kernel refused", "security module"}, []string{"lacks"}},
		{"user namespace", privs.All, true, eperm, "0 1000 1",
			[]string{"user namespace (uid_map 0 1000 1", "host"}, []string{"lacks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := privilegeMessage(tt.caps, tt.known, tt.cause, tt.userns)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(msg, w) {
					t.Errorf("message has %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestPrivilegeError(t *testing.T) {
	cause := fmt.Errorf("load: %w", os.ErrPermission)
	err := privilegeError(cause)
	if !errors.Is(err, ErrPrivileges) {
		t.Errorf("%v is not ErrPrivileges", err)
	}
	if !strings.HasSuffix(err.Error(), "("+cause.Error()+")") {
		t.Errorf("%v does not end with its cause", err)
	}
}

// TestCheckPrivileges: root (as the privileged tests run) passes.
func TestCheckPrivileges(t *testing.T) {
	caps, err := privs.Effective()
	if err != nil {
		t.Skip(err)
	}
	err = checkPrivileges()
	if lacks := caps.Lacks(privs.Trace); (len(lacks) == 0) != (err == nil) {
		t.Errorf("CapEff %x: checkPrivileges() = %v", caps, err)
	}
}
