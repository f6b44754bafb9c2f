// Package k8smanifest decodes deploy/kubernetes/daemonset.yaml into the
// Kubernetes API types as strictly as the API server does with field
// validation on, for the tests that check the manifest and for those that
// run what it describes.
package k8smanifest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Manifest is the objects of daemonset.yaml.
type Manifest struct {
	Namespace      *corev1.Namespace
	ServiceAccount *corev1.ServiceAccount
	DaemonSet      *appsv1.DaemonSet
}

// ReadFile reads and decodes the manifest at path.
func ReadFile(path string) (Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, err
	}
	m, err := Decode(data)
	if err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Decode decodes a manifest holding a Namespace, a ServiceAccount and a
// DaemonSet, each strictly (see DecodeStrict).
func Decode(data []byte) (Manifest, error) {
	var m Manifest
	for i, doc := range splitDocuments(data) {
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return m, err
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			m.Namespace = new(corev1.Namespace)
			obj = m.Namespace
		case "v1 ServiceAccount":
			m.ServiceAccount = new(corev1.ServiceAccount)
			obj = m.ServiceAccount
		case "apps/v1 DaemonSet":
			m.DaemonSet = new(appsv1.DaemonSet)
			obj = m.DaemonSet
		default:
			return m, fmt.Errorf("document %d: unexpected %s %s", i, tm.APIVersion, tm.Kind)
		}
		if err := DecodeStrict(doc, obj); err != nil {
			return m, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
	}
	if m.Namespace == nil || m.ServiceAccount == nil || m.DaemonSet == nil {
		return m, errors.New("want a Namespace, a ServiceAccount and a DaemonSet")
	}
	return m, nil
}

// DecodeStrict decodes one YAML document into obj the way the API server
// does with field validation on: unknown fields, duplicate fields and
// fields spelt in the wrong case are errors. (encoding/json, which
// sigs.k8s.io/yaml.UnmarshalStrict uses, matches field names
// case-insensitively, so it would accept readOnlyRootFileSystem.)
func DecodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := k8sjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// splitDocuments splits a multi-document YAML stream at its "---" lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(stripComments(cur.Bytes()))) > 0 {
			docs = append(docs, slices.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for line := range bytes.Lines(data) {
		if s := strings.TrimRight(string(line), " \t\r\n"); s == "---" || strings.HasPrefix(s, "--- ") {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

func stripComments(b []byte) []byte {
	var out []byte
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}
