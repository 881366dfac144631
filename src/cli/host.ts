import { realClock } from '../core/clock.js';
import { InvalidArgumentError, ProfileError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { HandoffEngine, type EngineDeps } from '../handoff/engine.js';
import type { HandoffRecorder } from '../metrics/recorders.js';
import { NodeHost } from '../sysfs/node-host.js';
import type { HostPort } from '../sysfs/port.js';
import { FileStateStore } from '../state/file-state-store.js';
import { MemoryStateStore, type StateStore } from '../state/journal.js';

export interface HostOptions {
  readonly hostRoot: string;
  readonly stateDir: string;
  readonly profile?: string;
}

/**
 * Composition of the engine's I/O: the real host rooted at --host-root, or a simulated kernel built
 * from --profile (a built-in name or a YAML file), whose changes live only for this process.
 */
export async function openHost(opts: HostOptions): Promise<{ host: HostPort; store: StateStore; simulated: boolean }> {
  if (opts.profile) {
    // Loaded only for --profile: the profile schema (ajv) and the simulator cost start-up time on real hosts.
    const [{ loadBuiltinProfile, loadProfileFile }, { SimulatedKernel }] = await Promise.all([import('../profiles/load.js'), import('../sysfs/simulated-kernel.js')]);
    const profile = isProfilePath(opts.profile)
      ? await loadProfileFile(opts.profile)
      : await loadBuiltinProfile(opts.profile).catch((err: unknown) => {
          if (err instanceof ProfileError) throw new ProfileError(`${err.message}; a profile file is a path with a "/" or ending in ${PROFILE_EXTENSIONS.join(', ')}`);
          throw err;
        });
    return { host: new SimulatedKernel(profile), store: new MemoryStateStore(), simulated: true };
  }
  const host = new NodeHost({ root: opts.hostRoot });
  // A wrong mount (DaemonSet without /host, a typo) would otherwise look like a host with no GPUs.
  if (!(await host.exists('sys/bus/pci/devices'))) {
    throw new InvalidArgumentError(`--host-root ${opts.hostRoot} holds no sysfs (no sys/bus/pci/devices under it): check the host mount`);
  }
  return { host, store: new FileStateStore({ dir: opts.stateDir }), simulated: false };
}

/** File extensions `--profile` reads as a file (YAML; JSON is YAML too). */
export const PROFILE_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;

function isProfilePath(value: string): boolean {
  return value.includes('/') || PROFILE_EXTENSIONS.some((e) => value.endsWith(e));
}

export function createEngine(
  host: HostPort,
  store: StateStore,
  logger: Logger,
  opts: { simulated: boolean; recorder?: HandoffRecorder; afterStep?: (n: number) => void; writeTimeoutMs?: number; onStep?: EngineDeps['onStep'] },
): HandoffEngine {
  return new HandoffEngine({
    host,
    store,
    clock: realClock,
    logger,
    recorder: opts.recorder,
    scanDeviceUsers: !opts.simulated,
    afterStep: opts.afterStep,
    ...(opts.writeTimeoutMs !== undefined ? { writeTimeoutMs: opts.writeTimeoutMs } : {}),
    ...(opts.onStep ? { onStep: opts.onStep } : {}),
  });
}

/**
 * Test hook for the kernel e2e tests: with VFIO_HANDOFF_TEST_HOOKS=1 and VFIO_HANDOFF_CRASH_AFTER_STEP=k
 * the process SIGKILLs itself right after step k is journaled — a real crash, not an exception.
 */
export function crashHookFromEnv(env: NodeJS.ProcessEnv): ((n: number) => void) | undefined {
  if (env.VFIO_HANDOFF_TEST_HOOKS !== '1') return undefined;
  const k = Number(env.VFIO_HANDOFF_CRASH_AFTER_STEP);
  if (!Number.isInteger(k) || k < 1) return undefined;
  return (n) => {
    if (n === k) process.kill(process.pid, 'SIGKILL');
  };
}
