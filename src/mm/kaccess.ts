/**
 * Kernel CPU accesses and kernel address helpers: loads and stores through
 * the linear map (cached, RAM only, the kernel image read-only), vmalloc,
 * vmap and ioremap mappings (through the kernel page table, with each PTE's
 * attribute and the virtual address's cache colour), `virt_to_phys`, the
 * kernel stack, and the kernel image's sections.
 *
 * A kernel access to an address with no mapping is an oops: an `OOPS`
 * finding, and the access returns null/false.
 */

import {
  alignUp,
  allocPagesInner,
  apiCall,
  cpuRead,
  cpuWrite,
  DmalabError,
  formatHex,
  isIoremapAddr,
  isLinearMapVa,
  isVmallocAddr,
  KERNEL_RODATA_END,
  KERNEL_TEXT_START,
  type KernelVa,
  linearVirtToPhys,
  type Machine,
  OOPS,
  PAGE_OFFSET,
  PAGE_SIZE,
  type PhysAddr,
  pageAddress,
  pfnValid,
  physRegionFor,
  ramBytes,
  reportFinding,
  WARN,
  withAgent,
} from '../machine/index.js';
import { reportUseAfterFree } from './codes.js';
import { THREAD_SIZE } from './consts.js';
import { attrOfBits, frameLive, PTE_WRITE } from './internal/pagetable.js';
import { mmState } from './internal/state.js';
import { kernelPte, vmallocInner } from './vmalloc.js';

/** `_stext`: start of the kernel's text, in the linear map. */
export const _stext = (PAGE_OFFSET + KERNEL_TEXT_START) as KernelVa;
/** `_etext`: end of the kernel's text. */
export const _etext = (PAGE_OFFSET + 512 * PAGE_SIZE) as KernelVa;
/** `__start_rodata`. */
export const __start_rodata = _etext;
/** `__end_rodata`. */
export const __end_rodata = (PAGE_OFFSET + KERNEL_RODATA_END) as KernelVa;

/**
 * Which kernel image section [va, va+len) overlaps: `'text'`, `'rodata'` or
 * null (the check behind dma-debug's "device driver maps memory from kernel
 * text or rodata").
 */
export function kernelImageSection(va: number, len: number): 'text' | 'rodata' | null {
  const end = va + Math.max(len, 1);
  if (va < _etext && end > _stext) return 'text';
  if (va < __end_rodata && end > __start_rodata) return 'rodata';
  return null;
}

function oops(m: Machine, va: number, write: boolean, why: string): void {
  reportFinding(
    m,
    OOPS.code,
    `BUG: unable to handle page fault for address: ${formatHex(va)} (supervisor ${write ? 'write' : 'read'} access in kernel mode: ${why})`,
    { agent: 'kernel', details: { va, write } },
  );
}

function decodeError(
  m: Machine,
  va: number,
  write: boolean,
  out: Uint8Array,
  off: number,
  n: number,
): boolean {
  // x86 reads unbacked physical addresses as all-ones; arm64 and PA-RISC take an external abort.
  if (m.profile.arch === 'x86') {
    if (!write) out.fill(0xff, off, off + n);
    return true;
  }
  reportFinding(
    m,
    OOPS.code,
    `Unhandled fault: synchronous external abort at ${formatHex(va)} (the physical address decodes to nothing)`,
    { agent: 'kernel', details: { va, write } },
  );
  return false;
}

function linearAccess(
  m: Machine,
  va: number,
  buf: Uint8Array,
  off: number,
  len: number,
  write: boolean,
): boolean {
  const pa = linearVirtToPhys(va);
  const region = physRegionFor(m, pa, len);
  if (region === null || region.kind !== 'ram') {
    const bad = pa < ramBytes(m) ? Math.max(va, PAGE_OFFSET + ramBytes(m)) : va;
    oops(m, bad, write, 'not-present page (the linear map covers RAM only)');
    return false;
  }
  if (write && pa < KERNEL_RODATA_END && pa + len > KERNEL_TEXT_START) {
    oops(m, Math.max(va, _stext), write, 'protection violation (kernel text and rodata are read-only)');
    return false;
  }
  if (write) cpuWrite(m, pa, va, 'cached', buf, off, len);
  else cpuRead(m, pa, va, 'cached', buf, off, len);
  return true;
}

