import type { Clock } from '../core/clock.js';
import { HungWriteError, VerifyError } from '../core/errors.js';
import type { PciAddress } from '../core/pci-address.js';
import type { HostPort } from '../sysfs/port.js';
import {
  pciAttribute,
  pciDriver,
  pciDriverFile,
  PCI_DRIVERS_PROBE,
  platformDevice,
  platformDriverFile,
  sysModule,
  vfioGroupNode,
  vtconsoleFile,
} from '../sysfs/paths.js';
import { parseIomem } from '../host/iomem.js';
import { findBarClaims } from '../host/readiness.js';
import { parseResourceFile } from '../host/resource.js';
import { PROC_IOMEM } from '../sysfs/paths.js';
import { VFIO_DRIVER } from './group.js';
import { stepTarget, type Step } from './steps.js';

/** How long a give-back probe waits for a driver to show before binding the original explicitly. */
const PROBE_GRACE_MS = 500;

export interface StepResult {
  readonly outcome: 'done' | 'skipped';
  readonly note?: string;
}

export interface StepRunnerDeps {
  readonly host: HostPort;
  readonly clock: Clock;
  /** Upper bound for one write: a driver unbind can block forever (kernel.md §5). */
  readonly writeTimeoutMs: number;
  /** How long a postcondition may take to show up in sysfs before the step counts as failed. */
  readonly verifyTimeoutMs: number;
  readonly pollIntervalMs?: number;
}

/**
 * Runs one step idempotently: it reads whether the step's effect is already there (and skips), writes,
 * then reads back until the effect shows or the verify deadline passes.
 */
export class StepRunner {
  /** What the current step is about (device, console, module): a hang is blamed on it. */
  private target = '';

  constructor(private readonly deps: StepRunnerDeps) {}

  async run(step: Step, signal?: AbortSignal): Promise<StepResult> {
    this.target = stepTarget(step);
    switch (step.kind) {
      case 'load-module': {
        if (await this.moduleReady(step.module)) return { outcome: 'skipped' };
        await this.guard(`load module ${step.module}`, (s) => this.deps.host.loadModule(step.module, { signal: s }), signal);
        await this.until(() => this.moduleReady(step.module), `module ${step.module} did not appear after loading it`);
        return { outcome: 'done' };
      }
      case 'unbind-vtconsole': {
        const bound = await this.vtconBound(step.vtconsole);
        if (bound !== true) return { outcome: 'skipped', note: bound === undefined ? 'console already gone' : undefined };
        await this.write(vtconsoleFile(step.vtconsole, 'bind'), '0', signal);
        await this.until(async () => (await this.vtconBound(step.vtconsole)) !== true, `${step.vtconsole} is still bound`);
        return { outcome: 'done' };
      }
      case 'bind-vtconsole': {
        const bound = await this.vtconBound(step.vtconsole);
        if (bound === undefined) return { outcome: 'skipped', note: `${step.vtconsole} no longer exists (no framebuffer left to show the console on)` };
        if (bound) return { outcome: 'skipped' };
        await this.write(vtconsoleFile(step.vtconsole, 'bind'), '1', signal);
        await this.until(async () => (await this.vtconBound(step.vtconsole)) === true, `${step.vtconsole} did not rebind`);
        return { outcome: 'done' };
      }
      case 'unbind-framebuffer': {
        if (!(await this.deps.host.exists(platformDevice(step.device)))) return { outcome: 'skipped', note: `${step.device} is gone` };
        if ((await this.platformDriver(step.device)) === undefined) return { outcome: 'skipped' };
        await this.write(platformDriverFile(step.driver, 'unbind'), step.device, signal);
        await this.until(async () => (await this.platformDriver(step.device)) === undefined, `${step.device} is still bound`);
        return { outcome: 'done' };
      }
      case 'bind-framebuffer': {
        if (!(await this.deps.host.exists(platformDevice(step.device)))) {
          // Linux >= 6.0: vfio-pci unregistered the sysfb platform device; only a native driver brings a console back.
          return { outcome: 'skipped', note: `${step.device} was removed by the kernel and cannot be rebound` };
        }
        if ((await this.platformDriver(step.device)) === step.driver) return { outcome: 'skipped' };
        await this.write(platformDriverFile(step.driver, 'bind'), step.device, signal);
        await this.until(async () => (await this.platformDriver(step.device)) === step.driver, `${step.device} did not rebind`);
        return { outcome: 'done' };
      }
      case 'set-override': {
        if ((await this.override(step.address)) === step.driver) return { outcome: 'skipped' };
        await this.write(pciAttribute(step.address, 'driver_override'), step.driver, signal);
        await this.until(async () => (await this.override(step.address)) === step.driver, `driver_override of ${step.address} did not take`);
        return { outcome: 'done' };
      }
      case 'clear-override': {
        if ((await this.override(step.address)) === undefined) return { outcome: 'skipped' };
        // An empty write never reaches the sysfs store function; a lone newline clears the override.
        await this.write(pciAttribute(step.address, 'driver_override'), '\n', signal);
        await this.until(async () => (await this.override(step.address)) === undefined, `driver_override of ${step.address} did not clear`);
        return { outcome: 'done' };
      }
      case 'unbind-driver': {
        if ((await this.driver(step.address)) !== step.driver) return { outcome: 'skipped' };
        await this.write(pciDriverFile(step.driver, 'unbind'), step.address, signal);
        await this.until(async () => (await this.driver(step.address)) !== step.driver, `${step.address} is still bound to ${step.driver}`);
        return { outcome: 'done' };
      }
      case 'probe':
        return this.probe(step.address, step.expect, signal);
      case 'verify-group':
        return this.verifyGroup(step.group, step.expect, step.members, step.nodeGone !== false);
    }
  }

