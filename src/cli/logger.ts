import pino from 'pino';
import type { Logger } from '../core/logger.js';
import { logLevelValue } from './log-level.js';

/** Structured JSON logs on stderr (stdout stays for command output). InvalidArgumentError for an unknown level. */
export function createLogger(level: string, bindings: object = {}): Logger {
  logLevelValue(level);
  return pino({ level, base: { ...bindings } }, pino.destination({ fd: 2, sync: true })) as unknown as Logger;
}
