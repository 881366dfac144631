/**
 * The kernel end-to-end test bed: host packages, stock Debian kernels and a tiny initramfs.
 *
 * Kernels are fetched with `apt-get download` + `dpkg -x` into the git-ignored `.cache/kernel-e2e/` and never
 * installed on the host, so the tests can run on any Debian bookworm machine (root needed for apt and 9p).
 * Everything expensive is cached and keyed by what it depends on, so a warm run costs nothing here.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const CACHE_DIR = join(REPO_ROOT, '.cache', 'kernel-e2e');
export const GUEST_DIR = join(REPO_ROOT, 'test', 'e2e', 'guest');
export const CLI_PATH = join(REPO_ROOT, 'dist', 'cli', 'main.js');

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

/** The two kernel series the issue asks for: Debian's default 6.1 and the newest 6.12 from bookworm-security. */
export type KernelSeries = '6.1' | '6.12';
export const KERNEL_SERIES: readonly KernelSeries[] = ['6.1', '6.12'];

export interface Kernel {
  readonly series: KernelSeries;
  readonly packageName: string;
  /** `uname -r` of the kernel, e.g. `6.1.0-56-amd64`. */
  readonly release: string;
  /** The `dpkg -x` root: `boot/vmlinuz-<release>` and `lib/modules/<release>`. */
  readonly root: string;
  readonly vmlinuz: string;
  readonly initrd: string;
}

const HOST_PACKAGES = ['qemu-system-x86', 'ovmf', 'busybox-static', 'kmod', 'cpio', 'xz-utils', 'zstd', 'strace'] as const;
/** One probe per package: a file that only that package ships. */
const HOST_PROBES: readonly string[] = [
  '/usr/bin/qemu-system-x86_64',
  OVMF_CODE,
  '/bin/busybox',
  '/usr/sbin/depmod',
  '/usr/bin/cpio',
  '/usr/bin/xz',
  '/usr/bin/zstd',
  '/usr/bin/strace', // the handoff-timing scenario traces prepare in the guest (host /usr is shared)
];
/** Resolved package names are reused this long; `apt-get update` then runs again to find newer kernels. */
const RESOLVE_TTL_MS = 12 * 3600_000;
/** Modules the initramfs must insert itself: the 9p transport and overlayfs are modules in Debian kernels. */
const EARLY_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'] as const;

export class PrerequisiteError extends Error {
  override readonly name = 'PrerequisiteError';
}

/**
 * Why the suite cannot run here, or `undefined` when it can. Locally the tests skip with this message;
 * under `CI=true` the harness turns it into a failure, because a silently skipped proof is no proof.
 */
export function unmetPrerequisite(): string | undefined {
  if (process.platform !== 'linux') return 'kernel e2e tests need Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'kernel e2e tests need root (apt-get for QEMU/OVMF, 9p shares of /usr and /etc); run them as root or in CI';
  }
  return undefined;
}

export const isCi = (): boolean => process.env.CI === 'true';

function run(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  try {
    return execFileSync(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', ...opts.env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as { stderr?: string; status?: number };
    throw new PrerequisiteError(`${cmd} ${args.join(' ')} failed (status ${String(e.status)}): ${String(e.stderr ?? '').slice(-2000)}`, {
      cause: err,
    });
  }
}

let aptUpdated = false;
function aptUpdate(): void {
  if (aptUpdated) return;
  run('apt-get', ['update', '-qq']);
  aptUpdated = true;
}

/** Installs the host tools with apt-get when any of them is missing. */
export function ensureHostPackages(): void {
  if (HOST_PROBES.every((p) => existsSync(p))) return;
  aptUpdate();
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...HOST_PACKAGES]);
  const still = HOST_PROBES.filter((p) => !existsSync(p));
  if (still.length > 0) throw new PrerequisiteError(`apt-get install did not provide ${still.join(', ')}`);
}

interface Resolved {
  readonly at: number;
  readonly packages: Record<KernelSeries, string>;
}

/** Picks the package names with apt-cache: `linux-image-amd64`'s dependency and the newest 6.12 `+deb12` build. */
export function resolveKernelPackages(): Record<KernelSeries, string> {
  const file = join(CACHE_DIR, 'resolved.json');
  if (existsSync(file)) {
    const cached = JSON.parse(readFileSync(file, 'utf8')) as Resolved;
    if (Date.now() - cached.at < RESOLVE_TTL_MS) return cached.packages;
  }
  aptUpdate();
  const depends = run('apt-cache', ['depends', 'linux-image-amd64']);
  const v61 = /Depends: (linux-image-6\.1\.\S+-amd64)\b/.exec(depends)?.[1];
  const search = run('apt-cache', ['search', '--names-only', '^linux-image-6\\.12\\.[0-9]+\\+deb12-amd64$']);
  const v612 = search
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => /^linux-image-6\.12\.\d+\+deb12-amd64$/.test(n))
    .sort((a, b) => Number(/6\.12\.(\d+)/.exec(a)?.[1]) - Number(/6\.12\.(\d+)/.exec(b)?.[1]))
    .at(-1);
  if (v61 === undefined) throw new PrerequisiteError(`apt-cache found no 6.1 kernel behind linux-image-amd64:\n${depends}`);
  if (v612 === undefined) throw new PrerequisiteError('apt-cache found no linux-image-6.12.*+deb12-amd64 (is bookworm-security in the sources?)');
  const packages = { '6.1': v61, '6.12': v612 } as Record<KernelSeries, string>;
  mkdirSync(CACHE_DIR, { recursive: true });
  writeFileSync(file, JSON.stringify({ at: Date.now(), packages } satisfies Resolved, null, 2));
  return packages;
}

