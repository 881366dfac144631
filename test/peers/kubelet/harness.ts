/**
 * Drives cmd/kubelet-devicemanager: kubelet's real device manager and PodResources v1 server in a
 * child process, over its JSON-lines control protocol (see main.go). stderr (klog at -v=5) is kept so
 * tests can read what kubelet itself logged, e.g. whether it asked for a preferred allocation.
 */
import { JsonLinesChild } from '../support/json-lines-child.js';

export interface Capacity {
  readonly capacity: Record<string, number>;
  readonly allocatable: Record<string, number>;
  readonly inactive: string[];
}

export interface ContainerOptions {
  readonly envs: Record<string, string>;
  readonly devices: { pathOnHost: string; pathInContainer: string; permissions: string }[] | null;
  readonly mounts: { hostPath: string; containerPath: string; readOnly: boolean }[] | null;
  readonly annotations: Record<string, string>;
  readonly allocated: Record<string, string[]>;
}

export interface PodRequest {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly container: string;
  readonly limits: Record<string, number>;
}

export class KubeletDeviceManager {
  private constructor(private readonly child: JsonLinesChild) {}

  /** Starts the harness process (klog verbosity 5: kubelet's GetPreferredAllocation decisions are logged). */
  static spawn(binary: string): KubeletDeviceManager {
    return new KubeletDeviceManager(JsonLinesChild.spawn(binary, 'kubelet device manager'));
  }

  /** Everything kubelet logged so far (klog text). */
  get logs(): string {
    return this.child.logs;
  }

  call<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    return this.child.call<T>(op, args);
  }

  /** A new ManagerImpl on `dir` (its registration server wipes the directory's sockets, as kubelet does). */
  start(dir: string, podResourcesSocket?: string): Promise<unknown> {
    return this.call('start', { dir, ...(podResourcesSocket ? { podResourcesSocket } : {}) });
  }
  stop(): Promise<unknown> {
    return this.call('stop');
  }
  capacity(): Promise<Capacity> {
    return this.call('capacity');
  }
  devices(): Promise<Record<string, Record<string, { health: string; numa?: number[] }>>> {
    return this.call('devices');
  }
  allocate(pod: PodRequest): Promise<ContainerOptions> {
    return this.call('allocate', { pod });
  }
  removePod(uid: string): Promise<unknown> {
    return this.call('removePod', { uid });
  }
  checkpoint(): Promise<CheckpointFile> {
    return this.call('checkpoint');
  }
  isExtendedResourceName(names: readonly string[]): Promise<boolean[]> {
    return this.call('isExtendedResourceName', { names });
  }

  close(): Promise<void> {
    return this.child.close();
  }
}

/** kubelet_internal_checkpoint as kubelet writes it (checkpoint/checkpoint.go). */
export interface CheckpointFile {
  Data: {
    PodDeviceEntries: { PodUID: string; ContainerName: string; ResourceName: string; DeviceIDs: Record<string, string[]>; AllocResp: string }[] | null;
    RegisteredDevices: Record<string, string[]> | null;
  };
  Checksum: number;
}

/** Polls `fn` every 100 ms until it returns something other than undefined/false. */
export async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
