/**
 * The CPU side of the machine: a physical-level load/store taking the
 * physical address, the virtual address it was issued through (for VIPT
 * indexing) and the memory attribute of the mapping. The virtual memory
 * layer translates and then calls these.
 *
 * - cached: through the cache (write-allocate, write-back);
 * - write-combine / uncached: straight to memory. On x86 such accesses
 *   snoop the caches (self-snoop); on arm64 and PA-RISC they do not, so a
 *   dirty line of a cached alias stays hidden — the mismatched-attribute
 *   alias bug class.
 */

import { ALL_COLOURS, cacheRead, cacheSnoopRead, cacheSnoopWrite, cacheWrite, colourOf } from './cache.js';
import type { Machine } from './machine.js';
import { physRegionFor } from './physmap.js';
import { memRead, memWrite } from './physmem.js';
import { type MemAttr, TASK_SIZE } from './types.js';

/** Result of a physical access, as a value (QEMU's MemTxResult in spirit). */
export type MemTxResult = 'ok' | 'decode-error';

/**
 * The address space an access through `va` went through. A kernel-half
 * address (linear map, vmalloc, ioremap) translates through the kernel's
 * page tables whatever process is current (arm64's TTBR1, x86's shared
 * upper half), so only a user-half address goes through the current mm —
 * which keeps the fault path's zeroing and copies, made inside a user
 * access, attributed to the kernel.
 */
function accessMm(m: Machine, va: number): number {
  return va < TASK_SIZE ? m.agentMm : 0;
}

/**
 * A CPU load of `len` bytes at physical `pa`, issued through virtual
 * address `va` with attribute `attr`, into `out[outOff…]`. A range that is
 * not wholly inside one physical region is a decode error (nothing read).
 */
export function cpuRead(
  m: Machine,
  pa: number,
  va: number,
  attr: MemAttr,
  out: Uint8Array,
  outOff: number,
  len: number,
): MemTxResult {
  if (physRegionFor(m, pa, len) === null) return 'decode-error';
  if (attr === 'cached') {
    cacheRead(m, pa, colourOf(m.hw.cache, va, pa), out, outOff, len);
  } else {
    memRead(m.hw.mem, pa, out, outOff, len);
    if (m.profile.uncachedSnoops) cacheSnoopRead(m, pa, len, ALL_COLOURS, out, outOff);
  }
  if (m.bus.wants['cpu-access']) {
    m.bus.emitTo(m.bus.listeners['cpu-access'], {
      type: 'cpu-access',
      write: false,
      pa,
      va,
      len,
      attr,
      agent: m.agent,
      mm: accessMm(m, va),
      data: out.subarray(outOff, outOff + len),
      step: m.clock.step,
      time: m.clock.time,
    });
  }
  return 'ok';
}

/** A CPU store of `src[srcOff…srcOff+len)` at physical `pa` through `va` with `attr`. */
export function cpuWrite(
  m: Machine,
  pa: number,
  va: number,
  attr: MemAttr,
  src: Uint8Array,
  srcOff: number,
  len: number,
): MemTxResult {
  if (physRegionFor(m, pa, len) === null) return 'decode-error';
  if (attr === 'cached') {
    cacheWrite(m, pa, colourOf(m.hw.cache, va, pa), src, srcOff, len);
  } else {
    memWrite(m.hw.mem, pa, src, srcOff, len);
    if (m.profile.uncachedSnoops) cacheSnoopWrite(m, pa, len, ALL_COLOURS, src, srcOff);
  }
  if (m.bus.wants['cpu-access']) {
    m.bus.emitTo(m.bus.listeners['cpu-access'], {
      type: 'cpu-access',
      write: true,
      pa,
      va,
      len,
      attr,
      agent: m.agent,
      mm: accessMm(m, va),
      data: src.subarray(srcOff, srcOff + len),
      step: m.clock.step,
      time: m.clock.time,
    });
  }
  return 'ok';
}

/**
 * Reads physical memory as it is, bypassing the caches: no event, no step,
 * no cache state change. For checkers and visualizers, never for driver code.
 */
export function memPeek(m: Machine, pa: number, out: Uint8Array, outOff: number, len: number): void {
  memRead(m.hw.mem, pa, out, outOff, len);
}

const zeroes = new Uint8Array(4096);

/** A CPU store of `len` zero bytes (`memset(p, 0, len)`). */
export function cpuZero(m: Machine, pa: number, va: number, attr: MemAttr, len: number): MemTxResult {
  let done = 0;
  while (done < len) {
    const n = Math.min(zeroes.length, len - done);
    const r = cpuWrite(m, pa + done, va + done, attr, zeroes, 0, n);
    if (r !== 'ok') return r;
    done += n;
  }
  return 'ok';
}

/**
 * Runs `fn` with `agent` as the name CPU accesses are attributed to (a
 * process, `kernel`, or an internal copier such as `swiotlb`) and `mm` as
 * the address space user addresses are translated in: the process's pid
 * for its own accesses and for uaccess on its behalf, 0 (the kernel's, the
 * default) otherwise. Names are not unique — two processes may share one —
 * so checkers tell address spaces apart by `mm`.
 */
export function withAgent<T>(m: Machine, agent: string, fn: () => T, mm = 0): T {
  const prev = m.agent;
  const prevMm = m.agentMm;
  m.agent = agent;
  m.agentMm = mm;
  try {
    return fn();
  } finally {
    m.agent = prev;
    m.agentMm = prevMm;
  }
}
