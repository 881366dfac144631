import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { HostWriteError, TimeoutError, errnoOf } from '../core/errors.js';

/**
 * The program the writer child runs (CommonJS, node:fs only). One request per line on stdin
 * (`{"id","file","value"}`), one answer per line on stdout. Each write is one `open(O_WRONLY|O_TRUNC)`
 * (never O_CREAT: a missing attribute fails with ENOENT instead of becoming a file) and one `write(2)`
 * of the whole value, because a sysfs store function sees exactly one write. Synchronous on purpose:
 * the child does one thing at a time, and when a write blocks in the kernel the whole child is the
 * thing we abandon.
 */
const CHILD_PROGRAM = `
const fs = require('node:fs');
const rl = require('node:readline').createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const { id, file, value } = JSON.parse(line);
  let answer;
  try {
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC);
    try {
      const buf = Buffer.from(value, 'utf8');
      const n = fs.writeSync(fd, buf, 0, buf.length, null);
      if (n !== buf.length) throw Object.assign(new Error('short write'), { code: 'EIO' });
    } finally {
      try { fs.closeSync(fd); } catch {}
    }
    answer = { id, ok: true };
  } catch (err) {
    answer = { id, ok: false, code: err.code, message: err.message };
  }
  process.stdout.write(JSON.stringify(answer) + '\\n');
});
rl.on('close', () => process.exit(0));
`;

export interface WriterProcessDeps {
  /** The Node binary; default the one running us. */
  readonly execPath?: string;
  /** The child exits after this long without a request (it costs a process start to bring back). Default 5 s. */
  readonly idleMs?: number;
}

interface Pending {
  readonly id: number;
  readonly file: string;
  readonly path: string;
  readonly value: string;
  readonly signal?: AbortSignal;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * Host writes in a short-lived child process that we can walk away from.
 *
 * Why: a sysfs write can block in the kernel for ever (an `unbind` waiting in a driver's remove(), the
 * device lock held by a stuck probe). Node's fs calls run on libuv's pool of 4 threads and cannot be
 * cancelled: each abandoned write would keep one thread for good (a long-lived agent stops doing any
 * file I/O after 4 hangs), and a worker thread stuck in a syscall can keep the process from exiting.
 * A child process can be SIGKILLed (a blocked `open()` of a FIFO dies at once; a thread in
 * uninterruptible sleep dies when the kernel lets it go) and is never waited for: it is unreferenced,
 * so neither the event loop nor `process.exit` depends on it.
 *
 * Cost: one Node start per burst of writes (the child stays for `idleMs` after the last request), then
 * a pipe round trip per write — see `npm run bench -- writes`.
 */
export class WriterProcess {
  private child: ChildProcess | undefined;
  private readonly queue: Pending[] = [];
  private inFlight: Pending | undefined;
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Children abandoned because a write in them did not return (for tests and diagnostics). */
  readonly abandoned: number[] = [];

  constructor(private readonly deps: WriterProcessDeps = {}) {}

  /**
   * Writes `value` to the absolute `file` (`path` is the host-relative name used in errors). Rejects with
   * `HostWriteError` carrying the errno, or with `TimeoutError` when `signal` aborts first — the child
   * doing the write is then killed and abandoned, and the next write gets a fresh one.
   */
  write(file: string, path: string, value: string, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) {
      return Promise.reject(new TimeoutError(`writing ${JSON.stringify(value)} to ${path} was aborted before it started`, { cause: signal.reason }));
    }
    return new Promise<void>((resolve, reject) => {
      const p: Pending = { id: this.nextId++, file, path, value, signal, resolve, reject };
      const onAbort = (): void => this.abort(p);
      signal?.addEventListener('abort', onAbort, { once: true });
      const settle = <T>(fn: (x: T) => void) => (x: T): void => {
        signal?.removeEventListener('abort', onAbort);
        fn(x);
      };
      this.queue.push({ ...p, resolve: settle(resolve), reject: settle(reject) });
      this.pump();
    });
  }

