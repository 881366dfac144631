// Package libvirt stands in for libvirt.org/go/libvirt (cgo bindings that need libvirt's C library)
// in the harness build: the KubeVirt packages the harness runs import it only for hot-plug
// (virtwrap/device/hostdevice/hotplug.go), which the harness never calls. It declares just the
// identifiers those packages name, with libvirt's values (virDomainDeviceModifyFlags, libvirt-domain.h),
// so the build stays pure Go (CGO_ENABLED=0, no libvirt-dev).
package libvirt

// DomainDeviceModifyFlags is virDomainDeviceModifyFlags.
type DomainDeviceModifyFlags uint

const (
	DOMAIN_DEVICE_MODIFY_CURRENT DomainDeviceModifyFlags = 0
	DOMAIN_DEVICE_MODIFY_LIVE    DomainDeviceModifyFlags = 1
	DOMAIN_DEVICE_MODIFY_CONFIG  DomainDeviceModifyFlags = 2
	DOMAIN_DEVICE_MODIFY_FORCE   DomainDeviceModifyFlags = 4
)
