/**
 * The fault path (`handle_mm_fault`): resolves one missing or read-only PTE
 * of a process and returns the kernel's `vm_fault_t`.
 *
 * - No PTE, anonymous memory: a read maps the shared zero page (special,
 *   read-only), a write a fresh zeroed page (`do_anonymous_page`).
 * - No PTE, file mapping: the driver's `vm_ops->fault` (`__do_fault`). It
 *   returns VM_FAULT_NOPAGE after installing PTEs itself (vmf_insert_pfn…),
 *   or 0 with `vmf.page` holding a reference, which the core installs
 *   (`finish_fault`) — or copies first for a write to a private mapping
 *   (`do_cow_fault`). Without a fault handler: VM_FAULT_SIGBUS.
 * - A write to a read-only PTE (`do_wp_page`): in a shared mapping the
 *   driver's `pfn_mkwrite`/`page_mkwrite` may veto, then the PTE is made
 *   writable; in a private mapping the page is copied (copy-on-write).
 *
 * New pages are prepared through the cached kernel alias and, on a VIPT
 * cache, that alias is flushed so the user's alias sees memory
 * (`clear_user_highpage`/`copy_user_highpage` on PA-RISC).
 */

import {
  allocPagesInner,
  cacheFlush,
  cpuRead,
  cpuWrite,
  cpuZero,
  DmalabError,
  formatHex,
  type Machine,
  OOPS,
  PAGE_SIZE,
  pfnValid,
  physToVirt,
  putPage,
  reportFinding,
  type UserVa,
} from '../machine/index.js';
import {
  FAULT_FLAG_MKWRITE,
  FAULT_FLAG_WRITE,
  isCowMapping,
  VM_FAULT_DONE_COW,
  VM_FAULT_ERROR,
  VM_FAULT_NOPAGE,
  VM_FAULT_OOM,
  VM_FAULT_RETRY,
  VM_FAULT_SIGBUS,
  VM_MAYSHARE,
  VM_SHARED,
  VM_WRITE,
  type VmFaultT,
} from './consts.js';
import { type VmFault, vmaHandle } from './handles.js';
import {
  attrOfBits,
  bitsOfAttr,
  bitsOfProt,
  PTE_ANON,
  PTE_PRESENT,
  PTE_READ,
  PTE_SPECIAL,
  PTE_WRITE,
  pteBits,
  pteClearRange,
  pteInstall,
  ptePfn,
  pteSetBits,
} from './internal/pagetable.js';
import { mmState, type ProcState, type SpaceState, type VmaState, withMmapLock } from './internal/state.js';
import { vmOpsOf } from './vma.js';

export type FaultContext = 'user' | 'uaccess' | 'gup' | 'populate';

const scratch = new Uint8Array(PAGE_SIZE);

/** Makes a freshly allocated page visible to any alias: prepared through the kernel alias, which VIPT flushes. */
function publish(m: Machine, pfn: number): void {
  if (m.hw.cache.colours > 1) cacheFlush(m, pfn * PAGE_SIZE, PAGE_SIZE, 0);
}

function newZeroedPage(m: Machine): number {
  const p = allocPagesInner(m, 0, 0);
  if (p === null) return -1;
  cpuZero(m, p * PAGE_SIZE, physToVirt(p * PAGE_SIZE), 'cached', PAGE_SIZE);
  publish(m, p);
  return p;
}

/** The shared zero page (`ZERO_PAGE`), allocated on first use and never freed. */
export function zeroPagePfn(m: Machine): number {
  const st = mmState(m);
  if (st.zeroPfn < 0) {
    const p = newZeroedPage(m);
    if (p < 0) throw new DmalabError('no memory left for the zero page');
    st.zeroPfn = p;
  }
  return st.zeroPfn;
}

function install(
  m: Machine,
  p: ProcState,
  sp: SpaceState,
  va: number,
  pfn: number,
  bits: number,
  reason: string,
) {
  pteInstall(m, sp, p.name, va, 1, () => pfn, bits, reason);
}

function makeVmf(m: Machine, v: VmaState, page: number, va: number, flags: number): VmFault {
  return {
    vma: vmaHandle(m, v.id),
    address: page as UserVa,
    realAddress: va as UserVa,
    pgoff: v.pgoff + (page - v.start) / PAGE_SIZE,
    flags,
    page: null,
  };
}

function checkReturn(ret: unknown, what: string): VmFaultT {
  if (typeof ret !== 'number' || !Number.isInteger(ret) || ret < 0) {
    throw new DmalabError(`${what} must return a vm_fault_t (0 or VM_FAULT_* bits), got ${String(ret)}`);
  }
  return ret;
}

/** A private copy of the page mapped at `page` (read through that alias), or -1 without memory. */
function copyPage(m: Machine, srcPa: number, srcVa: number, attr: ReturnType<typeof attrOfBits>): number {
  const dst = allocPagesInner(m, 0, 0);
  if (dst === null) return -1;
  if (cpuRead(m, srcPa, srcVa, attr, scratch, 0, PAGE_SIZE) !== 'ok') scratch.fill(0xff);
  cpuWrite(m, dst * PAGE_SIZE, physToVirt(dst * PAGE_SIZE), 'cached', scratch, 0, PAGE_SIZE);
  publish(m, dst);
  return dst;
}

