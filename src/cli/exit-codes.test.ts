import { describe, expect, it } from 'vitest';
import { ERROR_CODES, HandoffError, type ErrorCode } from '../core/errors.js';
import { EXIT, exitCodeFor } from './exit-codes.js';

class Coded extends HandoffError {
  constructor(readonly code: ErrorCode) {
    super(`a ${code} error`);
  }
}

/** The README's "Exit codes" table, error code by error code. Codes the CLI's handoff paths never raise are internal (1). */
const README: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 2,
  PROFILE_INVALID: 2,
  NOT_FOUND: 3,
  NOT_A_GPU: 3,
  BLOCKED: 4,
  HOST_READ_FAILED: 5,
  HOST_WRITE_FAILED: 5,
  TIMEOUT: 5,
  VERIFY_FAILED: 5,
  IN_USE: 6,
  ROLLBACK_FAILED: 8,
  JOURNAL: 7,
  KUBELET: 1,
  KUBE_API: 1,
  CONFLICT: 1,
  INTERNAL: 1,
};

describe(exitCodeFor.name, () => {
  it.each(ERROR_CODES.map((c) => [c, README[c]] as const))('%s exits %i', (code, exit) => {
    expect(exitCodeFor(new Coded(code))).toBe(exit);
  });

  it('anything that is not one of our errors is internal (1)', () => {
    for (const err of [new Error('boom'), new TypeError('x.map is not a function'), 'a string', undefined, { code: 'BLOCKED' }]) {
      expect(exitCodeFor(err)).toBe(EXIT.INTERNAL);
    }
  });

  it('keeps the numbers of the table', () => {
    expect(EXIT).toEqual({ OK: 0, INTERNAL: 1, INVALID_ARGUMENT: 2, NOT_FOUND: 3, BLOCKED: 4, HOST_FAILURE: 5, IN_USE: 6, JOURNAL: 7, ROLLBACK_FAILED: 8 });
  });
});
