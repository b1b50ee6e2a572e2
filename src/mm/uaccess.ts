/**
 * CPU accesses to user memory. Each page goes MMU → (fault if the PTE is
 * missing or read-only) → cache model, with the PTE's attribute and the
 * user virtual address (its VIPT colour). Physically contiguous runs with
 * one attribute go to the cache model in one piece.
 *
 * - `userRead`/`userWrite` are the process's own loads and stores: a fault
 *   that cannot be resolved delivers SIGSEGV or SIGBUS (a finding, a
 *   `signal` event) and the process dies; the access returns null/false.
 * - `copyFromUser`/`copyToUser` are the kernel's uaccess: a bad address
 *   makes the copy stop short (the return value counts the bytes not
 *   copied), with no signal, as the exception table fixup does.
 *
 * An access through a PTE whose RAM frame is no longer allocated is still
 * made (the hardware does not know) and reported as USE_AFTER_FREE.
 */

import {
  apiCall,
  cpuRead,
  cpuWrite,
  DmalabError,
  formatHex,
  type KernelVa,
  type Machine,
  PAGE_SIZE,
  reportFinding,
  SIGBUS,
  SIGSEGV,
  TASK_SIZE,
  type UserVa,
  withAgent,
} from '../machine/index.js';
import { FAULT_LIVELOCK, OOM_KILL, reportUseAfterFree } from './codes.js';
import {
  FAULT_FLAG_ALLOW_RETRY,
  FAULT_FLAG_KILLABLE,
  FAULT_FLAG_TRIED,
  FAULT_FLAG_USER,
  FAULT_FLAG_WRITE,
  VM_FAULT_ERROR,
  VM_FAULT_OOM,
  VM_FAULT_SIGSEGV,
  VM_WRITE,
  vmFlagsAccessible,
} from './consts.js';
import { type FaultContext, handleMmFault } from './fault.js';
import type { Process } from './handles.js';
import { attrOfBits, frameLive, leafFor, PTE_READ, PTE_WRITE } from './internal/pagetable.js';
import { mmState, type ProcState } from './internal/state.js';
import { kernelReadInto, kernelWriteFrom } from './kaccess.js';
import { doExit } from './process.js';
import { vmaContaining } from './vma.js';

export const FAULT_OK = 0;
export const FAULT_MAPERR = 1;
export const FAULT_ACCERR = 2;
export const FAULT_SIGBUS = 3;
export const FAULT_OOM = 4;
export const FAULT_LIVELOCKED = 5;
export const FAULT_DECODE = 6;

/** Faults on one access before dmalab calls it a livelock (the CPU would retry forever). */
const MAX_FAULT_RETRIES = 16;

/**
 * The architecture's user fault handler (`do_user_addr_fault`): VMA lookup,
 * access check, `handle_mm_fault`, retried until the PTE allows the access.
 * Returns FAULT_OK or why it failed.
 */
export function resolveUserFault(
  m: Machine,
  p: ProcState,
  va: number,
  write: boolean,
  context: FaultContext,
): number {
  const st = mmState(m);
  for (let attempt = 0; attempt < MAX_FAULT_RETRIES; attempt++) {
    const v = vmaContaining(st, p, va);
    if (v === undefined) return FAULT_MAPERR;
    if (write ? (v.flags & VM_WRITE) === 0 : !vmFlagsAccessible(v.flags)) return FAULT_ACCERR;
    const flags =
      FAULT_FLAG_ALLOW_RETRY |
      FAULT_FLAG_KILLABLE |
      (write ? FAULT_FLAG_WRITE : 0) |
      (context === 'user' ? FAULT_FLAG_USER : 0) |
      (attempt > 0 ? FAULT_FLAG_TRIED : 0);
    const r = handleMmFault(m, p, v, va, flags, context);
    if (r & VM_FAULT_OOM) return FAULT_OOM;
    if (r & VM_FAULT_SIGSEGV) return FAULT_MAPERR;
    if (r & VM_FAULT_ERROR) return FAULT_SIGBUS;
    if (p.status !== 'running') return FAULT_SIGBUS;
    if (pteAllows(m, p, va, write)) return FAULT_OK;
  }
  return FAULT_LIVELOCKED;
}

function pteAllows(m: Machine, p: ProcState, va: number, write: boolean): boolean {
  const sp = mmState(m).spaces.get(p.space)!;
  const s = leafFor(sp, va, false);
  if (s === undefined) return false;
  const k = Math.floor(va / PAGE_SIZE) % 512;
  return s.pfn[k]! >= 0 && (s.bits[k]! & (write ? PTE_WRITE : PTE_READ)) !== 0;
}

let failWhy = FAULT_OK;
let failVa = 0;

/**
 * Accesses [va, va+len) of process `p` into/from `buf[off…]`. Returns the
 * bytes done; when short, `failWhy`/`failVa` say why and where.
 */
