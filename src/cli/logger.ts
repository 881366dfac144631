import pino from 'pino';
import { InvalidArgumentError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Structured JSON logs on stderr (stdout stays for command output). InvalidArgumentError for an unknown level. */
export function createLogger(level: string, bindings: object = {}): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new InvalidArgumentError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(level)}`);
  }
  return pino({ level, base: { ...bindings } }, pino.destination({ fd: 2, sync: true })) as unknown as Logger;
}
