#!/usr/bin/python3
# What a VMM (QEMU) does with a group handed to vfio-pci: open the container, check the group is viable, attach it,
# select the TYPE1v2 IOMMU, get a device fd per function, read its region table, and then touch every memory BAR
# the way QEMU does: read through the device fd (vfio_region_read -> pread) and mmap it (vfio_region_mmap).
# Region info alone cannot see a firmware framebuffer left inside a BAR: only the first read or mmap makes
# vfio-pci request the BAR's resources, which fails with EBUSY ("BAR 0: can't reserve") while efifb holds it.
# Prints one JSON object on stdout. Usage: vfio_check.py <group> <bdf> [<bdf> ...]
import array, fcntl, json, mmap, os, struct, sys

def io(nr):
    return (0x3B << 8) | (100 + nr)  # _IO(VFIO_TYPE, VFIO_BASE + nr)

GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU = io(0), io(1), io(2)
GROUP_GET_STATUS, GROUP_SET_CONTAINER, GROUP_GET_DEVICE_FD = io(3), io(4), io(6)
DEVICE_GET_INFO, DEVICE_GET_REGION_INFO = io(7), io(8)
TYPE1V2 = 3
GROUP_FLAGS_VIABLE = 1
REGION_FLAG_READ, REGION_FLAG_MMAP = 1, 4
BAR_REGIONS = range(0, 6)  # VFIO_PCI_BAR0..5_REGION_INDEX; 6 = ROM, 7 = config, 8 = VGA
VGA_REGION = 8
IORESOURCE_IO, IORESOURCE_MEM = 0x100, 0x200

def err(e):
    return "%s: %s" % (type(e).__name__, e)

def sysfs_resources(bdf):
    """(start, end, flags) per line of the function's sysfs `resource` file (BARs 0-5, ROM, ...)."""
    try:
        with open("/sys/bus/pci/devices/%s/resource" % bdf) as f:
            return [tuple(int(x, 16) for x in line.split()) for line in f if line.strip()]
    except OSError:
        return []

def is_vga(bdf):
    try:
        with open("/sys/bus/pci/devices/%s/class" % bdf) as f:
            return (int(f.read(), 16) >> 8) == 0x0300
    except OSError:
        return False

def region_info(d, index):
    r = bytearray(struct.pack("IIIIQQ", 32, 0, index, 0, 0, 0))
    fcntl.ioctl(d, DEVICE_GET_REGION_INFO, r, True)
    _, flags, _, _, size, offset = struct.unpack("IIIIQQ", r)
    return flags, size, offset

def touch_bar(d, index, flags, size, offset, kind):
    """Read 4 bytes from the BAR and, when vfio-pci offers it, mmap the whole BAR, as QEMU does."""
    bar = {"index": index, "kind": kind, "size": size, "flags": flags, "mmappable": bool(flags & REGION_FLAG_MMAP)}
    try:
        os.pread(d, 4, offset)
        bar["read"] = "ok"
    except OSError as e:
        bar["read"] = err(e)
    if kind == "mem" and flags & REGION_FLAG_MMAP:
        try:
            m = mmap.mmap(d, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
            m.close()
            bar["mmap"] = "ok"
        except OSError as e:
            bar["mmap"] = err(e)
    else:
        # I/O port BARs and BARs vfio-pci will not map (smaller than a page, MSI-X table) go through pread only.
        bar["mmap"] = "not-mmappable"
    bar["ok"] = bar["read"] == "ok" and bar["mmap"] in ("ok", "not-mmappable")
    return bar

def check_device(g, bdf):
    dev = {"device": bdf, "vga": is_vga(bdf), "ok": False}
    try:
        d = fcntl.ioctl(g, GROUP_GET_DEVICE_FD, bytearray(bdf.encode() + b"\0"), True)
    except OSError as e:
        dev["error"] = "GET_DEVICE_FD: " + err(e)
        return dev
    try:
        info = bytearray(struct.pack("IIII", 16, 0, 0, 0))
        fcntl.ioctl(d, DEVICE_GET_INFO, info, True)
        _, flags, nreg, nirq = struct.unpack("IIII", info)
        dev.update(deviceFlags=flags, regions=nreg, irqs=nirq, regionSizes={}, regionErrors={}, bars=[])
        res = sysfs_resources(bdf)
        for i in range(nreg):
            if i == VGA_REGION and not dev["vga"]:
                # vfio-pci offers the legacy VGA region only on VGA-class devices; asking elsewhere is EINVAL.
                dev["vgaRegion"] = "skipped (not VGA class)"
                continue
            try:
                rflags, size, offset = region_info(d, i)
            except OSError as e:
                dev["regionErrors"][str(i)] = err(e)
                continue
            if size:
                dev["regionSizes"][str(i)] = size
            if i in BAR_REGIONS and size:
                rflags_sysfs = res[i][2] if i < len(res) else 0
                kind = "io" if rflags_sysfs & IORESOURCE_IO else "mem"
                dev["bars"].append(touch_bar(d, i, rflags, size, offset, kind))
        dev["barsOk"] = all(b["ok"] for b in dev["bars"])
        dev["ok"] = dev["barsOk"] and not dev["regionErrors"]
    finally:
        os.close(d)
    return dev

out = {"ok": False, "group": sys.argv[1], "devices": []}
try:
    c = os.open("/dev/vfio/vfio", os.O_RDWR)
    out["apiVersion"] = fcntl.ioctl(c, GET_API_VERSION)
    out["type1v2"] = fcntl.ioctl(c, CHECK_EXTENSION, TYPE1V2) == 1
    g = os.open("/dev/vfio/" + sys.argv[1], os.O_RDWR)
    st = bytearray(struct.pack("II", 8, 0))
    fcntl.ioctl(g, GROUP_GET_STATUS, st, True)
    out["viable"] = bool(struct.unpack("II", st)[1] & GROUP_FLAGS_VIABLE)
    fcntl.ioctl(g, GROUP_SET_CONTAINER, array.array("i", [c]), True)
    try:
        out["setIommu"] = fcntl.ioctl(c, SET_IOMMU, TYPE1V2)
    except OSError as e:
        # No IOMMU backend (vfio_iommu_type1 not loaded): a VMM stops here.
        out["setIommu"] = err(e)
        raise
    out["devices"] = [check_device(g, bdf) for bdf in sys.argv[2:]]
    os.close(g); os.close(c)
    out["ok"] = (out["viable"] and out["type1v2"] and out["setIommu"] == 0
                 and len(out["devices"]) > 0 and all(dv["ok"] for dv in out["devices"]))
except OSError as e:
    out["error"] = err(e)
print(json.dumps(out))
