/**
 * When release waits for /dev/vfio/<group> to go (othersKeepVfioNode): not while another function of the
 * group, one the record does not list, stays on vfio-pci or on a vfio-pci variant driver, since it keeps the
 * node. Host: src/testing/host-fixtures.ts (two RTX 3090s in group 1); the first card was prepared (the
 * record lists it and its audio), the second card is on a variant driver.
 */
import { describe, expect, it } from 'vitest';
import type { PciAddress } from '../core/pci-address.js';
import { discoverHost } from '../host/discover.js';
import { parseProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { TWO_GPUS_ONE_GROUP_YAML } from '../testing/host-fixtures.js';
import { planRelease } from './plan.js';
import { assessGpu } from './verdict.js';

const A = '0000:01:00.0' as PciAddress;
const A_AUDIO = '0000:01:00.1' as PciAddress;

/** `secondCardDriver`: the driver of both functions of the second card, or undefined for its own (nvidia, snd_hda_intel). */
async function finalCheckFor(secondCardDriver: string | undefined) {
  let yaml = TWO_GPUS_ONE_GROUP_YAML.replace(/(address: "0000:01:00\.[01]".*?driver: )(nvidia|snd_hda_intel)/gs, '$1vfio-pci').replace('loadedDrivers: [', 'loadedDrivers: [vfio-pci, ');
  if (secondCardDriver) {
    yaml = yaml.replace(/(address: "0000:02:00\.[01]".*?driver: )(nvidia|snd_hda_intel)/gs, `$1${secondCardDriver}`).replace('loadedDrivers: [', `loadedDrivers: [${secondCardDriver}, `);
  }
  const s = await discoverHost(new SimulatedKernel(parseProfile(yaml, 'variant')));
  const record = { group: 1, gpus: [A], originalDrivers: { [A]: 'nvidia', [A_AUDIO]: 'snd_hda_intel' }, originalOverrides: { [A]: null, [A_AUDIO]: null }, framebuffers: [], vtconsoles: [] };
  const plan = planRelease(s, [assessGpu(s, s.gpus.find((g) => g.fn.address === A)!, { allowBootGpu: true })], new Map([[1, record]]));
  return plan.groups[0]!.steps.at(-1);
}

describe('release: which other functions keep /dev/vfio/<group>', () => {
  it.each([
    ['vfio-pci', { nodeGone: false }],
    ['nvgrace_gpu_vfio_pci', { nodeGone: false }],
  ])('another card on %s keeps it: the check does not wait for the node', async (driver, extra) => {
    expect(await finalCheckFor(driver)).toEqual({ kind: 'verify-group', group: 1, expect: 'host', members: [A, A_AUDIO], ...extra });
  });

  it('another card on its host drivers does not: the check waits for the node to go', async () => {
    expect(await finalCheckFor(undefined)).toEqual({ kind: 'verify-group', group: 1, expect: 'host', members: [A, A_AUDIO] });
  });
});
