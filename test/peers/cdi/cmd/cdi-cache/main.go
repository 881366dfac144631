// cdi-cache loads a CDI spec directory with the CDI library container runtimes use
// (tags.cncf.io/container-device-interface, pinned in go.mod) and prints, as JSON, the fully-qualified
// device names it resolved and the errors it recorded per spec file. The vitest peers suite
// (test/peers/cdi/cdi.test.ts) feeds it the specs src/cdi writes.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"tags.cncf.io/container-device-interface/pkg/cdi"
)

type result struct {
	Devices   []string            `json:"devices"`
	Errors    map[string][]string `json:"errors"`
	DirErrors map[string]string   `json:"dirErrors"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cdi-cache <spec-dir>")
		os.Exit(2)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(os.Args[1]), cdi.WithAutoRefresh(false))
	if err != nil {
		// NewCache refreshes once and reports the spec errors it met; they are printed below as well.
		fmt.Fprintln(os.Stderr, "refresh:", err)
	}
	out := result{Devices: cache.ListDevices(), Errors: map[string][]string{}, DirErrors: map[string]string{}}
	for path, errs := range cache.GetErrors() {
		for _, e := range errs {
			out.Errors[path] = append(out.Errors[path], e.Error())
		}
	}
	for dir, e := range cache.GetSpecDirErrors() {
		out.DirErrors[dir] = e.Error()
	}
	if out.Devices == nil {
		out.Devices = []string{}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
