// Command etcd is the upstream etcd server (go.etcd.io/etcd/server/v3 etcdmain), at the version
// k8s.io/kubernetes itself requires (go.mod), so the API server meets the etcd it is tested with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
