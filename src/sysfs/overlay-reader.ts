import type { HostReader } from './port.js';

/**
 * A reader that answers some path prefixes from a fallback when the primary lacks them. The agent's
 * container ships its own pci.ids (Debian hwdata); the host mount at /host usually has one too, but
 * when it does not, naming GPUs should not depend on the host's /usr/share.
 */
export class OverlayReader implements HostReader {
  constructor(private readonly deps: { primary: HostReader; fallback: HostReader; prefixes: readonly string[] }) {}

  private async pick(path: string): Promise<HostReader> {
    if (!this.deps.prefixes.some((p) => path.startsWith(p))) return this.deps.primary;
    return (await this.deps.primary.exists(path)) ? this.deps.primary : this.deps.fallback;
  }

  async readText(path: string): Promise<string | undefined> {
    return (await this.pick(path)).readText(path);
  }
  async readLink(path: string): Promise<string | undefined> {
    return (await this.pick(path)).readLink(path);
  }
  async list(path: string): Promise<string[]> {
    return (await this.pick(path)).list(path);
  }
  async exists(path: string): Promise<boolean> {
    return (await this.pick(path)).exists(path);
  }
}
