// Package testpods lays out, for tests, the log directories the kubelet
// keeps on a node: DIR/pods/NAMESPACE_POD_UID/CONTAINER/0.log, and the
// links DIR/containers/POD_NAMESPACE_CONTAINER-ID.log to them.
package testpods

import (
	"os"
	"path/filepath"
	"testing"
)

// Pod is a pod to lay out; Containers maps its containers' names to
// their ids (64 hex digits).
type Pod struct {
	Namespace, Name, UID string
	Containers           map[string]string
}

// Write lays out pods under dir (the kubelet's /var/log).
func Write(t testing.TB, dir string, pods ...Pod) {
	t.Helper()
	for _, p := range pods {
		podDir := filepath.Join(dir, "pods", p.Namespace+"_"+p.Name+"_"+p.UID)
		for name, id := range p.Containers {
			log := filepath.Join(podDir, name, "0.log")
			must(t, os.MkdirAll(filepath.Dir(log), 0o755))
			must(t, os.WriteFile(log, nil, 0o644))
			must(t, os.MkdirAll(filepath.Join(dir, "containers"), 0o755))
			link := filepath.Join(dir, "containers", p.Name+"_"+p.Namespace+"_"+name+"-"+id+".log")
			must(t, os.Symlink(log, link))
		}
		must(t, os.MkdirAll(podDir, 0o755))
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