function userAccess(
  m: Machine,
  p: ProcState,
  va: number,
  buf: Uint8Array,
  off: number,
  len: number,
  write: boolean,
  context: FaultContext,
): number {
  const sp = mmState(m).spaces.get(p.space)!;
  const need = write ? PTE_WRITE : PTE_READ;
  let done = 0;
  while (done < len) {
    const a = va + done;
    if (a >= TASK_SIZE) {
      failWhy = FAULT_MAPERR;
      failVa = a;
      return done;
    }
    const page = a - (a % PAGE_SIZE);
    const s = leafFor(sp, page, false);
    const k = Math.floor(page / PAGE_SIZE) % 512;
    const pfn = s === undefined ? -1 : s.pfn[k]!;
    const bits = s === undefined ? 0 : s.bits[k]!;
    if (pfn < 0 || (bits & need) === 0) {
      const why = resolveUserFault(m, p, a, write, context);
      if (why !== FAULT_OK) {
        failWhy = why;
        failVa = a;
        return done;
      }
      continue;
    }
    // Extend over following pages that continue the frames with the same bits.
    let n = Math.min(len - done, PAGE_SIZE - (a % PAGE_SIZE));
    let pages = 1;
    while (done + n < len) {
      const next = page + pages * PAGE_SIZE;
      const s2 = leafFor(sp, next, false);
      const k2 = Math.floor(next / PAGE_SIZE) % 512;
      if (s2 === undefined || s2.pfn[k2] !== pfn + pages || s2.bits[k2] !== bits) break;
      n += Math.min(PAGE_SIZE, len - done - n);
      pages++;
    }
    for (let i = 0; i < pages; i++) {
      if (!frameLive(m, pfn + i))
        reportUseAfterFree(m, p.name, p.pid, Math.max(a, page + i * PAGE_SIZE), pfn + i, write);
    }
    const pa = pfn * PAGE_SIZE + (a % PAGE_SIZE);
    const attr = attrOfBits(bits);
    const r = write
      ? cpuWrite(m, pa, a, attr, buf, off + done, n)
      : cpuRead(m, pa, a, attr, buf, off + done, n);
    if (r !== 'ok') {
      // x86 reads unbacked physical addresses as all-ones; arm64 and PA-RISC raise an external abort.
      if (m.profile.arch !== 'x86') {
        failWhy = FAULT_DECODE;
        failVa = a;
        return done;
      }
      if (!write) buf.fill(0xff, off + done, off + done + n);
    }
    done += n;
  }
  return done;
}

function signal(
  m: Machine,
  p: ProcState,
  sig: 'SIGSEGV' | 'SIGBUS' | 'SIGKILL',
  code: string,
  va: number,
  message: string,
): void {
  if (m.bus.wants.signal) m.bus.emit({ type: 'signal', pid: p.pid, owner: p.name, signal: sig, va, code });
  const findingCode = sig === 'SIGSEGV' ? SIGSEGV.code : sig === 'SIGBUS' ? SIGBUS.code : OOM_KILL.code;
  reportFinding(m, findingCode, message, { agent: p.name, details: { pid: p.pid, va, code } });
  doExit(m, p, sig);
}

/** Delivers what an unresolved user fault means to the process (`bad_area`, `do_sigbus`, the OOM killer). */
export function deliverFault(m: Machine, p: ProcState, why: number, va: number, write: boolean): void {
  const who = `${p.name}[${p.pid}]`;
  const rw = write ? 'write' : 'read';
  switch (why) {
    case FAULT_MAPERR:
      signal(
        m,
        p,
        'SIGSEGV',
        'SEGV_MAPERR',
        va,
        `${who}: segfault at ${formatHex(va)} (${rw}: SEGV_MAPERR, no mapping at the address)`,
      );
      return;
    case FAULT_ACCERR:
      signal(
        m,
        p,
        'SIGSEGV',
        'SEGV_ACCERR',
        va,
        `${who}: segfault at ${formatHex(va)} (${rw}: SEGV_ACCERR, the mapping does not permit it)`,
      );
      return;
    case FAULT_SIGBUS:
      signal(
        m,
        p,
        'SIGBUS',
        'BUS_ADRERR',
        va,
        `${who}: bus error at ${formatHex(va)} (${rw}: the fault handler returned VM_FAULT_SIGBUS)`,
      );
      return;
    case FAULT_DECODE:
      signal(
        m,
        p,
        'SIGBUS',
        'BUS_OBJERR',
        va,
        `${who}: bus error at ${formatHex(va)} (${rw}: external abort, the physical address decodes to nothing)`,
      );
      return;
    case FAULT_OOM:
      signal(
        m,
        p,
        'SIGKILL',
        'OOM',
        va,
        `Out of memory: killed process ${p.pid} (${p.name}) on a page fault at ${formatHex(va)}`,
      );
      return;
    case FAULT_LIVELOCKED:
      reportFinding(
        m,
        FAULT_LIVELOCK.code,
        `${who}: ${rw} at ${formatHex(va)} faults forever: the fault handler keeps reporting success without installing a usable PTE`,
        { agent: p.name, details: { pid: p.pid, va } },
      );
      return;
    default:
      return;
  }
}

