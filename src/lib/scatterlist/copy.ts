/**
 * The copy helpers of lib/scatterlist.c: bytes move between a host buffer
 * and the machine's memory as CPU loads and stores through the cached linear
 * map, a page piece at a time, exactly where `sg_copy_buffer()`'s
 * `sg_mapping_iter` walk puts them — so they go through the cache model
 * (and, on PA-RISC, through the kernel alias's cache colour).
 *
 * An entry with no struct page ends the copy with an `OOPS` finding (the
 * kernel would oops mapping it); the helpers then return the bytes copied
 * before it, never throw.
 */

import {
  apiCall,
  cpuRead,
  cpuWrite,
  cpuZero,
  DmalabError,
  formatHex,
  type Machine,
  type MemTxResult,
  OOPS,
  pageToPhys,
  reportFinding,
} from '../../machine/index.js';
import {
  miterNext,
  miterSkip,
  miterStart,
  miterStop,
  SG_MITER_ATOMIC,
  SG_MITER_FROM_SG,
  SG_MITER_TO_SG,
  type SgMappingIter,
} from './miter.js';
import type { Scatterlist } from './scatterlist.js';

function checkLen(fn: string, field: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new DmalabError(`${fn}: ${field} must be an integer from 0 to ${max}, got ${v}`, { field });
  }
}

/** A CPU access through `addr` that faulted: the kernel oopses. */
function oopsAccess(mi: SgMappingIter, write: boolean): void {
  reportFinding(
    mi.machine,
    OOPS.code,
    `BUG: unable to handle page fault for address: ${formatHex(mi.addr!)} ` +
      `(${write ? 'write' : 'read'} through the linear map: no memory behind page ${formatHex(mi.page!)})`,
    { details: { addr: mi.addr, page: mi.page, write } },
  );
  mi._dead = true;
}

/**
 * The loop shared by the copy helpers: `op` moves `len` bytes at physical
 * `pa` (linear-map address `va`) and host offset `done`.
 */
function walk(
  m: Machine,
  sgl: Scatterlist | null,
  nents: number,
  buflen: number,
  skip: number,
  flags: number,
  op: (pa: number, va: number, done: number, len: number) => MemTxResult,
): number {
  const mi = miterStart(m, sgl, nents, flags);
  if (!miterSkip(mi, skip)) return 0;
  let done = 0;
  while (done < buflen && miterNext(mi)) {
    const len = Math.min(mi.length, buflen - done);
    const pa = pageToPhys(mi.page!) + mi._offset;
    if (op(pa, mi.addr!, done, len) !== 'ok') {
      oopsAccess(mi, (flags & SG_MITER_TO_SG) !== 0);
      return done;
    }
    done += len;
  }
  miterStop(mi);
  return done;
}

function copyBuffer(
  m: Machine,
  fn: string,
  sgl: Scatterlist | null,
  nents: number,
  buf: Uint8Array,
  buflen: number,
  skip: number,
  toBuffer: boolean,
): number {
  checkLen(fn, 'buflen', buflen, buf.length);
  checkLen(fn, 'skip', skip, Number.MAX_SAFE_INTEGER);
  const flags = SG_MITER_ATOMIC | (toBuffer ? SG_MITER_FROM_SG : SG_MITER_TO_SG);
  return walk(m, sgl, nents, buflen, skip, flags, (pa, va, done, len) =>
    toBuffer ? cpuRead(m, pa, va, 'cached', buf, done, len) : cpuWrite(m, pa, va, 'cached', buf, done, len),
  );
}

/**
 * `sg_copy_buffer()`: copies up to `buflen` bytes between `buf` and the
 * list, after skipping `skip` bytes of the list; `toBuffer` copies out of
 * the list. Returns the bytes copied (fewer when the list is shorter, 0 when
 * the skip runs past it). kernel: sg_copy_buffer()
 */
export function sgCopyBuffer(
  m: Machine,
  sgl: Scatterlist | null,
  nents: number,
  buf: Uint8Array,
  buflen: number,
  skip: number,
  toBuffer: boolean,
): number {
  return apiCall(m, 'sg_copy_buffer', () =>
    copyBuffer(m, 'sg_copy_buffer', sgl, nents, buf, buflen, skip, toBuffer),
  );
}

/** `sg_copy_from_buffer()`: `buf` into the list. kernel: sg_copy_from_buffer() */
export function sgCopyFromBuffer(
  m: Machine,
  sgl: Scatterlist | null,
  nents: number,
  buf: Uint8Array,
  buflen: number,
): number {
  const fn = 'sg_copy_from_buffer';
  return apiCall(m, fn, () => copyBuffer(m, fn, sgl, nents, buf, buflen, 0, false));
}

/** `sg_copy_to_buffer()`: the list into `buf`. kernel: sg_copy_to_buffer() */
export function sgCopyToBuffer(
  m: Machine,
  sgl: Scatterlist | null,
  nents: number,
  buf: Uint8Array,
  buflen: number,
): number {
  const fn = 'sg_copy_to_buffer';
  return apiCall(m, fn, () => copyBuffer(m, fn, sgl, nents, buf, buflen, 0, true));
}

/** `sg_pcopy_from_buffer()`: `buf` into the list from byte `skip` of the list. kernel: sg_pcopy_from_buffer() */
export function sgPcopyFromBuffer(
  m: Machine,
  sgl: Scatterlist | null,
  nents: number,
  buf: Uint8Array,
  buflen: number,
  skip: number,
): number {
  const fn = 'sg_pcopy_from_buffer';
  return apiCall(m, fn, () => copyBuffer(m, fn, sgl, nents, buf, buflen, skip, false));
}

/** `sg_pcopy_to_buffer()`: the list from byte `skip` into `buf`. kernel: sg_pcopy_to_buffer() */
export function sgPcopyToBuffer(
  m: Machine,
  sgl: Scatterlist | null,
  nents: number,
  buf: Uint8Array,
  buflen: number,
  skip: number,
): number {
  const fn = 'sg_pcopy_to_buffer';
  return apiCall(m, fn, () => copyBuffer(m, fn, sgl, nents, buf, buflen, skip, true));
}

/**
 * `sg_zero_buffer()`: zeroes up to `buflen` bytes of the list from byte
 * `skip`; returns the bytes zeroed. kernel: sg_zero_buffer()
 */
export function sgZeroBuffer(
  m: Machine,
  sgl: Scatterlist | null,
  nents: number,
  buflen: number,
  skip: number,
): number {
  const fn = 'sg_zero_buffer';
  return apiCall(m, fn, () => {
    checkLen(fn, 'buflen', buflen, Number.MAX_SAFE_INTEGER);
    checkLen(fn, 'skip', skip, Number.MAX_SAFE_INTEGER);
    return walk(m, sgl, nents, buflen, skip, SG_MITER_ATOMIC | SG_MITER_TO_SG, (pa, va, _done, len) =>
      cpuZero(m, pa, va, 'cached', len),
    );
  });
}