  /** Starts the child now (in the background) so the first write does not pay for the process start. */
  warm(): void {
    if (this.child || this.inFlight) return;
    const child = this.ensureChild();
    unref(child);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.close(), this.deps.idleMs ?? 5_000);
    this.idleTimer.unref();
  }

  /** Ends the idle child now (tests; the CLI does not need it, the child is unreferenced). */
  close(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.child?.stdin?.end();
    this.child = undefined;
  }

  private pump(): void {
    if (this.inFlight || this.queue.length === 0) return;
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    const p = this.queue.shift()!;
    this.inFlight = p;
    const child = this.ensureChild();
    // Referenced while a write is outstanding: the caller is waiting for it.
    child.ref();
    for (const s of [child.stdin, child.stdout]) (s as unknown as { ref?: () => void } | null)?.ref?.();
    child.stdin!.write(JSON.stringify({ id: p.id, file: p.file, value: p.value }) + '\n');
  }

  private ensureChild(): ChildProcess {
    if (this.child) return this.child;
    const child = spawn(this.deps.execPath ?? process.execPath, ['--max-old-space-size=16', '-e', CHILD_PROGRAM], {
      // No NODE_OPTIONS (a test runner's loaders) and nothing else from our environment.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    this.child = child;
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => this.onAnswer(child, line));
    child.on('error', (err) => this.onChildGone(child, err));
    child.on('exit', (code, sig) => this.onChildGone(child, new Error(`writer process exited (${sig ?? code})`)));
    child.stdin!.on('error', () => undefined); // EPIPE after the child died: reported through 'exit'
    return child;
  }

  private onAnswer(child: ChildProcess, line: string): void {
    if (child !== this.child) return;
    const p = this.inFlight;
    let answer: { id?: number; ok?: boolean; code?: string; message?: string };
    try {
      answer = JSON.parse(line) as typeof answer;
    } catch {
      return;
    }
    if (!p || answer.id !== p.id) return;
    this.inFlight = undefined;
    if (answer.ok) p.resolve();
    else p.reject(new HostWriteError(p.path, p.value, errnoOf({ code: answer.code }), { cause: new Error(answer.message ?? answer.code) }));
    this.afterRequest();
  }

  private afterRequest(): void {
    if (this.queue.length > 0) return this.pump();
    const child = this.child;
    if (!child) return;
    unref(child);
    this.idleTimer = setTimeout(() => this.close(), this.deps.idleMs ?? 5_000);
    this.idleTimer.unref();
  }

  /** A caller gave up: drop a queued request, or abandon the child that is stuck in it. */
  private abort(p: Pending): void {
    const err = new TimeoutError(`writing ${JSON.stringify(p.value)} to ${p.path} did not complete before it was aborted`, { cause: p.signal?.reason });
    const queued = this.queue.findIndex((q) => q.id === p.id);
    if (queued >= 0) {
      this.queue.splice(queued, 1)[0]!.reject(err);
      return;
    }
    if (this.inFlight?.id !== p.id) return;
    const stuck = this.inFlight;
    this.inFlight = undefined;
    const child = this.child;
    this.child = undefined;
    if (child) this.abandon(child);
    stuck.reject(err);
    this.pump();
  }

  private abandon(child: ChildProcess): void {
    if (child.pid !== undefined) this.abandoned.push(child.pid);
    child.removeAllListeners('exit');
    child.on('exit', () => undefined);
    child.kill('SIGKILL');
    child.stdin?.destroy();
    child.stdout?.destroy();
    unref(child);
  }

  private onChildGone(child: ChildProcess, err: Error): void {
    if (child !== this.child) return;
    this.child = undefined;
    const p = this.inFlight;
    this.inFlight = undefined;
    if (p) p.reject(new HostWriteError(p.path, p.value, errnoOf(err), { cause: err }));
    this.pump();
  }
}

function unref(child: ChildProcess): void {
  child.unref();
  for (const s of [child.stdin, child.stdout]) (s as unknown as { unref?: () => void } | null)?.unref?.();
}
