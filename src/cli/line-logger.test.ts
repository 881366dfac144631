import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import { createLineLogger } from './line-logger.js';

describe('createLineLogger (one-shot commands, pino-compatible lines)', () => {
  const capture = (level: string): { lines: Record<string, unknown>[]; log: ReturnType<typeof createLineLogger> } => {
    const lines: Record<string, unknown>[] = [];
    return { lines, log: createLineLogger(level, { component: 'cli' }, (l) => lines.push(JSON.parse(l) as Record<string, unknown>)) };
  };

  it('writes one JSON line per entry at or above the level, with pino level numbers, time, bindings and msg', () => {
    const { lines, log } = capture('info');
    log.debug({ step: 1 }, 'hidden');
    log.info({ step: 2 }, 'shown');
    log.error({ code: 'X' });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 30, component: 'cli', step: 2, msg: 'shown' });
    expect(typeof lines[0]!.time).toBe('number');
    expect(lines[1]).toEqual({ level: 50, time: lines[1]!.time, component: 'cli', code: 'X' });
  });

  it('children add bindings; errors keep type, message and stack', () => {
    const { lines, log } = capture('debug');
    log.child({ group: 2 }).warn({ err: new TypeError('boom') }, 'failed');
    expect(lines[0]).toMatchObject({ level: 40, component: 'cli', group: 2, msg: 'failed', err: { type: 'TypeError', message: 'boom' } });
    expect(String((lines[0]!.err as { stack: string }).stack)).toContain('TypeError: boom');
  });

  it('silent writes nothing; an unknown level is an invalid argument', () => {
    const { lines, log } = capture('silent');
    log.error({}, 'x');
    expect(lines).toEqual([]);
    expect(() => createLineLogger('verbose')).toThrow(InvalidArgumentError);
    // The same message as the agent's pino logger gives (src/cli/log-level.ts), naming every valid level.
    expect(() => createLineLogger('verbose')).toThrow('--log-level must be one of fatal, error, warn, info, debug, trace, silent, not "verbose"');
    expect(() => createLineLogger('constructor')).toThrow(InvalidArgumentError); // not an inherited property
  });
});
