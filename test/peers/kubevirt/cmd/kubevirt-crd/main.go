// Command kubevirt-crd prints the KubeVirt CustomResourceDefinition (kubevirts.kubevirt.io)
// exactly as KubeVirt's own operator generates it at the pinned version, as JSON (valid YAML).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/components"
)

func main() {
	crd, err := components.NewKubeVirtCrd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(crd); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
