/**
 * Heap buffers in a declarative scenario: the dma-buf allocated from a
 * dma-heap with DMA_HEAP_IOCTL_ALLOC, the importing driver's steps (attach,
 * map, unmap, detach, CPU-access brackets) and the process's (its own fd for
 * the buffer, mmap, DMA_BUF_IOCTL_SYNC).
 *
 * An allocator process — the system's buffer allocator, as gralloc or a
 * compositor is — allocates every heap buffer during the setup and hands the
 * fd to each process that uses it (as over a unix socket); importing drivers
 * hold the dma-buf from `dma_buf_get` on that fd, as a driver's ioctl takes
 * it from user space.
 */

import { DMA_BIDIRECTIONAL, DMA_TO_DEVICE } from '../../dma/index.js';
import {
  DMA_BUF_IOCTL_SYNC,
  DMA_BUF_SYNC_END,
  DMA_BUF_SYNC_READ,
  DMA_BUF_SYNC_RW,
  DMA_BUF_SYNC_START,
  DMA_BUF_SYNC_WRITE,
  DMA_FENCE_FLAG_SIGNALED_BIT,
  DMA_HEAP_IOCTL_ALLOC,
  dmaBufAttach,
  dmaBufBeginCpuAccess,
  dmaBufDetach,
  dmaBufEndCpuAccess,
  dmaBufFd,
  dmaBufGet,
  dmaBufMapAttachmentUnlocked,
  dmaBufPut,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufVmapUnlocked,
  dmaFencePut,
  dmaResvGetFences,
  dmaResvUsageRw,
  getDmaBuf,
  O_CLOEXEC,
} from '../../dmabuf/index.js';
import { forEachSgtableDmaSg, type SgTable } from '../../lib/index.js';
import { DmalabError, EBADF, type KernelVa, PAGE_SIZE } from '../../machine/index.js';
import {
  kernelWrite,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  type Process,
  spawnProcess,
  sysClose,
  sysIoctl,
  sysMmap,
  sysOpen,
  userRead,
  userWrite,
} from '../../mm/index.js';
import { wait, type Yielded } from '../runtime.js';
import type { HeapBufferSetup, StepSpec } from '../types.js';
import {
  type Buffer,
  buffer,
  count,
  DIRS,
  errnoText,
  expectKind,
  fill,
  hex,
  mappingOf,
  stepAt,
  str,
  usedBeforeMade,
  type World,
  where,
} from './world.js';

/** `value` as `bytes` little-endian bytes (u32 and u64 fields of ioctl structs). */
export function le(value: number, bytes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) out.push(Math.floor(value / 2 ** (8 * i)) & 0xff);
  return out;
}

