// Command kubevirt-hostdevices runs KubeVirt's own host-device code on our output:
//
//	kubevirt-hostdevices launcher   stdin {"env":{...},"gpus":[...],"hostDevices":[...]}
//	    virt-launcher's address pools (PCI_RESOURCE_* / MDEV_PCI_RESOURCE_* read from the
//	    process environment, as in the compute container) and host-device creation for a
//	    VMI's spec.domain.devices.gpus and .hostDevices. Prints the libvirt <hostdev>s.
//	kubevirt-hostdevices handler   stdin: a KubeVirt CR (JSON)
//	    virt-handler's permitted-host-devices logic: which device plugins KubeVirt itself
//	    would start on this node, with their device IDs. It walks /sys/bus/pci/devices (a
//	    package variable in KubeVirt that a go:linkname alias does not redirect), so tests run it
//	    in a mount namespace with a materialised host tree bind-mounted on /sys.
//
// Output: one JSON document on stdout; {"error": "..."} and exit 1 when KubeVirt refuses.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	_ "unsafe" // go:linkname

	v1 "kubevirt.io/api/core/v1"

	"kubevirt.io/kubevirt/pkg/testutils"
	devicemanager "kubevirt.io/kubevirt/pkg/virt-handler/device-manager"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/api"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/device/hostdevice/generic"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/device/hostdevice/gpu"
)

// updatePermittedHostDevicePlugins is the DeviceController method virt-handler runs on
// every KubeVirt CR change to decide which of its own device plugins to start.
//
//go:linkname updatePermittedHostDevicePlugins kubevirt.io/kubevirt/pkg/virt-handler/device-manager.(*DeviceController).updatePermittedHostDevicePlugins
func updatePermittedHostDevicePlugins(c *devicemanager.DeviceController) []devicemanager.Device

func fail(err error) {
	_ = json.NewEncoder(os.Stdout).Encode(map[string]string{"error": err.Error()})
	os.Exit(1)
}

type launcherInput struct {
	Env         map[string]string `json:"env"`
	GPUs        []v1.GPU          `json:"gpus"`
	HostDevices []v1.HostDevice   `json:"hostDevices"`
}

type hostDev struct {
	Alias   string `json:"alias"`
	Type    string `json:"type"`
	Address string `json:"address,omitempty"`
	MDEV    string `json:"mdev,omitempty"`
}

func view(devs []api.HostDevice) []hostDev {
	out := []hostDev{}
	for _, d := range devs {
		h := hostDev{Type: d.Type}
		if d.Alias != nil {
			h.Alias = d.Alias.GetName()
		}
		if d.Source.Address != nil {
			a := d.Source.Address
			h.Address = fmt.Sprintf("%s:%s:%s.%s", trimHex(a.Domain, 4), trimHex(a.Bus, 2), trimHex(a.Slot, 2), trimHex(a.Function, 1))
		}
		if d.Source.Address == nil && d.Type == "mdev" {
			h.MDEV = fmt.Sprint(d.Source)
		}
		out = append(out, h)
	}
	return out
}

// trimHex turns libvirt's "0x0000" into "0000".
func trimHex(s string, width int) string {
	if len(s) > 2 && s[:2] == "0x" {
		s = s[2:]
	}
	for len(s) < width {
		s = "0" + s
	}
	return s
}

func launcher() {
	var in launcherInput
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail(err)
	}
	// The compute container gets kubelet's device-plugin env; the pools read the process env.
	for k, v := range in.Env {
		if err := os.Setenv(k, v); err != nil {
			fail(err)
		}
	}
	out := map[string]any{}
	if len(in.GPUs) > 0 {
		devs, err := gpu.CreateHostDevices(in.GPUs)
		if err != nil {
			fail(err)
		}
		out["gpus"] = view(devs)
	}
	if len(in.HostDevices) > 0 {
		devs, err := generic.CreateHostDevices(in.HostDevices)
		if err != nil {
			fail(err)
		}
		out["hostDevices"] = view(devs)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

type plugin struct {
	ResourceName string   `json:"resourceName"`
	DeviceIDs    []string `json:"deviceIds"`
}

func handler() {
	var kv v1.KubeVirt
	if err := json.NewDecoder(os.Stdin).Decode(&kv); err != nil {
		fail(err)
	}
	config, _, _ := testutils.NewFakeClusterConfigUsingKV(&kv)
	controller := devicemanager.NewDeviceController("node-a", 110, "rw", nil, config, nil)
	plugins := []plugin{}
	for _, dev := range updatePermittedHostDevicePlugins(controller) {
		p := plugin{ResourceName: dev.GetDeviceName(), DeviceIDs: deviceIDs(dev)}
		plugins = append(plugins, p)
	}
	sort.Slice(plugins, func(i, j int) bool { return plugins[i].ResourceName < plugins[j].ResourceName })
	// What virt-handler saw, so a test can tell "no plugin" from "config not read" or "no device found".
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"plugins": plugins, "permittedHostDevices": config.GetPermittedHostDevices()})
}

// deviceIDs reads the device list a KubeVirt plugin would send in ListAndWatch
// (DevicePluginBase.devs, unexported; read-only through reflect).
func deviceIDs(dev devicemanager.Device) []string {
	ids := []string{}
	v := reflect.ValueOf(dev)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	base := v.FieldByName("DevicePluginBase")
	if !base.IsValid() {
		return ids
	}
	devs := base.Elem().FieldByName("devs")
	for i := 0; i < devs.Len(); i++ {
		ids = append(ids, devs.Index(i).Elem().FieldByName("ID").String())
	}
	sort.Strings(ids)
	return ids
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubevirt-hostdevices launcher|handler")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "launcher":
		launcher()
	case "handler":
		handler()
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
