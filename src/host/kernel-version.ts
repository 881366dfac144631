import type { KernelInfo } from './model.js';

/**
 * Parses a kernel release string (`/proc/sys/kernel/osrelease`), e.g. `6.1.0-56-amd64`,
 * `6.12.117+deb12-amd64`, `6.18.48-talos`, `5.15.0-105-generic`. Only major and minor are
 * extracted: the kernel-specific behaviours we care about (vfio-pci console removal in 6.0,
 * sysfb restricted to the boot device in 6.5) change at minor releases. Distro suffixes are kept
 * in `release` because Debian's 6.1 behaves differently from upstream stable (kernel-e2e.md).
 */
export function parseKernelRelease(raw: string | undefined): KernelInfo {
  const release = raw?.trim();
  if (!release) return { release: undefined, major: undefined, minor: undefined };
  const m = /^(\d+)\.(\d+)(?:[.\-+_~]|$)/.exec(release);
  if (!m) return { release, major: undefined, minor: undefined };
  return { release, major: Number(m[1]), minor: Number(m[2]) };
}

/** True when the kernel is at least `major.minor`; `undefined` when the release could not be parsed. */
export function kernelAtLeast(kernel: KernelInfo, major: number, minor: number): boolean | undefined {
  if (kernel.major === undefined || kernel.minor === undefined) return undefined;
  return kernel.major > major || (kernel.major === major && kernel.minor >= minor);
}
