import { realClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { HandoffEngine } from '../handoff/engine.js';
import { loadBuiltinProfile } from '../profiles/load.js';
import { SimulatedKernel } from '../sysfs/simulated-kernel.js';
import { MemoryStateStore } from '../state/journal.js';
import { handoffText, inspectText } from './format.js';

interface DemoHost {
  readonly profile: string;
  readonly title: string;
  readonly allowBootGpu: boolean;
}

const HOSTS: readonly DemoHost[] = [
  {
    profile: 'workstation-efifb',
    title: 'Workstation: the GPU is the boot VGA under efifb, with its HDMI audio function in the same IOMMU group',
    allowBootGpu: true,
  },
  {
    profile: 'server-aspeed-4xh100',
    title: 'Server: ASPEED BMC is the boot VGA, four H100 PCIe (class 0x0302) datacenter GPUs',
    allowBootGpu: false,
  },
];

/**
 * The README's first command: the whole flow on built-in simulated hosts, no root and no cluster.
 * Later stages (device plugin, operator) append their part through `extraStages`.
 */
export async function runDemo(out: (s: string) => void, extraStages: readonly ((out: (s: string) => void) => Promise<void>)[] = []): Promise<void> {
  for (const h of HOSTS) {
    const kernel = new SimulatedKernel(await loadBuiltinProfile(h.profile));
    const engine = new HandoffEngine({ host: kernel, store: new MemoryStateStore(), clock: realClock, logger: silentLogger });
    out(`\n━━ ${h.title} (profile ${h.profile})\n`);
    out(`\n$ vfio-handoff inspect\n`);
    out(indent(inspectText(await engine.inspect({ allowBootGpu: false }))));
    const flag = h.allowBootGpu ? ' --allow-boot-gpu' : '';
    out(`\n$ vfio-handoff prepare --all${flag}\n`);
    const prepared = await engine.prepare({ all: true }, { allowBootGpu: h.allowBootGpu });
    out(indent(handoffText(prepared)));
    out(`\n  sysfs writes made by prepare (simulated kernel):\n`);
    for (const w of kernel.writeLog) {
      const line = w.kind === 'modprobe' ? `modprobe ${w.value}` : `echo ${JSON.stringify(w.value.replace(/\n$/, ''))} > /${w.path}`;
      out(`    ${line}${w.outcome === 'ok' ? '' : `  (${w.outcome})`}\n`);
    }
    out(`\n$ vfio-handoff inspect   # after prepare\n`);
    out(indent(inspectText(await engine.inspect({ allowBootGpu: h.allowBootGpu }))));
    out(`\n$ vfio-handoff release --all\n`);
    out(indent(handoffText(await engine.release({ all: true }))));
  }
  for (const stage of extraStages) await stage(out);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}
