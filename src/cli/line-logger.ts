import { writeSync } from 'node:fs';
import type { Logger } from '../core/logger.js';
import { logLevelValue } from './log-level.js';

/**
 * Logger for the one-shot commands (inspect, prepare, release): the same JSON lines on stderr as pino writes
 * (`{"level":40,"time":<ms>,...bindings,...fields,"msg":"..."}`, errors under `err` as {type, message, stack}),
 * written synchronously, without loading pino. pino and its ~40 module files are a noticeable share of a
 * short-lived process's start (about 2 s of a 16 s `prepare` under QEMU/TCG in the kernel e2e timing scenario);
 * the long-running agent, plugin and operator keep pino.
 */

function serialise(value: unknown): unknown {
  if (value instanceof Error) return { type: value.name, message: value.message, stack: value.stack };
  return value;
}

export function createLineLogger(level: string, bindings: object = {}, write: (line: string) => void = (l) => writeSync(2, l)): Logger {
  const threshold = logLevelValue(level);
  const emit = (n: number) => (obj: object, msg?: string): void => {
    if (n < threshold) return;
    const fields = Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, serialise(v)]));
    write(`${JSON.stringify({ level: n, time: Date.now(), ...bindings, ...fields, ...(msg !== undefined ? { msg } : {}) })}\n`);
  };
  return {
    debug: emit(20),
    info: emit(30),
    warn: emit(40),
    error: emit(50),
    child: (more) => createLineLogger(level, { ...bindings, ...more }, write),
  };
}
