package cri_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/socktrace/socktrace/internal/owner/cri"
)

// runtime serves the two CRI calls socktrace makes over a real unix
// socket, from lists the test changes, and counts the listings. (A real
// containerd answers them in cmd/socktrace's TestCRIPodNames; this one
// runs everywhere the package's tests run, VMs included.)
type runtime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	mu    sync.Mutex
	boxes []*runtimeapi.PodSandbox
	ctrs  []*runtimeapi.Container
	lists int
}

func (r *runtime) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists++
	return &runtimeapi.ListPodSandboxResponse{Items: r.boxes}, nil
}

func (r *runtime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "cri-o", RuntimeVersion: "1.31.0", RuntimeApiVersion: "v1"}, nil
}

func (r *runtime) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &runtimeapi.ListContainersResponse{Containers: r.ctrs}, nil
}

func (r *runtime) add(box *runtimeapi.PodSandbox, ctrs ...*runtimeapi.Container) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if box != nil {
		r.boxes = append(r.boxes, box)
	}
	r.ctrs = append(r.ctrs, ctrs...)
}

func (r *runtime) listings() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lists
}

// serve serves rt at root+path.
func serve(t *testing.T, root, path string, rt *runtime) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(root+path), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", root+path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(s, rt)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
}

func box(id, ns, name, uid string) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{Id: id, State: runtimeapi.PodSandboxState_SANDBOX_READY,
		Metadata: &runtimeapi.PodSandboxMetadata{Namespace: ns, Name: name, Uid: uid}}
}

func ctr(id, box, name string) *runtimeapi.Container {
	return &runtimeapi.Container{Id: id, PodSandboxId: box, Metadata: &runtimeapi.ContainerMetadata{Name: name}}
}

// warnings collects what a client says.
func warnings(c *cri.Client) *[]string {
	var got []string
	c.Warn = func(msg string) { got = append(got, msg) }
	return &got
}

func TestNames(t *testing.T) {
	const uid = "0f1e2d3c-4b5a-6978-8899-aabbccddeeff"
	sb, app, side := strings.Repeat("5b", 32), strings.Repeat("a1", 32), strings.Repeat("a2", 32)
	rt := &runtime{}
	rt.add(box(sb, "shop", "checkout-7d9f8b6c5-x2x4z", uid), ctr(app, sb, "checkout"))
	rt.add(box(strings.Repeat("5c", 32), "shop", "Bad_Name", "u2"))                // not a DNS-1123 name: skipped
	rt.add(nil, ctr(strings.Repeat("a3", 32), strings.Repeat("ff", 32), "orphan")) // no sandbox: skipped
	root := t.TempDir()
	serve(t, root, "/run/crio/crio.sock", rt) // found by looking, under root
	c := cri.New(root, "")
	c.MinRefresh = 0
	warned := warnings(c)
	t.Cleanup(func() { c.Close() })

	want := cri.Pod{Namespace: "shop", Name: "checkout-7d9f8b6c5-x2x4z", UID: uid}
	tests := []struct {
		key     string
		byPod   bool
		name    string
		pod     cri.Pod
		unknown bool
	}{
		{key: uid, byPod: true, pod: want},
		{key: strings.ReplaceAll(uid, "-", ""), byPod: true, pod: want},
		{key: "ffffffff-4b5a-6978-8899-aabbccddeeff", byPod: true, unknown: true},
		{key: "u2", byPod: true, unknown: true},
		{key: app, name: "checkout", pod: want},
		{key: strings.ToUpper(app[:12]), name: "checkout", pod: want}, // a unique prefix
		{key: sb, pod: want},                                          // the sandbox's own id: no container name
		{key: strings.Repeat("a3", 32), unknown: true},
		{key: "a1a1", unknown: true}, // too short to be an id
	}
	for _, tc := range tests {
		var name string
		var pod cri.Pod
		var ok bool
		if tc.byPod {
			pod, ok = c.Pod(tc.key)
		} else {
			name, pod, ok = c.Container(tc.key)
		}
		if ok == tc.unknown || name != tc.name || pod != tc.pod {
			t.Errorf("%s: %q %+v %v, want %q %+v %v", tc.key, name, pod, ok, tc.name, tc.pod, !tc.unknown)
		}
	}

	// A container started later is found by the listing its miss makes.
	rt.add(nil, ctr(side, sb, "envoy"))
	if name, _, ok := c.Container(side); !ok || name != "envoy" {
		t.Errorf("a container started after the first listing: %q %v, want envoy", name, ok)
	}
	// Misses list again at most once per MinRefresh.
	c.MinRefresh = time.Hour
	c.Container(side) // (hit: no listing, but the next miss is due now)
	n := rt.listings()
	for range 5 {
		if _, _, ok := c.Container(strings.Repeat("b0", 32)); ok {
			t.Fatal("an unknown container was found")
		}
	}
	if got := rt.listings() - n; got != 1 {
		t.Errorf("5 misses within MinRefresh listed %d times, want 1", got)
	}
	if got := c.Runtime(); got != "cri-o" {
		t.Errorf("Runtime %q, want cri-o (its Version's RuntimeName)", got)
	}
	if len(*warned) != 0 || c.Err() != nil {
		t.Errorf("a runtime that answers: warned %q, Err %v", *warned, c.Err())
	}
}

// TestUnanswered: a socket that is absent, or refuses, is said once; with
// no socket named and none found, nothing is said.
func TestUnanswered(t *testing.T) {
	refusing := func(t *testing.T, root string) {
		// A bound socket nobody listens on: connect() is refused.
		path := filepath.Join(root, "run/containerd/containerd.sock")
		os.MkdirAll(filepath.Dir(path), 0o755)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
	}
	tests := []struct {
		name, path string
		setup      func(*testing.T, string)
		want       string // in the one line said; "" for none
	}{
		{"absent", "/run/containerd/containerd.sock", nil, "no such file or directory"},
		{"refuses", "/run/containerd/containerd.sock", refusing, "connection refused"},
		{"detected, refuses", "", refusing, "connection refused"},
		{"none found", "", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, root)
			}
			c := cri.New(root, tc.path)
			c.MinRefresh, c.FailedRefresh, c.Timeout = 0, 0, 5*time.Second
			warned := warnings(c)
			defer c.Close()
			for range 3 {
				if _, ok := c.Pod("0f1e2d3c-4b5a-6978-8899-aabbccddeeff"); ok {
					t.Fatal("a pod named by no runtime")
				}
				if _, _, ok := c.Container(strings.Repeat("a1", 32)); ok {
					t.Fatal("a container named by no runtime")
				}
			}
			switch {
			case tc.want == "" && len(*warned) != 0:
				t.Errorf("said %q, want nothing", *warned)
			case tc.want != "" && len(*warned) != 1:
				t.Errorf("said %d lines %q, want 1", len(*warned), *warned)
			case tc.want != "" && (!strings.Contains((*warned)[0], tc.want) || !strings.Contains((*warned)[0], "--cri-socket") ||
				!strings.Contains((*warned)[0], root+"/run/containerd/containerd.sock")):
				t.Errorf("said %q, want the socket, %q and what to do (--cri-socket)", (*warned)[0], tc.want)
			}
		})
	}
}
