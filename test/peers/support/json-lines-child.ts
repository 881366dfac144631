import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * A Go harness process driven by JSON lines: each request `{id, op, ...args}` on stdin gets one reply
 * `{id, ok, error?, result?}` on stdout; stderr is kubelet's klog text (kept, bounded, for assertions). The kubelet
 * device-manager and DRA-manager harnesses (test/peers/{kubelet,dra}) both speak it.
 */
export class JsonLinesChild {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private log = '';

  constructor(
    private readonly proc: ChildProcess,
    private readonly what: string,
  ) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const reply = JSON.parse(line) as { id: number; ok: boolean; error?: string; result?: unknown };
      const w = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      if (reply.ok) w?.resolve(reply.result);
      else w?.reject(new Error(`${what}: ${reply.error}`));
    });
    proc.stderr!.on('data', (d: Buffer) => {
      this.log += d.toString();
      if (this.log.length > 400_000) this.log = this.log.slice(-200_000);
    });
    proc.on('exit', (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`${what} exited (${code}): ${this.log.slice(-2000)}`));
      this.waiting.clear();
    });
  }

  /** Starts `binary` with klog at verbosity 5 on stderr. */
  static spawn(binary: string, what: string): JsonLinesChild {
    return new JsonLinesChild(spawn(binary, ['-v=5', '-logtostderr'], { stdio: ['pipe', 'pipe', 'pipe'] }), what);
  }

  /** Everything the harness logged so far (klog text). */
  get logs(): string {
    return this.log;
  }

  call<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  /** Ends stdin (the harness exits on EOF); SIGKILL after 5 s. */
  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.stdin!.end();
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}