function checkRange(va: number, length: number, what: string): void {
  if (!Number.isInteger(va) || va < 0)
    throw new DmalabError(`${what}: address must be a non-negative integer, got ${va}`);
  if (!Number.isInteger(length) || length < 0) {
    throw new DmalabError(`${what}: length must be a non-negative integer, got ${length}`);
  }
}

/**
 * The process's own load of `length` bytes at `va`: the bytes, or null when
 * the access killed it (SIGSEGV/SIGBUS recorded), never completes
 * (FAULT_LIVELOCK recorded), or the process is already dead.
 */
export function userRead(proc: Process, va: UserVa | number, length: number): Uint8Array | null {
  const m = proc.machine;
  return apiCall(m, 'userRead', () => {
    checkRange(va, length, 'userRead');
    const p = proc.state;
    if (p.status !== 'running') return null;
    const out = new Uint8Array(length);
    const done = withAgent(m, p.name, () => userAccess(m, p, va, out, 0, length, false, 'user'), p.pid);
    if (done === length) return out;
    deliverFault(m, p, failWhy, failVa, false);
    return null;
  });
}

/** The process's own store of `bytes` at `va`: false when it did not complete (see `userRead`). */
export function userWrite(proc: Process, va: UserVa | number, bytes: Uint8Array): boolean {
  const m = proc.machine;
  return apiCall(m, 'userWrite', () => {
    checkRange(va, bytes.length, 'userWrite');
    const p = proc.state;
    if (p.status !== 'running') return false;
    const access = () => userAccess(m, p, va, bytes, 0, bytes.length, true, 'user');
    const done = withAgent(m, p.name, access, p.pid);
    if (done === bytes.length) return true;
    deliverFault(m, p, failWhy, failVa, true);
    return false;
  });
}

function uaccessLivelock(m: Machine, p: ProcState): void {
  if (failWhy === FAULT_LIVELOCKED) deliverFault(m, p, failWhy, failVa, false);
}

/**
 * `copy_from_user()`: copies `n` bytes from the process's `userVa` to
 * `kernelVa`. Returns the number of bytes NOT copied (0 on success); the
 * kernel buffer's uncopied tail is zeroed, as `_copy_from_user` does.
 */
export function copyFromUser(
  proc: Process,
  kernelVa: KernelVa | number,
  userVa: UserVa | number,
  n: number,
): number {
  const m = proc.machine;
  return apiCall(m, 'copy_from_user', () => {
    checkRange(userVa, n, 'copy_from_user');
    const p = proc.state;
    if (p.status !== 'running') return n;
    const buf = new Uint8Array(Math.min(n, 65536));
    const copy = () => {
      let done = 0;
      // access_ok: a range reaching past user space copies nothing (and zeroes the destination).
      while (done < n && userVa + n <= TASK_SIZE) {
        const chunk = Math.min(buf.length, n - done);
        const got = userAccess(m, p, userVa + done, buf, 0, chunk, false, 'uaccess');
        if (got > 0 && !kernelWriteFrom(m, kernelVa + done, buf, 0, got)) return n - done;
        done += got;
        if (got < chunk) break;
      }
      if (done < n) {
        uaccessLivelock(m, p);
        buf.fill(0);
        for (let z = done; z < n; z += buf.length)
          kernelWriteFrom(m, kernelVa + z, buf, 0, Math.min(buf.length, n - z));
      }
      return n - done;
    };
    // The kernel reads through the process's page tables: the user side of the copy is in its mm.
    return withAgent(m, 'kernel', copy, p.pid);
  });
}

/**
 * `copy_to_user()`: copies `n` bytes from `kernelVa` to the process's
 * `userVa`. Returns the number of bytes NOT copied.
 */
export function copyToUser(
  proc: Process,
  userVa: UserVa | number,
  kernelVa: KernelVa | number,
  n: number,
): number {
  const m = proc.machine;
  return apiCall(m, 'copy_to_user', () => {
    checkRange(userVa, n, 'copy_to_user');
    const p = proc.state;
    if (p.status !== 'running' || userVa + n > TASK_SIZE) return n;
    const buf = new Uint8Array(Math.min(n, 65536));
    const copy = () => {
      let done = 0;
      while (done < n) {
        const chunk = Math.min(buf.length, n - done);
        if (!kernelReadInto(m, kernelVa + done, buf, 0, chunk)) return n - done;
        const put = userAccess(m, p, userVa + done, buf, 0, chunk, true, 'uaccess');
        done += put;
        if (put < chunk) break;
      }
      if (done < n) uaccessLivelock(m, p);
      return n - done;
    };
    // The kernel writes through the process's page tables (see copy_from_user).
    return withAgent(m, 'kernel', copy, p.pid);
  });
}
