// Package cri names pods and containers by asking the container runtime
// over its CRI socket (k8s.io/cri-api runtime/v1: ListPodSandbox and
// ListContainers), as crictl and the kubelet do: the runtime knows every
// pod sandbox's namespace, name and UID, and every container's name and
// sandbox.
//
// Answers are cached; a key not in the cache makes a lookup list the
// runtime's sandboxes and containers again, at most once per MinRefresh
// (once per FailedRefresh after a failure). A socket that is absent or
// refuses is told once, on stderr, and then only retried quietly.
package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Sockets are where runtimes listen by default, in the order they are
// looked for when no socket is named: containerd, cri-o, k3s's containerd.
var Sockets = []string{
	"/run/containerd/containerd.sock",
	"/run/crio/crio.sock",
	"/run/k3s/containerd/containerd.sock",
}

const (
	maxEntries = 1 << 16         // sandboxes, and containers, taken from one listing
	maxName    = 253             // longest namespace, pod or container name taken
	maxMsg     = 64 << 20        // largest listing accepted from the runtime (the kubelet's 16 MiB, with room)
	defTimeout = 2 * time.Second // one listing
)

// Pod is a pod sandbox as the runtime names it.
type Pod struct{ Namespace, Name, UID string }

type ctrEntry struct {
	name string
	pod  Pod
}

// Client asks one runtime. It is safe for concurrent use; a lookup that
// lists blocks the others for at most Timeout.
type Client struct {
	// MinRefresh bounds how often a key not in the cache makes a lookup
	// list again; FailedRefresh, after a listing failed. Timeout bounds
	// one listing. Warn receives the one line said when the runtime cannot
	// be asked (default: stderr). Set them before the first lookup.
	MinRefresh, FailedRefresh, Timeout time.Duration
	Warn                               func(msg string)

	root, path string // path "": the first of Sockets found under root
	now        func() time.Time

	mu      sync.Mutex
	conn    *grpc.ClientConn
	rt      runtimeapi.RuntimeServiceClient
	using   string              // the socket conn is for
	runtime string              // the runtime's name, as its Version says
	pods    map[string]Pod      // by UID without dashes
	boxes   map[string]Pod      // by sandbox id
	ctrs    map[string]ctrEntry // by container id
	next    time.Time           // no listing before (zero: never listed)
	warned  bool
	lastErr error
}

// New returns a Client for the runtime listening at path under root (the
// host's /), or for the first of Sockets found there when path is "".
// Nothing is asked until the first lookup.
func New(root, path string) *Client {
	return &Client{
		MinRefresh: time.Second, FailedRefresh: 30 * time.Second, Timeout: defTimeout,
		Warn: func(msg string) { fmt.Fprintf(os.Stderr, "socktrace: %s\n", msg) },
		root: strings.TrimSuffix(root, "/"), path: path, now: time.Now,
	}
}

// Close closes the connection to the runtime, if any.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.rt, c.using = nil, nil, ""
	return err
}

// Err is why the last listing failed (nil: it did not, or none was made).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Runtime is the name of the runtime that answered last ("containerd",
// "cri-o", ...), "" if none did.
func (c *Client) Runtime() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runtime
}

