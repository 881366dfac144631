// Command kubevirt-dra-reader runs KubeVirt's own DRA device-metadata reader (kubevirt.io/kubevirt
// v1.8.0, pkg/dra: GetPCIAddressForClaim) and virt-launcher's DRA GPU host-device builder
// (pkg/virt-launcher/virtwrap/device/hostdevice/dra: CreateDRAGPUHostDevices) on a metadata
// directory, the way virt-launcher does with DefaultMetadataBasePath (/var/run/dra-device-attributes
// inside its container; here any directory).
//
// stdin: {"basePath": "...", "vmi": <VirtualMachineInstance JSON with spec.resourceClaims and
// spec.domain.devices.gpus[].claimName/requestName>}
// stdout: {"defaultBasePath": "...", "pciAddresses": {"<gpu name>": "0000:65:00.0" | "error: ..."},
// "hostDevices": [{"alias","type","managed","address":{"domain","bus","slot","function"}}], "hostDevicesError": "..."}
package main

import (
	"encoding/json"
	"fmt"
	"os"

	v1 "kubevirt.io/api/core/v1"

	drautil "kubevirt.io/kubevirt/pkg/dra"
	"kubevirt.io/kubevirt/pkg/virt-launcher/virtwrap/device/hostdevice/dra"
)

type input struct {
	BasePath string                    `json:"basePath"`
	VMI      v1.VirtualMachineInstance `json:"vmi"`
}

type hostDev struct {
	Alias   string `json:"alias"`
	Type    string `json:"type"`
	Managed string `json:"managed"`
	// The libvirt <source><address> fields as virt-launcher fills them (e.g. domain "0x0000", bus "0x65").
	Address map[string]string `json:"address,omitempty"`
}

type output struct {
	DefaultBasePath  string            `json:"defaultBasePath"`
	PCIAddresses     map[string]string `json:"pciAddresses"`
	HostDevices      []hostDev         `json:"hostDevices"`
	HostDevicesError string            `json:"hostDevicesError,omitempty"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "kubevirt-dra-reader: bad input: %v\n", err)
		os.Exit(2)
	}
	out := output{DefaultBasePath: drautil.DefaultMetadataBasePath, PCIAddresses: map[string]string{}, HostDevices: []hostDev{}}
	for _, gpu := range in.VMI.Spec.Domain.Devices.GPUs {
		if !drautil.IsGPUDRA(gpu) || gpu.ClaimRequest.ClaimName == nil || gpu.ClaimRequest.RequestName == nil {
			continue
		}
		addr, err := drautil.GetPCIAddressForClaim(in.BasePath, in.VMI.Spec.ResourceClaims, *gpu.ClaimRequest.ClaimName, *gpu.ClaimRequest.RequestName)
		if err != nil {
			out.PCIAddresses[gpu.Name] = "error: " + err.Error()
		} else {
			out.PCIAddresses[gpu.Name] = addr
		}
	}
	devs, err := dra.CreateDRAGPUHostDevices(&in.VMI, in.BasePath)
	if err != nil {
		out.HostDevicesError = err.Error()
	}
	for _, d := range devs {
		h := hostDev{Type: d.Type, Managed: d.Managed}
		if d.Alias != nil {
			h.Alias = d.Alias.GetName()
		}
		if a := d.Source.Address; a != nil {
			h.Address = map[string]string{"type": a.Type, "domain": a.Domain, "bus": a.Bus, "slot": a.Slot, "function": a.Function}
		}
		out.HostDevices = append(out.HostDevices, h)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
