package identity_test

import (
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/testkit/testcgroup"
	"github.com/socktrace/socktrace/internal/testkit/testpods"
)

func TestWorkloadAndLabel(t *testing.T) {
	id64 := strings.Repeat("ab", 32)
	tests := []struct {
		id           *identity.Identity
		workload, lb string
	}{
		{nil, "", ""},
		{&identity.Identity{Cgroup: "/"}, "", ""},
		{&identity.Identity{Unit: "nginx.service"}, "nginx.service", "unit:nginx.service"},
		{&identity.Identity{ContainerID: id64, Runtime: "docker"}, "docker/abababababab", "container:docker/abababababab"},
		{&identity.Identity{ContainerID: "web1", Runtime: "lxc"}, "lxc/web1", "container:lxc/web1"},
		{&identity.Identity{ContainerID: id64, PodUID: "u", Namespace: "shop", Pod: "checkout-1", Container: "app"},
			"shop/checkout-1/app", "pod:shop/checkout-1/app"},
		{&identity.Identity{ContainerID: id64, PodUID: "u", Namespace: "shop", Pod: "checkout-1"},
			"shop/checkout-1/abababababab", "pod:shop/checkout-1/abababababab"},
		{&identity.Identity{PodUID: "u", Namespace: "shop", Pod: "checkout-1"}, "shop/checkout-1", "pod:shop/checkout-1"},
	}
	for _, tc := range tests {
		if got := tc.id.Workload(); got != tc.workload {
			t.Errorf("%+v: Workload %q, want %q", tc.id, got, tc.workload)
		}
		if got := tc.id.Label(); got != tc.lb {
			t.Errorf("%+v: Label %q, want %q", tc.id, got, tc.lb)
		}
	}
}

// TestResolver: a real cgroup named as the kubelet's systemd driver and
// containerd name it, with the kubelet's log directories, resolves by
// id, by path and by a process in it to the pod's names.
func TestResolver(t *testing.T) {
	const uid = "0f1e2d3c-4b5a-6978-8899-aabbccddeeff"
	ctr := strings.Repeat("5e", 32)
	path := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") +
		".slice/cri-containerd-" + ctr + ".scope"
	cg := testcgroup.New(t, path)
	logs := t.TempDir()
	r := identity.NewResolver("/", logs, identity.NoCRI)
	r.Cgroups().MinRefresh = 0

	// The pod's logs do not exist yet: the ids are known, not the names.
	id := r.ByID(cg.ID, 0)
	if id == nil || id.Cgroup != path || id.ContainerID != ctr || id.Runtime != "containerd" || id.PodUID != uid || id.Pod != "" {
		t.Fatalf("before the pod's logs: %+v", id)
	}
	testpods.Write(t, logs, testpods.Pod{Namespace: "shop", Name: "checkout-7d9f8b6c5-x2x4z", UID: uid,
		Containers: map[string]string{"checkout": ctr}})
	// Names are looked for again after a while: a fresh resolver sees them.
	r = identity.NewResolver("/", logs, identity.NoCRI)
	for _, got := range []*identity.Identity{r.ByID(cg.ID, 0), r.ByPath(path)} {
		if got == nil || got.Namespace != "shop" || got.Pod != "checkout-7d9f8b6c5-x2x4z" || got.Container != "checkout" {
			t.Errorf("with the pod's logs: %+v", got)
		}
	}
	cmd := cg.Start(t, "")
	var got *identity.Identity
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && (got == nil || got.Cgroup != path); {
		got = r.ByPID(uint32(cmd.Process.Pid))
		time.Sleep(10 * time.Millisecond)
	}
	if got == nil || got.Pod != "checkout-7d9f8b6c5-x2x4z" {
		t.Errorf("by pid %d: %+v", cmd.Process.Pid, got)
	}
	if r.ByID(cg.ID, 0) != r.ByID(cg.ID, 0) {
		t.Error("the same cgroup gave two identities: they are cached")
	}
	if got := r.ByID(1<<62, 0); got != nil {
		t.Errorf("an unknown id and no pid: %+v, want nil", got)
	}
}

// TestRecent: the one-entry cache gives what the resolver gives, the same
// answer within RecentFor of the first, a fresh one after, and follows a
// change of cgroup at once.
func TestRecent(t *testing.T) {
	a := testcgroup.New(t, "/socktrace-recent-a.service")
	b := testcgroup.New(t, "/socktrace-recent-b.service")
	r := identity.NewResolver("/", "", identity.NoCRI)
	r.Cgroups().MinRefresh = 0
	var c identity.Recent
	const k = uint64(1e12)
	ida := c.ByID(r, a.ID, 0, k)
	if ida == nil || ida.Unit != "socktrace-recent-a.service" {
		t.Fatalf("first answer for a: %+v", ida)
	}
	if got := c.ByID(r, b.ID, 0, k+1); got == nil || got.Unit != "socktrace-recent-b.service" {
		t.Fatalf("b right after a: %+v", got)
	}
	if got := c.ByID(r, a.ID, 0, k+2); got != ida {
		t.Fatalf("a again: %+v, want the resolver's %+v", got, ida)
	}
	// Within RecentFor the cached answer, even if the resolver would now
	// say otherwise; after it, the resolver is asked again.
	c2 := identity.Recent{}
	other := identity.NewResolver("/", "", identity.NoCRI) // a resolver with its own cache: another *Identity
	other.Cgroups().MinRefresh = 0
	first := c2.ByID(r, a.ID, 0, k)
	if got := c2.ByID(other, a.ID, 0, k+uint64(identity.RecentFor)-1); got != first {
		t.Errorf("within RecentFor: %p, want the cached %p", got, first)
	}
	if got := c2.ByID(other, a.ID, 0, k+uint64(identity.RecentFor)); got == first || got == nil || got.Unit != first.Unit {
		t.Errorf("after RecentFor: %p %+v, want a fresh answer from the other resolver", got, got)
	}
	if got := c2.ByID(r, 1<<62, 0, k); got != nil {
		t.Errorf("an unknown id and no pid: %+v, want nil", got)
	}
}
