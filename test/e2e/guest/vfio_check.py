#!/usr/bin/python3
# What a VMM does with a group handed to vfio-pci: open the container, check the group is viable, attach it,
# select the TYPE1v2 IOMMU, get a device fd and read its region table. Prints one JSON object on stdout.
# Usage: vfio_check.py <group> <bdf>
import array, fcntl, json, os, struct, sys

def io(nr):
    return (0x3B << 8) | (100 + nr)  # _IO(VFIO_TYPE, VFIO_BASE + nr)

GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU = io(0), io(1), io(2)
GROUP_GET_STATUS, GROUP_SET_CONTAINER, GROUP_GET_DEVICE_FD = io(3), io(4), io(6)
DEVICE_GET_INFO, DEVICE_GET_REGION_INFO = io(7), io(8)
TYPE1V2 = 3
GROUP_FLAGS_VIABLE = 1

out = {"ok": False, "group": sys.argv[1], "device": sys.argv[2]}
try:
    c = os.open("/dev/vfio/vfio", os.O_RDWR)
    out["apiVersion"] = fcntl.ioctl(c, GET_API_VERSION)
    out["type1v2"] = fcntl.ioctl(c, CHECK_EXTENSION, TYPE1V2) == 1
    g = os.open("/dev/vfio/" + sys.argv[1], os.O_RDWR)
    st = bytearray(struct.pack("II", 8, 0))
    fcntl.ioctl(g, GROUP_GET_STATUS, st, True)
    out["viable"] = bool(struct.unpack("II", st)[1] & GROUP_FLAGS_VIABLE)
    fcntl.ioctl(g, GROUP_SET_CONTAINER, array.array("i", [c]), True)
    out["setIommu"] = fcntl.ioctl(c, SET_IOMMU, TYPE1V2)
    d = fcntl.ioctl(g, GROUP_GET_DEVICE_FD, bytearray(sys.argv[2].encode() + b"\0"), True)
    info = bytearray(struct.pack("IIII", 16, 0, 0, 0))
    fcntl.ioctl(d, DEVICE_GET_INFO, info, True)
    _, flags, nreg, nirq = struct.unpack("IIII", info)
    out.update(deviceFd=d, deviceFlags=flags, regions=nreg, irqs=nirq, regionSizes={})
    for i in range(nreg):
        r = bytearray(struct.pack("IIIIQQ", 32, 0, i, 0, 0, 0))
        fcntl.ioctl(d, DEVICE_GET_REGION_INFO, r, True)
        size = struct.unpack("IIIIQQ", r)[4]
        if size:
            out["regionSizes"][str(i)] = size
    os.close(d); os.close(g); os.close(c)
    out["ok"] = out["viable"] and out["type1v2"] and out["setIommu"] == 0
except OSError as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
