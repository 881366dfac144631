// Command kube-scheduler is the upstream kube-scheduler (k8s.io/kubernetes/cmd/kube-scheduler at the
// version pinned in go.mod), unchanged: its DynamicResources plugin runs the structured-parameters
// allocator that assigns our ResourceSlice devices to ResourceClaims.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