function mappedAccess(
  m: Machine,
  va: number,
  buf: Uint8Array,
  off: number,
  len: number,
  write: boolean,
): boolean {
  let done = 0;
  while (done < len) {
    const a = va + done;
    const n = Math.min(len - done, PAGE_SIZE - (a % PAGE_SIZE));
    const pte = kernelPte(m, a - (a % PAGE_SIZE));
    if (pte === null) {
      oops(m, a, write, 'not-present page');
      return false;
    }
    if (write && (pte.bits & PTE_WRITE) === 0) {
      oops(m, a, write, 'protection violation');
      return false;
    }
    if (!frameLive(m, pte.pfn)) reportUseAfterFree(m, 'kernel', -1, a, pte.pfn, write);
    const pa = pte.pfn * PAGE_SIZE + (a % PAGE_SIZE);
    const attr = attrOfBits(pte.bits);
    const r = write
      ? cpuWrite(m, pa, a, attr, buf, off + done, n)
      : cpuRead(m, pa, a, attr, buf, off + done, n);
    if (r !== 'ok' && !decodeError(m, a, write, buf, off + done, n)) return false;
    done += n;
  }
  return true;
}

function kernelAccess(
  m: Machine,
  va: number,
  buf: Uint8Array,
  off: number,
  len: number,
  write: boolean,
): boolean {
  if (!Number.isInteger(va) || va < 0) throw new DmalabError(`kernel address must be an integer, got ${va}`);
  if (!Number.isInteger(len) || len < 0 || off < 0 || off + len > buf.length) {
    throw new DmalabError(
      `kernel access of ${len} bytes does not fit the ${buf.length}-byte buffer at ${off}`,
    );
  }
  if (len === 0) return true;
  return withAgent(m, 'kernel', () => {
    if (isLinearMapVa(va) && isLinearMapVa(va + len - 1)) return linearAccess(m, va, buf, off, len, write);
    if (
      (isVmallocAddr(va) || isIoremapAddr(va)) &&
      (isVmallocAddr(va + len - 1) || isIoremapAddr(va + len - 1))
    ) {
      return mappedAccess(m, va, buf, off, len, write);
    }
    oops(m, va, write, va < PAGE_OFFSET ? 'user address dereferenced by the kernel' : 'not-present page');
    return false;
  });
}

/**
 * A kernel load of `len` bytes at `va` into `out[off…]`, without step
 * accounting (for layers acting inside their own calls). False on an oops.
 */
export function kernelReadInto(
  m: Machine,
  va: KernelVa | number,
  out: Uint8Array,
  off: number,
  len: number,
): boolean {
  return kernelAccess(m, va, out, off, len, false);
}

/** A kernel store of `src[off…off+len)` at `va`, without step accounting. False on an oops. */
export function kernelWriteFrom(
  m: Machine,
  va: KernelVa | number,
  src: Uint8Array,
  off: number,
  len: number,
): boolean {
  return kernelAccess(m, va, src, off, len, true);
}

/** A kernel load (`memcpy` from kernel memory): the bytes, or null after an oops. */
export function kernelRead(m: Machine, va: KernelVa | number, length: number): Uint8Array | null {
  return apiCall(m, 'kernelRead', () => {
    const out = new Uint8Array(length);
    return kernelAccess(m, va, out, 0, length, false) ? out : null;
  });
}

/** A kernel store of `bytes` at `va`; false after an oops. */
export function kernelWrite(m: Machine, va: KernelVa | number, bytes: Uint8Array): boolean {
  return apiCall(m, 'kernelWrite', () => kernelAccess(m, va, bytes, 0, bytes.length, true));
}

/**
 * `virt_to_phys()`: the physical address of a linear-map address. Anything
 * else is the kernel's undefined behaviour: with CONFIG_DEBUG_VIRTUAL it
 * WARNs, and the result is the meaningless linear translation.
 */
export function virtToPhys(m: Machine, va: KernelVa | number): PhysAddr {
  return apiCall(m, 'virt_to_phys', () => {
    if (!isLinearMapVa(va)) {
      reportFinding(m, WARN.code, `virt_to_phys used for non-linear address: ${formatHex(va)}`, {
        details: { va },
      });
    }
    return linearVirtToPhys(va);
  });
}

/** `virt_addr_valid()`: a linear-map address of a frame with a struct page. */
export function virtAddrValid(m: Machine, va: KernelVa | number): boolean {
  return isLinearMapVa(va) && pfnValid(m, Math.floor(linearVirtToPhys(va) / PAGE_SIZE));
}