/** Downloads and unpacks one kernel package (not installed), runs depmod on it. Idempotent. */
export function fetchKernel(packageName: string): { root: string; release: string } {
  const root = join(CACHE_DIR, 'kernels', packageName);
  const done = join(root, '.complete');
  if (!existsSync(done)) {
    const debs = join(CACHE_DIR, 'debs');
    mkdirSync(debs, { recursive: true });
    const haveDeb = (): string | undefined => readdirSync(debs).find((f) => f.startsWith(`${packageName}_`) && f.endsWith('.deb'));
    if (haveDeb() === undefined) run('apt-get', ['download', packageName], { cwd: debs });
    const deb = haveDeb();
    if (deb === undefined) throw new PrerequisiteError(`apt-get download ${packageName} produced no .deb`);
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root, { recursive: true });
    run('dpkg', ['-x', join(debs, deb), root]);
    const release = readdirSync(join(root, 'lib', 'modules'))[0];
    if (release === undefined) throw new PrerequisiteError(`${packageName} holds no lib/modules`);
    run('depmod', ['-b', root, release]);
    writeFileSync(done, release);
  }
  return { root, release: readFileSync(done, 'utf8').trim() };
}

/**
 * Builds the initramfs: busybox-static, the early modules (decompressed: busybox insmod cannot read .ko.xz)
 * and our `/init`. Keyed by kernel release and the hash of `init`, so editing `init` rebuilds it.
 */
export function buildInitramfs(root: string, release: string): string {
  const init = readFileSync(join(GUEST_DIR, 'init'));
  const key = createHash('sha256').update(init).update(release).digest('hex').slice(0, 12);
  const out = join(CACHE_DIR, 'initrd', `${release}-${key}.cpio.gz`);
  if (existsSync(out)) return out;
  mkdirSync(dirname(out), { recursive: true });
  const src = mkdtempSync(join(tmpdir(), 'vfio-e2e-initrd-'));
  try {
    for (const d of ['bb', 'mods', 'dev', 'proc', 'sys', 'lower', 'lower-etc', 'upper', 'etc', 'tmp', 'run', 'mnt', 'root', 'var']) {
      mkdirSync(join(src, d));
    }
    copyFileSync('/bin/busybox', join(src, 'bb', 'busybox'));
    chmodSync(join(src, 'bb', 'busybox'), 0o755);
    const order: string[] = [];
    for (const m of EARLY_MODULES) {
      const deps = run('modprobe', ['-d', root, '-S', release, '--show-depends', m]);
      for (const line of deps.split('\n')) {
        const path = /^insmod (\S+)/.exec(line)?.[1];
        if (path === undefined) continue; // "builtin <name>" lines: nothing to load
        const name = basename(path).replace(/\.(xz|zst)$/, '');
        if (order.includes(name)) continue;
        const target = join(src, 'mods', name);
        if (path.endsWith('.xz')) writeFileSync(target, execFileSync('xz', ['-dc', path], { maxBuffer: 256 << 20 }));
        else if (path.endsWith('.zst')) writeFileSync(target, execFileSync('zstd', ['-qdc', path], { maxBuffer: 256 << 20 }));
        else copyFileSync(path, target);
        order.push(name);
      }
    }
    writeFileSync(join(src, 'mods', 'order'), order.map((n) => `${n}\n`).join(''));
    writeFileSync(join(src, 'init'), init);
    chmodSync(join(src, 'init'), 0o755);
    const tmpOut = `${out}.tmp`;
    run('bash', ['-c', `set -o pipefail; find . | cpio -o -H newc --quiet | gzip -1 > '${tmpOut}'`], { cwd: src });
    run('mv', [tmpOut, out]);
  } finally {
    rmSync(src, { recursive: true, force: true });
  }
  return out;
}

const kernels = new Map<KernelSeries, Kernel>();

/**
 * Everything a boot of `series` needs, prepared once per process. Throws `PrerequisiteError` when the bed
 * cannot be built (no network for apt, no root, ...).
 */
export function ensureKernel(series: KernelSeries): Kernel {
  const known = kernels.get(series);
  if (known !== undefined) return known;
  const unmet = unmetPrerequisite();
  if (unmet !== undefined) throw new PrerequisiteError(unmet);
  ensureHostPackages();
  const packageName = resolveKernelPackages()[series];
  const { root, release } = fetchKernel(packageName);
  const vmlinuz = join(root, 'boot', `vmlinuz-${release}`);
  if (!existsSync(vmlinuz)) throw new PrerequisiteError(`${vmlinuz} missing after dpkg -x`);
  const initrd = buildInitramfs(root, release);
  const kernel: Kernel = { series, packageName, release, root, vmlinuz, initrd };
  kernels.set(series, kernel);
  return kernel;
}

/** The guests run the built CLI from `dist/`; `npm test` builds it, a direct vitest run may not have. */
export function ensureCliBuilt(): void {
  if (!existsSync(CLI_PATH)) {
    throw new PrerequisiteError(`${CLI_PATH} is missing: run \`npm run build\` before the kernel e2e tests`);
  }
}
