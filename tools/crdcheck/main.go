// Command crdcheck validates rendered custom resources (prometheus-operator's ServiceMonitor and
// PrometheusRule, KEDA's ScaledObject and TriggerAuthentication) by decoding each one strictly
// into the projects' own Go API types: an unknown or misspelt field, or a value of the wrong
// type, is an error. kubernetes-validate covers the built-in kinds; it has no schemas for these.
//
// Usage: crdcheck < manifests.yaml   (multi-document YAML, e.g. the output of `helm template`)
// It prints one line per checked resource and exits 1 if any failed.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// newObject returns an empty typed object for the kinds this tool knows, or nil.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	case "keda.sh/v1alpha1/ScaledObject":
		return &kedav1alpha1.ScaledObject{}
	case "keda.sh/v1alpha1/TriggerAuthentication":
		return &kedav1alpha1.TriggerAuthentication{}
	}
	return nil
}

func main() {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	failed := false
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "crdcheck: cannot split the YAML stream:", err)
			os.Exit(2)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta typeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			fmt.Fprintln(os.Stderr, "crdcheck: not a YAML object:", err)
			os.Exit(2)
		}
		obj := newObject(meta.APIVersion, meta.Kind)
		if obj == nil {
			continue
		}
		where := fmt.Sprintf("%s %s/%s", meta.APIVersion, meta.Kind, meta.Metadata.Name)
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			failed = true
			fmt.Printf("FAIL %s: %v\n", where, err)
			continue
		}
		fmt.Printf("ok %s\n", where)
	}
	if failed {
		os.Exit(1)
	}
}