function stackOf(m: Machine) {
  const st = mmState(m);
  if (st.stack !== null) return st.stack;
  // VMAP_STACK on x86_64 and arm64: the stack is vmalloc memory; PA-RISC's is linear.
  const vmapped = m.profile.arch !== 'parisc';
  let base: number;
  if (vmapped) {
    const va = vmallocInner(m, THREAD_SIZE, true, 0, 'kernel stack', 'stack');
    if (va === null) throw new DmalabError('no memory left for the kernel stack');
    base = va;
  } else {
    const page = allocPagesInner(m, 0, Math.log2(THREAD_SIZE / PAGE_SIZE));
    if (page === null) throw new DmalabError('no memory left for the kernel stack');
    base = pageAddress(page);
  }
  st.stack = { base, size: THREAD_SIZE, vmapped, sp: base + THREAD_SIZE, frames: [] };
  return st.stack;
}

/**
 * dmalab extension: the address of a `size`-byte local buffer on the
 * current kernel thread's stack (what `u8 buf[64];` in a driver function
 * gives). On x86_64 and arm64 stacks are vmapped (VMAP_STACK), so the
 * address is a vmalloc address; on PA-RISC it is in the linear map. Buffers
 * stack up until released with `kernelStackRelease`.
 */
export function kernelStackBuffer(m: Machine, size: number): KernelVa {
  return apiCall(m, 'kernelStackBuffer', () => {
    if (!Number.isInteger(size) || size <= 0) {
      throw new DmalabError(`kernelStackBuffer: size must be a positive integer, got ${size}`, {
        field: 'size',
      });
    }
    const s = stackOf(m);
    const need = alignUp(size, 16);
    if (s.sp - need < s.base) {
      throw new DmalabError(
        `kernelStackBuffer: ${size} bytes do not fit on the ${THREAD_SIZE}-byte kernel stack (${s.sp - s.base} left)`,
        { field: 'size' },
      );
    }
    s.sp -= need;
    s.frames.push(s.sp);
    if (m.bus.wants['kmem-alloc']) {
      const pa = s.vmapped ? -1 : linearVirtToPhys(s.sp);
      m.bus.emit({ type: 'kmem-alloc', kind: 'stack', va: s.sp, size, objSize: need, pa });
    }
    return s.sp as KernelVa;
  });
}

/** dmalab extension: releases a stack buffer and every buffer taken after it (a function return). */
export function kernelStackRelease(m: Machine, va: KernelVa | number): void {
  apiCall(m, 'kernelStackRelease', () => {
    const s = mmState(m).stack;
    const i = s === null ? -1 : s.frames.indexOf(va);
    if (s === null || i < 0)
      throw new DmalabError(`kernelStackRelease: ${formatHex(va)} is not a live stack buffer`);
    const prev = i === 0 ? s.base + s.size : s.frames[i - 1]!;
    for (const f of s.frames.splice(i)) {
      if (m.bus.wants['kmem-free']) m.bus.emit({ type: 'kmem-free', kind: 'stack', va: f, size: 0 });
    }
    s.sp = prev;
  });
}

/**
 * The current kernel thread's stack, for dma-debug's `check_for_stack`: its
 * base and size, whether it is vmapped (`task_stack_vm_area()` non-NULL), and
 * the frames behind it. Null while nothing has used the stack.
 */
export function taskStackInfo(
  m: Machine,
): { base: KernelVa; size: number; vmapped: boolean; pfns: number[] } | null {
  const s = mmState(m).stack;
  if (s === null) return null;
  const pfns: number[] = [];
  for (let off = 0; off < s.size; off += PAGE_SIZE) {
    const va = s.base + off;
    pfns.push(s.vmapped ? (kernelPte(m, va)?.pfn ?? -1) : Math.floor(linearVirtToPhys(va) / PAGE_SIZE));
  }
  return { base: s.base as KernelVa, size: s.size, vmapped: s.vmapped, pfns };
}

/** `object_is_on_stack()`: true when `va` lies in the current kernel thread's stack. */
export function objectIsOnStack(m: Machine, va: KernelVa | number): boolean {
  const s = mmState(m).stack;
  return s !== null && va >= s.base && va < s.base + s.size;
}