// Pod returns the pod sandbox with this UID (dashed, or a static pod's 32
// hex digits).
func (c *Client) Pod(uid string) (Pod, bool) {
	key := strings.ReplaceAll(strings.ToLower(uid), "-", "")
	if key == "" {
		return Pod{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pods[key]
	if !ok && c.list() {
		p, ok = c.pods[key]
	}
	return p, ok
}

// Container returns the name of the container with this id (the full id;
// a prefix of 12 or more characters also matches if unique) and its pod.
// A sandbox's own id (its pause container) gives the pod and name "".
func (c *Client) Container(id string) (name string, pod Pod, ok bool) {
	id = strings.ToLower(id)
	if len(id) < 12 || len(id) > 128 {
		return "", Pod{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.find(id)
	if !ok && c.list() {
		e, ok = c.find(id)
	}
	return e.name, e.pod, ok
}

func (c *Client) find(id string) (ctrEntry, bool) {
	if e, ok := c.ctrs[id]; ok {
		return e, true
	}
	if p, ok := c.boxes[id]; ok {
		return ctrEntry{pod: p}, true
	}
	if len(id) >= 64 {
		return ctrEntry{}, false
	}
	var hit ctrEntry
	n := 0
	for k, e := range c.ctrs {
		if strings.HasPrefix(k, id) {
			hit, n = e, n+1
		}
	}
	for k, p := range c.boxes {
		if strings.HasPrefix(k, id) {
			hit, n = ctrEntry{pod: p}, n+1
		}
	}
	return hit, n == 1
}

// list lists the runtime's sandboxes and containers if due, replacing the
// cache; it reports whether the cache was replaced. Called with c.mu held.
func (c *Client) list() bool {
	now := c.now()
	if !c.next.IsZero() && now.Before(c.next) {
		return false
	}
	c.next = now.Add(c.MinRefresh)
	pods, boxes, ctrs, err := c.listAll()
	c.lastErr = err
	if err != nil {
		c.next = now.Add(max(c.FailedRefresh, c.MinRefresh))
		if !c.warned && err != errNoSocket {
			c.warned = true
			c.Warn(err.Error())
		}
		return false
	}
	c.pods, c.boxes, c.ctrs = pods, boxes, ctrs
	return true
}

// errNoSocket: no socket named and none of Sockets found (nothing to say).
var errNoSocket = fmt.Errorf("no CRI socket found")

func (c *Client) listAll() (pods, boxes map[string]Pod, ctrs map[string]ctrEntry, err error) {
	if err := c.connect(); err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	if c.runtime == "" {
		v, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
		if err != nil {
			return nil, nil, nil, c.failed("Version", err)
		}
		if name := strings.ToLower(v.GetRuntimeName()); valid(name) {
			c.runtime = name
		}
	}
	sb, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, nil, nil, c.failed("ListPodSandbox", err)
	}
	cs, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, nil, nil, c.failed("ListContainers", err)
	}
	pods, boxes = map[string]Pod{}, map[string]Pod{}
	for _, s := range sb.GetItems() {
		if len(boxes) >= maxEntries {
			break
		}
		m := s.GetMetadata()
		p := Pod{Namespace: m.GetNamespace(), Name: m.GetName(), UID: m.GetUid()}
		if s.GetId() == "" || !valid(p.Namespace) || !valid(p.Name) || p.UID == "" || len(p.UID) > 64 {
			continue
		}
		boxes[strings.ToLower(s.GetId())] = p
		key := strings.ReplaceAll(strings.ToLower(p.UID), "-", "")
		// A pod has a sandbox per attempt: the ready one, else any.
		if _, seen := pods[key]; !seen || s.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			pods[key] = p
		}
	}
	ctrs = map[string]ctrEntry{}
	for _, x := range cs.GetContainers() {
		if len(ctrs) >= maxEntries {
			break
		}
		name := x.GetMetadata().GetName()
		p, ok := boxes[strings.ToLower(x.GetPodSandboxId())]
		if x.GetId() == "" || !valid(name) || !ok {
			continue
		}
		ctrs[strings.ToLower(x.GetId())] = ctrEntry{name: name, pod: p}
	}
	return pods, boxes, ctrs, nil
}

// connect finds the socket and makes the connection, once; the
// connection itself is made by the first call on it.
func (c *Client) connect() error {
	if c.rt != nil {
		return nil
	}
	path := c.path
	if path == "" {
		for _, s := range Sockets {
			if st, err := os.Stat(c.root + s); err == nil && st.Mode().Type() == fs.ModeSocket {
				path = s
				break
			}
		}
		if path == "" {
			return errNoSocket
		}
	} else if _, err := os.Stat(c.root + path); err != nil {
		return fmt.Errorf("CRI socket %s: %w: no pod names from the runtime until it answers (is it running? name its socket with --cri-socket PATH, under --host-root, or --cri-socket none)",
			c.root+path, errors.Unwrap(err))
	}
	conn, err := grpc.NewClient("unix://"+filepath.Clean(c.root+path),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg)))
	if err != nil {
		return fmt.Errorf("CRI socket %s: %w", c.root+path, err)
	}
	c.conn, c.rt, c.using = conn, runtimeapi.NewRuntimeServiceClient(conn), c.root+path
	return nil
}

// failed makes the error of a call that failed; the connection is
// dropped, to be made again (perhaps to another socket) next time.
func (c *Client) failed(call string, err error) error {
	using := c.using
	if c.conn != nil {
		c.conn.Close()
	}
	c.conn, c.rt, c.using, c.runtime = nil, nil, "", ""
	return fmt.Errorf("CRI socket %s: %s: %s: no pod names from the runtime until it answers (is it running? name its socket with --cri-socket PATH, under --host-root, or --cri-socket none)",
		using, call, why(err))
}

// why is a call's error as a person reads it: "connection refused"
// rather than gRPC's story of the dial.
func why(err error) string {
	m := status.Convert(err).Message()
	if i := strings.LastIndex(m, "connect: "); i >= 0 {
		return strings.TrimRight(m[i+len("connect: "):], `"`)
	}
	return m
}

// valid accepts a DNS-1123 name's characters, at most maxName of them.
func valid(s string) bool {
	if s == "" || len(s) > maxName {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
