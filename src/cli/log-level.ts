import { InvalidArgumentError } from '../core/errors.js';

/** pino's level names and numbers (pino's `levels.values`), which both CLI loggers write. */
export const LOG_LEVEL_VALUES: Readonly<Record<string, number>> = { fatal: 60, error: 50, warn: 40, info: 30, debug: 20, trace: 10, silent: Infinity };

/** The `--log-level` values, most severe first. */
export const LOG_LEVELS = Object.keys(LOG_LEVEL_VALUES) as readonly string[];

/**
 * The threshold of a `--log-level` value; InvalidArgumentError (exit 2) naming every valid level for any other.
 * Kept apart from both loggers so the one-shot commands' line logger does not load pino to check its argument.
 */
export function logLevelValue(level: string): number {
  const value = Object.hasOwn(LOG_LEVEL_VALUES, level) ? LOG_LEVEL_VALUES[level] : undefined;
  if (value === undefined) throw new InvalidArgumentError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(level)}`);
  return value;
}