/** A page of the process's own memory for ioctl arguments, mapped at its first ioctl. */
export function scratch(w: World, proc: Process): number {
  let addr = w.scratch.get(proc.pid);
  if (addr === undefined) {
    addr = sysMmap(proc, 0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    w.scratch.set(proc.pid, addr);
  }
  return addr;
}

function allocator(w: World): Process {
  w.allocator ??= spawnProcess(w.m, 'allocator');
  return w.allocator;
}

/**
 * A heap buffer: `open("/dev/dma_heap/<heap>")` and DMA_HEAP_IOCTL_ALLOC by
 * the allocator process, then `dma_buf_get` on the new fd for the importing
 * drivers. With `fill`, the exporter writes the contents through its kernel
 * mapping inside begin/end_cpu_access, so that they reach memory on every
 * cache (on PA-RISC the end of the bracket flushes the vmap alias).
 * False when any of it failed.
 */
export function allocHeapBuffer(w: World, b: Buffer, spec: HeapBufferSetup): boolean {
  const proc = allocator(w);
  const arg = scratch(w, proc);
  const hfd = sysOpen(proc, `/dev/dma_heap/${spec.heap}`);
  if (hfd < 0) return false;
  // struct dma_heap_allocation_data { __u64 len; __u32 fd; __u32 fd_flags; __u64 heap_flags; }
  const data = [...le(spec.size, 8), ...le(0, 4), ...le(O_RDWR | O_CLOEXEC, 4), ...le(0, 8)];
  userWrite(proc, arg, new Uint8Array(data));
  const r = sysIoctl(proc, hfd, DMA_HEAP_IOCTL_ALLOC, arg);
  sysClose(proc, hfd);
  if (r !== 0) return false;
  const out = userRead(proc, arg + 8, 4);
  if (out === null) return false;
  const fd = out[0]! | (out[1]! << 8) | (out[2]! << 16) | (out[3]! << 24);
  const db = dmaBufGet(proc, fd);
  if (typeof db === 'number') return false;
  b.dmabuf = db;
  b.fds.set(proc.pid, fd);
  if (spec.fill === undefined) return true;
  const va = heapKernelMap(w, b, `${w.file}: filling '${spec.name}'`);
  if (va === null) return false;
  dmaBufBeginCpuAccess(db, DMA_TO_DEVICE);
  kernelWrite(w.m, va, fill(spec.size, spec.fill));
  dmaBufEndCpuAccess(db, DMA_TO_DEVICE);
  return true;
}

/**
 * A heap buffer's kernel mapping, made with `dma_buf_vmap_unlocked` at the
 * first kernel access and kept for the run, as an importer keeps its map;
 * null (with a failed condition) when the exporter refuses.
 */
export function heapKernelMap(w: World, b: Buffer, label: string): KernelVa | null {
  if (b.vmap !== null || b.dmabuf === null) return b.vmap;
  const r = dmaBufVmapUnlocked(b.dmabuf);
  if (typeof r === 'number') {
    w.ctx.check(false, `${label}: dma_buf_vmap of '${b.spec.name}' failed: ${errnoText(r)}`);
    return null;
  }
  b.vmap = r.vaddr as KernelVa;
  return b.vmap;
}

/**
 * The process's fd for a heap buffer: the allocator's is passed to it at its
 * first use (`get_dma_buf` + `fd_install`, what receiving it over a unix
 * socket does). Negative errno when it cannot be had.
 */
export function processFd(proc: Process, b: Buffer): number {
  const had = b.fds.get(proc.pid);
  if (had !== undefined) return had;
  // No buffer, no fd: what the process's calls on it then see.
  if (b.dmabuf === null) return -EBADF;
  getDmaBuf(b.dmabuf);
  const fd = dmaBufFd(proc, b.dmabuf, O_CLOEXEC);
  if (fd < 0) dmaBufPut(b.dmabuf);
  else b.fds.set(proc.pid, fd);
  return fd;
}

/** `mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)` of the process's dma-buf fd. */
export function mmapHeap(proc: Process, b: Buffer): { fd: number; addr: number } {
  const fd = processFd(proc, b);
  const size = (b.spec as HeapBufferSetup).size;
  return { fd, addr: fd < 0 ? fd : sysMmap(proc, 0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) };
}

/**
 * Blocks the agent in the scenario's scheduler on each of the buffer's
 * fences of `usage` not yet signalled, as the kernel's wait would sleep
 * (other agents go on meanwhile); the library's own wait, called after,
 * then finds them signalled and orders the waiter after each signal.
 */
export function* blockOnResv(b: Buffer, usage: number): Generator<Yielded, void, undefined> {
  for (const f of dmaResvGetFences(b.dmabuf!.resv, usage)) {
    if ((f.flags & (1 << DMA_FENCE_FLAG_SIGNALED_BIT)) === 0)
      yield wait.fence(f.id, `${f}`, `blocks on ${b.spec.name}'s ${f}`);
    dmaFencePut(f);
  }
}

const SYNC_FLAG_VALUES: Readonly<Record<string, number>> = {
  START: DMA_BUF_SYNC_START,
  END: DMA_BUF_SYNC_END,
  READ: DMA_BUF_SYNC_READ,
  WRITE: DMA_BUF_SYNC_WRITE,
  RW: DMA_BUF_SYNC_RW,
};

/** `ioctl(fd, DMA_BUF_IOCTL_SYNC, &(struct dma_buf_sync){ flags })`: the kernel copies the struct in. */
export function* ioctlSyncStep(w: World, proc: Process, s: StepSpec): Generator<Yielded, void, undefined> {
  const name = str(s.args, 'buffer');
  const words = s.args.flags as readonly string[];
  const flags = words.reduce((f, x) => f | SYNC_FLAG_VALUES[x]!, 0);
  const shown = words.map((x) => `DMA_BUF_SYNC_${x}`).join('|');
  const b = buffer(w, name);
  const fd = processFd(proc, b);
  if (fd < 0) return yield { op: `DMA_BUF_IOCTL_SYNC skipped ('${name}' was never allocated)` };
  // START waits (dma_resv_usage_rw): a CPU write for every fence, a read for the writers'; END waits for none.
  if ((flags & DMA_BUF_SYNC_END) === 0)
    yield* blockOnResv(b, dmaResvUsageRw((flags & DMA_BUF_SYNC_WRITE) !== 0));
  const arg = scratch(w, proc);
  userWrite(proc, arg, new Uint8Array(le(flags, 8)));
  const r = sysIoctl(proc, fd, DMA_BUF_IOCTL_SYNC, arg);
  const label = `ioctl(${name} fd ${fd}, DMA_BUF_IOCTL_SYNC, ${shown}) = ${errnoText(r)}`;
  if (r !== 0) w.ctx.check(false, where(w, s, label));
  return yield { op: label };
}

/** The dma-buf a kernel step names, or null (the step is skipped) when its allocation failed. */
function dmabufOf(w: World, s: StepSpec): Buffer | null {
  const b = buffer(w, str(s.args, 'buffer'));
  return b.dmabuf === null ? null : b;
}

/** The importing driver's steps on a heap buffer. */
export function* dmabufKernelStep(w: World, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  switch (s.op) {
    case 'dmaBufAttach': {
      const dev = w.devices.get(str(a, 'device'))!;
      const b = dmabufOf(w, s);
      const as = str(a, 'as');
      if (b === null) {
        w.attachments.set(as, null);
        return yield { op: `dma_buf_attach skipped ('${str(a, 'buffer')}' was never allocated)` };
      }
      const r = dmaBufAttach(b.dmabuf!, dev);
      w.attachments.set(as, typeof r === 'number' ? null : { buffer: b.spec.name, dev, at: r });
      const shown = typeof r === 'number' ? errnoText(r) : as;
      if (typeof r === 'number')
        w.ctx.check(false, where(w, s, `dma_buf_attach(${b.spec.name}, ${dev.name}) = ${shown}`));
      return yield { op: `dma_buf_attach(${b.spec.name}, ${dev.name}) = ${shown}` };
    }
    case 'dmaBufMapAttachment': {
      const name = str(a, 'attachment');
      const att = w.attachments.get(name);
      if (att === undefined) usedBeforeMade(w, s, 'attachment', `attachment '${name}'`);
      const as = str(a, 'as');
      if (att === null) {
        w.mappings.set(as, null);
        return yield { op: `dma_buf_map_attachment_unlocked skipped (${name} failed)` };
      }
      const dirName = str(a, 'dir');
      const dir = DIRS[dirName]!;
      const r = dmaBufMapAttachmentUnlocked(att.at, dir);
      const call = `dma_buf_map_attachment_unlocked(${name}, ${dirName})`;
      if (typeof r === 'number') {
        w.mappings.set(as, null);
        w.ctx.check(false, where(w, s, `${call} = ${errnoText(r)}`));
        return yield { op: `${call} = ${errnoText(r)}` };
      }
      w.mappings.set(as, {
        kind: 'dmabuf',
        dev: att.dev,
        buffer: att.buffer,
        attachment: att.at,
        sgt: r,
        dir,
        dirName,
      });
      return yield { op: `${call} = ${count(r.nents, 'DMA segment')} from ${hex(dmaStart(r))}` };
    }
    case 'dmaBufUnmapAttachment': {
      const mp = mappingOf(w, s, 'mapping');
      const name = str(a, 'mapping');
      if (mp === null) return yield { op: `dma_buf_unmap_attachment_unlocked skipped (${name} failed)` };
      const dm = expectKind(w, s, mp, 'dmabuf');
      dmaBufUnmapAttachmentUnlocked(dm.attachment, dm.sgt, dm.dir);
      return yield { op: `dma_buf_unmap_attachment_unlocked(${dm.dev.name}, ${dm.buffer}, ${dm.dirName})` };
    }
    case 'dmaBufDetach': {
      const name = str(a, 'attachment');
      const att = w.attachments.get(name);
      if (att === undefined) usedBeforeMade(w, s, 'attachment', `attachment '${name}'`);
      if (att === null) return yield { op: `dma_buf_detach skipped (${name} failed)` };
      dmaBufDetach(buffer(w, att.buffer).dmabuf!, att.at);
      return yield { op: `dma_buf_detach(${att.buffer}, ${att.dev.name})` };
    }
    case 'dmaBufBeginCpuAccess':
    case 'dmaBufEndCpuAccess': {
      const call = s.op === 'dmaBufBeginCpuAccess' ? 'dma_buf_begin_cpu_access' : 'dma_buf_end_cpu_access';
      const b = dmabufOf(w, s);
      if (b === null) return yield { op: `${call} skipped ('${str(a, 'buffer')}' was never allocated)` };
      const dirName = str(a, 'dir');
      const dir = DIRS[dirName]!;
      const begin = s.op === 'dmaBufBeginCpuAccess';
      // begin waits for the fences its direction conflicts with (a CPU write: all; a read: the writers'); end for none.
      if (begin) yield* blockOnResv(b, dmaResvUsageRw(dir === DMA_BIDIRECTIONAL || dir === DMA_TO_DEVICE));
      const r = (begin ? dmaBufBeginCpuAccess : dmaBufEndCpuAccess)(b.dmabuf!, dir);
      const label = `${call}(${b.spec.name}, ${dirName}) = ${errnoText(r)}`;
      if (r !== 0) w.ctx.check(false, where(w, s, label));
      return yield { op: label };
    }
  }
  throw new DmalabError(`step '${s.op}' is not a dma-buf step`, stepAt(w, s));
}

/** The first DMA segment's address of a mapped table, for the timeline. */
function dmaStart(sgt: SgTable): number {
  for (const sg of forEachSgtableDmaSg(sgt)) return sg.dmaAddress;
  return 0;
}
