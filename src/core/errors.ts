/**
 * One error hierarchy with stable codes. Tests assert on `code` and class, never on message text.
 * The CLI maps codes to documented exit codes (src/cli/exit-codes.ts).
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT', // malformed BDF, vendor:device, path tricks, bad flag values
  'NOT_FOUND', // unknown GPU / device
  'NOT_A_GPU', // the address exists but is not a GPU we manage
  'BLOCKED', // the verdict forbids the change (foreign device, boot GPU not permitted, IOMMU off, ...)
  'IN_USE', // a pod/VM holds the GPU
  'HOST_READ_FAILED',
  'HOST_WRITE_FAILED',
  'TIMEOUT',
  'VERIFY_FAILED', // a step ran but the read-back did not show its effect
  'ROLLBACK_FAILED', // a change failed and undoing it failed too: the group may be half-bound
  'JOURNAL', // the journal is unreadable or another run holds it
  'PROFILE_INVALID',
  'KUBELET',
  'KUBE_API',
  'CONFLICT',
  'INTERNAL',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export abstract class HandoffError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
  toJSON(): { code: ErrorCode; name: string; message: string } {
    return { code: this.code, name: this.name, message: this.message };
  }
}

export class InvalidArgumentError extends HandoffError {
  readonly code = 'INVALID_ARGUMENT';
}

export class NotFoundError extends HandoffError {
  readonly code = 'NOT_FOUND';
}

export class NotAGpuError extends HandoffError {
  readonly code = 'NOT_A_GPU';
}

export class BlockedError extends HandoffError {
  readonly code = 'BLOCKED';
  constructor(
    message: string,
    readonly reasons: readonly { code: string; message: string }[],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class InUseError extends HandoffError {
  readonly code = 'IN_USE';
}

/** Errno-like codes a host write/read can fail with (the kernel's answers). */
export type HostErrno = 'EBUSY' | 'ENODEV' | 'EACCES' | 'EIO' | 'EINVAL' | 'ENOENT' | 'EPERM' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ELOOP' | 'UNKNOWN';

export class HostReadError extends HandoffError {
  readonly code = 'HOST_READ_FAILED';
  constructor(
    readonly path: string,
    readonly errno: HostErrno,
    options?: { cause?: unknown },
  ) {
    super(`reading ${path} failed: ${errno}`, options);
  }
}

export class HostWriteError extends HandoffError {
  readonly code = 'HOST_WRITE_FAILED';
  constructor(
    readonly path: string,
    readonly value: string,
    readonly errno: HostErrno,
    options?: { cause?: unknown },
  ) {
    super(`writing ${JSON.stringify(value)} to ${path} failed: ${errno}`, options);
  }
}

export class TimeoutError extends HandoffError {
  readonly code = 'TIMEOUT';
}

/**
 * A host write (or module load) that did not return within the write timeout. The kernel may still be
 * stuck in it and may still apply it later, so the run writes nothing more to `target` (the device,
 * console or module the step was about).
 */
export class HungWriteError extends TimeoutError {
  constructor(
    readonly what: string,
    readonly target: string,
    readonly timeoutMs: number,
    options?: { cause?: unknown },
  ) {
    super(`${what} did not return within ${timeoutMs} ms; the kernel may still be stuck in it, so nothing more is written to ${target}`, options);
  }
}

/** Undoing a failed change failed too (or a hung write left it unknowable): the group may be half-bound. */
export class RollbackFailedError extends HandoffError {
  readonly code = 'ROLLBACK_FAILED';
}

export class VerifyError extends HandoffError {
  readonly code = 'VERIFY_FAILED';
}

export class JournalError extends HandoffError {
  readonly code = 'JOURNAL';
}

export class ProfileError extends HandoffError {
  readonly code = 'PROFILE_INVALID';
}

export class KubeletError extends HandoffError {
  readonly code = 'KUBELET';
}

export class KubeApiError extends HandoffError {
  readonly code = 'KUBE_API';
  constructor(
    message: string,
    readonly status: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class ConflictError extends HandoffError {
  readonly code = 'CONFLICT';
}

export class InternalError extends HandoffError {
  readonly code = 'INTERNAL';
}

export function errnoOf(err: unknown): HostErrno {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'EBUSY':
    case 'ENODEV':
    case 'EACCES':
    case 'EIO':
    case 'EINVAL':
    case 'ENOENT':
    case 'EPERM':
    case 'EEXIST':
    case 'ENOTDIR':
    case 'EISDIR':
    case 'ELOOP':
      return code;
    default:
      return 'UNKNOWN';
  }
}
