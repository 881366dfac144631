/**
 * Boots one guest under QEMU/TCG + OVMF and collects what it reported.
 *
 * TCG, not KVM: on the project's machines /dev/kvm is PVM, which cannot run a stock kernel at usable speed
 * (research/kernel-e2e.md). OVMF is needed for the firmware framebuffer (efifb on `efi-framebuffer.0`), and
 * q35's emulated Intel IOMMU for real IOMMU groups.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { GuestReport } from './report.js';
import { CACHE_DIR, OVMF_CODE, OVMF_VARS, REPO_ROOT, type Kernel } from './testbed.js';

export interface MachineLayout {
  readonly name: string;
  /** QEMU arguments for the PCI devices (the intel-iommu device comes first, as QEMU requires). */
  readonly devices: readonly string[];
}

export interface BootOptions {
  readonly kernel: Kernel;
  readonly layout: MachineLayout;
  /** Scenario name understood by `guest/run.mjs`. */
  readonly scenario: string;
  /** Extra `e2e_<key>=<value>` parameters for the guest runner (no spaces in values). */
  readonly params?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

export interface BootResult {
  readonly outDir: string;
  readonly serial: string;
  readonly wallMs: number;
  readonly timedOut: boolean;
  readonly qemuExit: number | null;
  /** The guest runner's report, or `undefined` when it wrote none (boot failure, timeout). */
  readonly report: GuestReport | undefined;
}

const IOMMU = ['-device', 'intel-iommu,intremap=on,caching-mode=on'];
/** The "GPU with HDMI audio": std VGA (boot VGA, efifb in BAR0) + ICH9 HDA as function 1, one IOMMU group. */
const GPU_WITH_AUDIO = [
  '-device', 'VGA,bus=pcie.0,addr=02.0,multifunction=on',
  '-device', 'ich9-intel-hda,id=hda0,bus=pcie.0,addr=02.1',
  // Without a codec snd_hda_intel binds but logs "no codecs found!".
  '-audiodev', 'none,id=snd0',
  '-device', 'hda-output,bus=hda0.0,audiodev=snd0',
];

export const LAYOUTS = {
  /** Scenarios a, b, e: 00:02.0 VGA (boot_vga=1) + 00:02.1 HDA in one group. */
  bootGpu: { name: 'boot-gpu', devices: [...IOMMU, ...GPU_WITH_AUDIO] },
  /** Scenario c: the boot GPU above plus a second std VGA at 00:05.0 (boot_vga=0, its own group). */
  secondaryVga: {
    name: 'secondary-vga',
    devices: [...IOMMU, ...GPU_WITH_AUDIO, '-device', 'VGA,bus=pcie.0,addr=05.0'],
  },
  /**
   * Scenario d: a conventional PCI segment behind a PCIe-to-PCI bridge. Conventional PCI cannot isolate its
   * devices (no requester IDs of their own), so the bridge, a GPU in slot 1 and a NIC in slot 2 form one group —
   * the classic "GPU shares a group with a foreign device" host.
   */
  foreignDevice: {
    name: 'foreign-device',
    devices: [
      ...IOMMU,
      ...GPU_WITH_AUDIO,
      '-device', 'pcie-pci-bridge,id=pbr,bus=pcie.0,addr=07.0',
      '-device', 'VGA,bus=pbr,addr=01.0',
      '-device', 'e1000,bus=pbr,addr=02.0',
    ],
  },
  /**
   * Scenario f: a non-VGA display controller alone — `bochs-display` (class 0x038000, 1234:1111, no boot_vga). OVMF
   * gives it a GOP, so the guest's efifb sits inside its BAR0 (research/kernel-e2e.md, "Non-VGA boot display").
   */
  bochsDisplay: { name: 'bochs-display', devices: [...IOMMU, '-device', 'bochs-display,bus=pcie.0,addr=02.0'] },
} as const satisfies Record<string, MachineLayout>;

// eslint-disable-next-line no-control-regex -- serial output carries ANSI escapes; ESC is the point of this pattern
const ANSI_ESCAPE = /\x1b\[[0-9;=?]*[A-Za-z]/g;

function timestamped(start: number, chunk: string, partial: { rest: string }): string {
  const text = partial.rest + chunk;
  const lines = text.split('\n');
  partial.rest = lines.pop() ?? '';
  const t = ((Date.now() - start) / 1000).toFixed(2).padStart(7);
  // Serial output carries CRs and terminal escapes; strip them so the log greps cleanly.
  return lines.map((l) => `[${t}] ${l.replace(/\r/g, '').replace(ANSI_ESCAPE, '')}\n`).join('');
}

/** Boots the guest, waits for it to power off (or the timeout), returns the serial log and the guest's report. */
export async function bootGuest(opts: BootOptions): Promise<BootResult> {
  const { kernel, layout, scenario } = opts;
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const suffix = Object.entries(opts.params ?? {}).map(([k, v]) => `-${k}${v}`).join('');
  const outDir = join(CACHE_DIR, 'out', `${scenario}${suffix}-${kernel.series}`);
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const vars = join(outDir, 'OVMF_VARS.fd');
  copyFileSync(OVMF_VARS, vars);

  const params: Record<string, string> = {
    e2e_repo: REPO_ROOT,
    e2e_bed: CACHE_DIR,
    e2e_kroot: kernel.root,
    e2e_out: outDir,
    e2e_scenario: scenario,
    ...Object.fromEntries(Object.entries(opts.params ?? {}).map(([k, v]) => [`e2e_${k}`, v])),
  };
  for (const [k, v] of Object.entries(params)) {
    if (/\s/.test(v)) throw new Error(`guest parameter ${k}=${v} contains whitespace; the kernel cmdline cannot carry it`);
  }
  const append = [
    'console=ttyS0',
    'panic=-1',
    'loglevel=4',
    // Skip the IO-APIC timer check: on a loaded host TCG misses its window and 6.12 panics with "timer doesn't
    // work through Interrupt-remapped IO-APIC" (seen at load average 40 on 2 cores).
    'no_timer_check',
    // Debian leaves INTEL_IOMMU_DEFAULT_ON unset; pt keeps the host fast while groups are still populated.
    'intel_iommu=on',
    'iommu=pt',
    ...Object.entries(params).map(([k, v]) => `${k}=${v}`),
  ].join(' ');
  const virtfs = (path: string, tag: string, ro: boolean): string[] => [
    '-virtfs',
    `local,path=${path},mount_tag=${tag},security_model=none,multidevs=remap${ro ? ',readonly=on' : ''}`,
  ];
  const args = [
    '-accel', 'tcg,thread=multi,tb-size=512',
    '-cpu', 'max',
    '-M', 'q35,kernel-irqchip=split',
    '-smp', '2',
    '-m', '2048',
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
    '-drive', `if=pflash,format=raw,unit=1,file=${vars}`,
    '-nodefaults', '-no-reboot', '-display', 'none', '-serial', 'stdio',
    ...layout.devices,
    ...virtfs('/usr', 'usr', true),
    ...virtfs('/etc', 'etc', true),
    ...virtfs(REPO_ROOT, 'repo', true),
    ...virtfs(CACHE_DIR, 'bed', false),
    '-kernel', kernel.vmlinuz,
    '-initrd', kernel.initrd,
    '-append', append,
  ];
  writeFileSync(join(outDir, 'qemu.cmd'), ['qemu-system-x86_64', ...args].map((a) => (/[\s,=]/.test(a) ? `'${a}'` : a)).join(' ') + '\n');

  const start = Date.now();
  let serial = '';
  const partial = { rest: '' };
  // Streamed to disk as it comes, so a long or hung guest can be watched with `tail -f`.
  const serialFile = join(outDir, 'serial.log');
  writeFileSync(serialFile, '');
  const add = (text: string): void => {
    serial += text;
    appendFileSync(serialFile, text);
  };
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (c: string) => add(timestamped(start, c, partial)));
  child.stderr.on('data', (c: string) => add(timestamped(start, `[qemu stderr] ${c}`, { rest: '' })));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const qemuExit = await new Promise<number | null>((resolveExit) => {
    child.on('error', (err) => {
      add(`[host] spawn failed: ${err.message}\n`);
      resolveExit(null);
    });
    child.on('close', (code) => resolveExit(code));
  });
  clearTimeout(timer);
  if (partial.rest !== '') add(`${partial.rest}\n`);
  const wallMs = Date.now() - start;
  add(`[host] qemu exit=${String(qemuExit)} timedOut=${String(timedOut)} wall=${(wallMs / 1000).toFixed(1)}s\n`);

  const reportFile = join(outDir, 'report.json');
  const report = existsSync(reportFile) ? (JSON.parse(readFileSync(reportFile, 'utf8')) as GuestReport) : undefined;
  return { outDir, serial, wallMs, timedOut, qemuExit, report };
}