  private async probe(address: PciAddress, expect: string | undefined, signal?: AbortSignal): Promise<StepResult> {
    const current = await this.driver(address);
    if (expect === VFIO_DRIVER) {
      if (current === VFIO_DRIVER) return { outcome: 'skipped' };
      await this.write(PCI_DRIVERS_PROBE, address, signal);
      await this.until(async () => (await this.driver(address)) === VFIO_DRIVER, `vfio-pci did not bind ${address}`, async () => {
        const now = await this.driver(address);
        return now ? `it is on ${now}` : 'it has no driver';
      });
      return { outcome: 'done' };
    }
    // Giving back: any host driver (or none) will do; the recorded original is preferred.
    if (current !== undefined && current !== VFIO_DRIVER && (expect === undefined || current === expect)) return { outcome: 'skipped' };
    await this.write(PCI_DRIVERS_PROBE, address, signal);
    await this.until(async () => (await this.driver(address)) !== VFIO_DRIVER, `${address} is still on vfio-pci`);
    if (expect === undefined || (await this.driver(address)) === expect) return { outcome: 'done' };
    if (!(await this.driverLoaded(expect))) {
      return { outcome: 'done', note: `original driver ${expect} is not loaded; ${address} left ${(await this.driver(address)) ?? 'without a driver'}` };
    }
    // sysfs's drivers_probe has probed when the write returns, but where another process applies the writes
    // (a host tree under --host-root) the driver shows a moment later: look again briefly before binding, or
    // the explicit bind meets the probe's driver (EBUSY).
    if ((await this.driver(address)) === undefined && !(await this.settles(async () => (await this.driver(address)) !== undefined, PROBE_GRACE_MS))) {
      // drivers_probe found no match (e.g. the driver only knew the device through a dynamic id): bind explicitly.
      await this.write(pciDriverFile(expect, 'bind'), address, signal).catch(() => undefined);
    }
    const now = await this.driver(address);
    return { outcome: 'done', note: now === expect ? undefined : `${address} is on ${now ?? 'no driver'}, not its original ${expect}` };
  }

  private async verifyGroup(group: number, expect: 'vfio' | 'host', members: readonly PciAddress[], nodeGone = true): Promise<StepResult> {
    const node = vfioGroupNode(group);
    if (expect === 'vfio') {
      await this.until(
        async () => (await Promise.all(members.map((m) => this.driver(m)))).every((d) => d === VFIO_DRIVER) && (await this.deps.host.exists(node)),
        `group ${group} is not complete on vfio-pci`,
        async () => {
          const drivers = await Promise.all(members.map(async (m) => `${m}=${(await this.driver(m)) ?? 'none'}`));
          return `${drivers.join(', ')}; /dev/vfio/${group} ${(await this.deps.host.exists(node)) ? 'present' : 'missing'}`;
        },
      );
      // The readiness rule's last clause (src/host/readiness.ts): nothing else may still claim memory in
      // a member's BARs, or the VMM's BAR mmap fails with `can't reserve` although the links are right.
      await this.until(async () => (await this.barClaims(members)).length === 0, `a BAR of group ${group} is still claimed`, async () =>
        (await this.barClaims(members)).join(', '),
      );
      return { outcome: 'done' };
    }
    await this.until(
      async () =>
        (await Promise.all(members.map((m) => this.driver(m)))).every((d) => d !== VFIO_DRIVER) && (!nodeGone || !(await this.deps.host.exists(node))),
      `group ${group} is still on vfio-pci`,
    );
    return { outcome: 'done' };
  }

