/**
 * Two kinds of failure (DESIGN.md §4.2): what fails in the kernel fails the
 * kernel's way (negative errno, null, DMA_MAPPING_ERROR) and is never an
 * exception; a misuse of dmalab itself throws a `DmalabError` saying what was
 * wrong and where.
 */

/** Where a user mistake was found: a file, a line and a field when known. */
export interface ErrorLocation {
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  readonly field?: string;
}

/** A misuse of dmalab (bad configuration, bad input file, bad argument). */
export class DmalabError extends Error {
  override readonly name = 'DmalabError';
  readonly location: ErrorLocation;

  constructor(message: string, location: ErrorLocation = {}) {
    super(formatLocated(message, location));
    this.location = location;
  }
}

function formatLocated(message: string, loc: ErrorLocation): string {
  const parts: string[] = [];
  if (loc.file !== undefined) {
    let where = loc.file;
    if (loc.line !== undefined) where += `:${loc.line}`;
    if (loc.line !== undefined && loc.column !== undefined) where += `:${loc.column}`;
    parts.push(where);
  }
  if (loc.field !== undefined) parts.push(loc.field);
  return parts.length > 0 ? `${parts.join(': ')}: ${message}` : message;
}

/**
 * The kernel's errno values (include/uapi/asm-generic/errno-base.h and
 * errno.h). Functions return them negated, as the kernel does: `-EINVAL`.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const E2BIG = 7;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENFILE = 23;
export const EMFILE = 24;
export const ENOTTY = 25;
export const ENOSPC = 28;
export const ESPIPE = 29;
export const EPIPE = 32;
export const ERANGE = 34;
export const ENOSYS = 38;
export const ETIMEDOUT = 110;
export const EOVERFLOW = 75;
export const EOPNOTSUPP = 95;
export const EREMOTEIO = 121;
export const ECANCELED = 125;
export const EHWPOISON = 133;

const ERRNO_NAMES: Readonly<Record<number, string>> = {
  [EPERM]: 'EPERM',
  [ENOENT]: 'ENOENT',
  [ESRCH]: 'ESRCH',
  [EINTR]: 'EINTR',
  [EIO]: 'EIO',
  [ENXIO]: 'ENXIO',
  [E2BIG]: 'E2BIG',
  [EBADF]: 'EBADF',
  [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM',
  [EACCES]: 'EACCES',
  [EFAULT]: 'EFAULT',
  [EBUSY]: 'EBUSY',
  [EEXIST]: 'EEXIST',
  [ENODEV]: 'ENODEV',
  [EINVAL]: 'EINVAL',
  [ENFILE]: 'ENFILE',
  [EMFILE]: 'EMFILE',
  [ENOTTY]: 'ENOTTY',
  [ENOSPC]: 'ENOSPC',
  [ESPIPE]: 'ESPIPE',
  [EPIPE]: 'EPIPE',
  [ERANGE]: 'ERANGE',
  [ENOSYS]: 'ENOSYS',
  [ETIMEDOUT]: 'ETIMEDOUT',
  [EOVERFLOW]: 'EOVERFLOW',
  [EOPNOTSUPP]: 'EOPNOTSUPP',
  [EREMOTEIO]: 'EREMOTEIO',
  [ECANCELED]: 'ECANCELED',
  [EHWPOISON]: 'EHWPOISON',
};

/** The symbolic name of an errno, accepting it negated (`errnoName(-22)` is `-EINVAL`). */
export function errnoName(err: number): string {
  const name = ERRNO_NAMES[Math.abs(err)];
  if (name === undefined) return String(err);
  return err < 0 ? `-${name}` : name;
}
