/**
 * The JSON a guest writes to `<out>/report.json` (produced by `guest/run.mjs`, plain JS because it runs
 * unbuilt inside the guest). Facts are read by the guest script straight from sysfs/procfs/devfs, independently
 * of our code, so the tests can check the CLI's claims against the kernel's own view.
 */
export interface CliRun {
  readonly argv: readonly string[];
  /** Exit status, `null` when the process died from a signal. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  /** `stdout` parsed as JSON, `null` when it is not JSON. */
  readonly json: unknown;
  readonly ms: number;
}

export interface PciFacts {
  readonly class: string;
  readonly vendor: string;
  readonly device: string;
  /** Basename of the `driver` link; `null` when unbound. */
  readonly driver: string | null;
  /** Contents of `driver_override`; `null` reads as "(null)" in sysfs and is normalised to null. */
  readonly driverOverride: string | null;
  readonly bootVga: string | null;
  readonly enable: string | null;
  readonly iommuGroup: string | null;
}

export interface Facts {
  readonly uptime: number;
  /** Every PCI function of the guest, keyed by address. */
  readonly pci: Readonly<Record<string, PciFacts>>;
  /** `/sys/kernel/iommu_groups/<n>/devices`, keyed by group number. */
  readonly groups: Readonly<Record<string, readonly string[]>>;
  /** Entries of `/dev/vfio`. */
  readonly devVfio: readonly string[];
  /** `efi-framebuffer.N`, `simple-framebuffer.N`, `vesa-framebuffer.N` platform devices and their drivers. */
  readonly platformFramebuffers: Readonly<Record<string, string | null>>;
  /** Where each of those sits under `/sys/devices`: `devices/platform/efi-framebuffer.0` or under its PCI parent. */
  readonly platformFramebufferPaths: Readonly<Record<string, string | null>>;
  /** Lines of `/proc/fb`, e.g. `0 EFI VGA`. */
  readonly procFb: readonly string[];
  readonly vtconsoles: readonly { readonly entry: string; readonly name: string; readonly bind: string }[];
  /** `/proc/iomem` lines that name a framebuffer, a display driver or vfio. */
  readonly iomem: readonly string[];
  /** dmesg lines logged since the previous facts were taken. */
  readonly dmesg: readonly string[];
  /** Files under the CLI's state dir (`/var/lib/vfio-handoff`), path → content (truncated at 64 KiB). */
  readonly stateDir: Readonly<Record<string, string>>;
  /** Loaded modules (`/sys/module/<name>`) a VMM depends on. */
  readonly modules: { readonly vfio_pci: boolean; readonly vfio_iommu_type1: boolean; readonly iommufd: boolean };
  /** `/dev/iommu` (iommufd) present. */
  readonly devIommu: boolean;
}

/** One BAR as vfio_check.py touched it through the device fd. */
export interface BarCheck {
  readonly index: number;
  readonly kind: 'mem' | 'io';
  readonly size: number;
  readonly mmappable: boolean;
  /** `ok` or the errno text, e.g. `OSError: [Errno 16] Device or resource busy`. */
  readonly read: string;
  readonly mmap: string;
  readonly ok: boolean;
}

/** vfio_check.py's output: what a VMM saw when it opened the group and each function. */
export interface VfioCheck {
  readonly ok: boolean;
  readonly group: string;
  readonly type1v2?: boolean;
  readonly viable?: boolean;
  readonly setIommu?: number | string;
  readonly error?: string;
  readonly devices: readonly {
    readonly device: string;
    readonly vga: boolean;
    readonly ok: boolean;
    readonly regions?: number;
    readonly vgaRegion?: string;
    readonly regionSizes?: Readonly<Record<string, number>>;
    readonly regionErrors?: Readonly<Record<string, string>>;
    readonly bars?: readonly BarCheck[];
    readonly barsOk?: boolean;
    readonly error?: string;
  }[];
}