function doAnonymousPage(
  m: Machine,
  p: ProcState,
  sp: SpaceState,
  v: VmaState,
  page: number,
  write: boolean,
) {
  const attr = bitsOfAttr(v.prot.attr);
  const writable = (v.flags & VM_WRITE) !== 0;
  if (v.flags & VM_SHARED) {
    // Shared anonymous memory is shmem: one writable page, not an anonymous COW page.
    const pfn = newZeroedPage(m);
    if (pfn < 0) return VM_FAULT_OOM;
    install(m, p, sp, page, pfn, PTE_PRESENT | PTE_READ | (writable ? PTE_WRITE : 0) | attr, 'fault');
    return 0;
  }
  if (!write) {
    install(m, p, sp, page, zeroPagePfn(m), PTE_PRESENT | PTE_READ | PTE_SPECIAL | attr, 'fault');
    return 0;
  }
  const pfn = newZeroedPage(m);
  if (pfn < 0) return VM_FAULT_OOM;
  install(
    m,
    p,
    sp,
    page,
    pfn,
    PTE_PRESENT | PTE_READ | (writable ? PTE_WRITE : 0) | PTE_ANON | attr,
    'fault',
  );
  return 0;
}

function cowBits(v: VmaState): number {
  return bitsOfProt(v.prot) | PTE_ANON | ((v.flags & VM_WRITE) !== 0 ? PTE_WRITE : 0);
}

function doWpPage(
  m: Machine,
  p: ProcState,
  sp: SpaceState,
  v: VmaState,
  page: number,
  va: number,
  flags: number,
) {
  const pfn = ptePfn(sp, page);
  const bits = pteBits(sp, page);
  if (v.flags & (VM_SHARED | VM_MAYSHARE)) {
    const ops = vmOpsOf(v);
    const mk = bits & PTE_SPECIAL ? ops?.pfnMkwrite : ops?.pageMkwrite;
    if (mk !== undefined) {
      const vmf = makeVmf(m, v, page, va, flags | FAULT_FLAG_MKWRITE);
      const r = checkReturn(
        withMmapLock(m, 'read', () => mk(vmf)),
        'vm_ops.pfnMkwrite/pageMkwrite',
      );
      if (r & (VM_FAULT_ERROR | VM_FAULT_NOPAGE)) return r;
    }
    pteSetBits(sp, page, bits | PTE_WRITE);
    return 0;
  }
  if (bits & PTE_ANON) {
    // An exclusive anonymous page is reused, not copied.
    pteSetBits(sp, page, bits | PTE_WRITE);
    return 0;
  }
  const dst = copyPage(m, pfn * PAGE_SIZE, page, attrOfBits(bits));
  if (dst < 0) return VM_FAULT_OOM;
  pteClearRange(m, sp, p.name, page, page + PAGE_SIZE, 'cow');
  install(m, p, sp, page, dst, cowBits(v), 'cow');
  return 0;
}

function doFault(
  m: Machine,
  p: ProcState,
  sp: SpaceState,
  v: VmaState,
  page: number,
  va: number,
  flags: number,
) {
  const ops = vmOpsOf(v);
  const fault = ops?.fault;
  if (fault === undefined) return VM_FAULT_SIGBUS;
  const vmf = makeVmf(m, v, page, va, flags);
  const ret = checkReturn(
    withMmapLock(m, 'read', () => fault(vmf)),
    'vm_ops.fault',
  );
  if (ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY | VM_FAULT_DONE_COW)) return ret;
  const got = vmf.page;
  if (got === null || !pfnValid(m, got)) {
    reportFinding(
      m,
      OOPS.code,
      `BUG: kernel NULL pointer dereference in finish_fault: vm_ops->fault returned ${ret} without a valid vmf->page [address=${formatHex(page)}]`,
      { agent: 'kernel', details: { va: page, page: got } },
    );
    return VM_FAULT_SIGBUS;
  }
  const write = (flags & FAULT_FLAG_WRITE) !== 0;
  if (write && isCowMapping(v.flags)) {
    const dst = copyPage(m, got * PAGE_SIZE, physToVirt(got * PAGE_SIZE), 'cached');
    putPage(m, got);
    if (dst < 0) return VM_FAULT_OOM;
    install(m, p, sp, page, dst, cowBits(v), 'cow');
    return ret;
  }
  if (ptePfn(sp, page) >= 0) {
    // Someone installed a PTE meanwhile: drop the handler's reference.
    putPage(m, got);
    return VM_FAULT_NOPAGE;
  }
  install(m, p, sp, page, got, bitsOfProt(v.prot), 'fault');
  return ret;
}

/**
 * `handle_mm_fault()`: resolves a fault at `va` in VMA `v` of process `p`
 * (permissions already checked by the caller). Emits a `page-fault` event.
 */
export function handleMmFault(
  m: Machine,
  p: ProcState,
  v: VmaState,
  va: number,
  flags: number,
  context: FaultContext,
): VmFaultT {
  const st = mmState(m);
  const sp = st.spaces.get(p.space)!;
  const page = va - (va % PAGE_SIZE);
  const write = (flags & FAULT_FLAG_WRITE) !== 0;
  let ret: VmFaultT;
  if (ptePfn(sp, page) >= 0) {
    ret = write && (pteBits(sp, page) & PTE_WRITE) === 0 ? doWpPage(m, p, sp, v, page, va, flags) : 0;
  } else if (v.kind === 'anon') {
    ret = doAnonymousPage(m, p, sp, v, page, write);
  } else {
    ret = doFault(m, p, sp, v, page, va, flags);
  }
  if (m.bus.wants['page-fault']) {
    m.bus.emit({ type: 'page-fault', pid: p.pid, owner: p.name, va, write, context, result: ret });
  }
  return ret;
}
