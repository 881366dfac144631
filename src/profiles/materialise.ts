// The materialiser writes a *test* tree into a directory the caller owns (never the real /sys), so
// it uses node:fs directly; the rule "only src/sysfs touches the host" is about the real host.
import { mkdir, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import type { HostProfile } from './profile.js';

/**
 * Writes a host tree with the kernel's layout into `dir`: PCI device directories nested under
 * `sys/devices/pci<dddd>:<bb>/…`, relative symlinks for `sys/bus/pci/devices/<bdf>`, `driver`,
 * `iommu_group`, `kernel/iommu_groups/N/devices/<bdf>`, platform framebuffers, vtconsoles,
 * `/dev/vfio/*` (plain files stand in for character devices), `/proc/iomem`, `osrelease` and
 * `modules.dep`.
 *
 * Given a `SimulatedKernel`, it writes that kernel's *current* state (after whatever writes drove it),
 * so the same reads can be compared. Writes through NodeHost into the tree are plain file writes:
 * the tree is for read tests. Returns the number of entries written.
 */
export async function materialiseProfile(source: HostProfile | SimulatedKernel, dir: string): Promise<number> {
  const kernel = source instanceof SimulatedKernel ? source : new SimulatedKernel(source);
  const entries = kernel.treeEntries();
  await mkdir(dir, { recursive: true });
  for (const [path, node] of entries) {
    const full = join(dir, path);
    switch (node.kind) {
      case 'dir':
        await mkdir(full, { recursive: true });
        break;
      case 'file':
        await writeFile(full, node.content);
        break;
      case 'link':
        try {
          await symlink(node.target, full);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          await unlink(full);
          await symlink(node.target, full);
        }
        break;
    }
  }
  return entries.length;
}