export interface Step {
  readonly name: string;
  readonly cli?: CliRun;
  readonly facts?: Facts;
  readonly data?: unknown;
}

export interface GuestReport {
  readonly scenario: string;
  readonly kernelRelease: string;
  readonly nodeVersion: string;
  readonly steps: readonly Step[];
  /** True once the scenario ran to its end; false when the runner threw (see `error`) or was cut off. */
  readonly complete: boolean;
  readonly error?: string;
  readonly runnerMs: number;
}

/** The CLI's `inspect --json` shape (contract), as far as the tests read it. */
export interface InspectJson {
  readonly version: number;
  readonly host: {
    readonly kernelRelease: string;
    readonly iommuEnabled: boolean;
    readonly vfioPci: { readonly loaded: boolean; readonly loadable: boolean };
    readonly framebuffers: readonly unknown[];
    readonly vtconsoles: readonly unknown[];
  };
  readonly gpus: readonly {
    readonly address: string;
    readonly iommuGroup: number | null;
    readonly bootGpu: boolean;
    readonly driver: string | null;
    readonly functions: readonly { readonly address: string; readonly class: string; readonly driver: string | null; readonly role: string }[];
    readonly framebuffers: readonly string[];
    readonly verdict: 'ready' | 'preparable' | 'blocked';
    readonly reasons: readonly { readonly code: string; readonly message: string }[];
    readonly warnings: readonly { readonly code: string; readonly message: string }[];
    readonly plan: readonly { readonly kind: string; readonly target: string; readonly description: string }[];
  }[];
}

/** The CLI's `prepare --json` / `release --json` shape (contract). */
export interface HandoffJson {
  readonly operation: string;
  readonly recovered: readonly unknown[];
  readonly results: readonly {
    readonly address: string;
    readonly group: number;
    readonly outcome: string;
    readonly steps: readonly { readonly kind: string; readonly target: string; readonly outcome: string }[];
    readonly error?: unknown;
  }[];
}

export function step(report: GuestReport, name: string): Step {
  const found = report.steps.find((s) => s.name === name);
  if (found === undefined) {
    throw new Error(`guest report has no step "${name}" (steps: ${report.steps.map((s) => s.name).join(', ')}; error: ${report.error ?? 'none'})`);
  }
  return found;
}

export function factsOf(report: GuestReport, name: string): Facts {
  const facts = step(report, name).facts;
  if (facts === undefined) throw new Error(`step "${name}" carries no facts`);
  return facts;
}

export function vfioCheckOf(report: GuestReport, name: string): VfioCheck {
  const data = step(report, name).data;
  if (data === undefined) throw new Error(`step "${name}" carries no VMM check`);
  return data as VfioCheck;
}

/**
 * The IOMMU group of `address` in these facts; throws when it has none, so that a later
 * `expect(devVfio).not.toContain(group)` can never pass vacuously on an empty group name.
 */
export function groupNumber(facts: Facts, address: string): string {
  const g = facts.pci[address]?.iommuGroup;
  if (g === null || g === undefined || !/^\d+$/.test(g)) throw new Error(`${address} has no IOMMU group in these facts`);
  return g;
}

export function cliOf(report: GuestReport, name: string): CliRun {
  const cli = step(report, name).cli;
  if (cli === undefined) throw new Error(`step "${name}" ran no CLI`);
  return cli;
}

/** Drivers of the given functions, e.g. `{ '0000:00:02.0': 'vfio-pci', ... }`. */
export function driversOf(facts: Facts, addresses: readonly string[]): Record<string, string | null> {
  return Object.fromEntries(addresses.map((a) => [a, facts.pci[a]?.driver ?? null]));
}

/** The group's member list as the kernel reports it for `address`. */
export function groupMembers(facts: Facts, address: string): readonly string[] {
  const g = facts.pci[address]?.iommuGroup;
  if (g === null || g === undefined) return [];
  return facts.groups[g] ?? [];
}
