import pino from 'pino';
import type { Logger } from '../core/logger.js';

/** Structured JSON logs on stderr (stdout stays for command output). */
export function createLogger(level: string, bindings: object = {}): Logger {
  return pino({ level, base: { ...bindings } }, pino.destination({ fd: 2, sync: true })) as unknown as Logger;
}