  private async write(path: string, value: string, signal?: AbortSignal): Promise<void> {
    await this.guard(`writing ${JSON.stringify(value)} to ${path}`, (s) => this.deps.host.writeText(path, value, { signal: s }), signal);
  }

  /**
   * Bounds an operation with the write timeout (and the caller's signal). It does not rely on the host
   * port honouring the signal: after the deadline the step fails with `HungWriteError` whether or not
   * the operation ever settles (the kernel may keep the thread; we must not wait for it).
   */
  private async guard(what: string, op: (signal: AbortSignal) => Promise<void>, outer?: AbortSignal): Promise<void> {
    const timeout = new AbortController();
    const target = this.target;
    const ms = this.deps.writeTimeoutMs;
    const signal = outer ? AbortSignal.any([outer, timeout.signal]) : timeout.signal;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new HungWriteError(what, target, ms);
        timeout.abort(err);
        reject(err);
      }, ms);
    });
    const work = op(signal);
    work.catch(() => undefined); // a late failure of an abandoned operation is nobody's business
    try {
      await Promise.race([work, expired]);
    } catch (err) {
      if (timeout.signal.aborted) throw timeout.signal.reason as Error;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether `check` holds within `ms` (at most the verify timeout), polling like `until`. */
  private async settles(check: () => Promise<boolean>, ms: number): Promise<boolean> {
    const deadline = this.deps.clock.now() + Math.min(ms, this.deps.verifyTimeoutMs);
    for (;;) {
      if (await check()) return true;
      if (this.deps.clock.now() >= deadline) return false;
      await this.deps.clock.sleep(this.deps.pollIntervalMs ?? 25);
    }
  }

  private async until(check: () => Promise<boolean>, message: string, detail?: () => Promise<string>): Promise<void> {
    const deadline = this.deps.clock.now() + this.deps.verifyTimeoutMs;
    for (;;) {
      if (await check()) return;
      if (this.deps.clock.now() >= deadline) {
        throw new VerifyError(detail ? `${message}: ${await detail()}` : message);
      }
      await this.deps.clock.sleep(this.deps.pollIntervalMs ?? 25);
    }
  }

  private async barClaims(members: readonly PciAddress[]): Promise<string[]> {
    const [iomem, ...resources] = await Promise.all([
      this.deps.host.readText(PROC_IOMEM),
      ...members.map((m) => this.deps.host.readText(pciAttribute(m, 'resource'))),
    ]);
    const fns = members.map((address, i) => ({ address, bars: parseResourceFile(resources[i] ?? '') }));
    return findBarClaims(parseIomem(iomem ?? ''), fns).map((c) => `${c.name} in BAR ${c.bar} of ${c.address}`);
  }

  private async driver(address: PciAddress): Promise<string | undefined> {
    const link = await this.deps.host.readLink(pciAttribute(address, 'driver'));
    return link === undefined ? undefined : basename(link);
  }

  private async override(address: PciAddress): Promise<string | undefined> {
    const v = (await this.deps.host.readText(pciAttribute(address, 'driver_override')))?.trim();
    return v === undefined || v === '' || v === '(null)' ? undefined : v;
  }

  /** vfio-pci counts once its PCI driver is registered (what binding needs); any other module once it is in /sys/module. */
  private async moduleReady(name: string): Promise<boolean> {
    return name === VFIO_DRIVER ? this.driverLoaded(name) : this.deps.host.exists(sysModule(name));
  }

  private async driverLoaded(name: string): Promise<boolean> {
    return this.deps.host.exists(pciDriver(name));
  }

  private async vtconBound(name: string): Promise<boolean | undefined> {
    const v = await this.deps.host.readText(vtconsoleFile(name, 'bind'));
    return v === undefined ? undefined : v.trim() === '1';
  }

  private async platformDriver(device: string): Promise<string | undefined> {
    const link = await this.deps.host.readLink(`${platformDevice(device)}/driver`);
    return link === undefined ? undefined : basename(link);
  }
}

function basename(link: string): string {
  return link.replace(/\/+$/, '').split('/').pop() ?? link;
}
