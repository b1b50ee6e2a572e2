/**
 * CPU access to a dma-buf (drivers/dma-buf/dma-buf.c): the begin/end
 * bracket, the reference-counted kernel mapping (vmap), and user mappings
 * through the exporter's `mmap`.
 */

import { apiCall, BUG, EINVAL, EOVERFLOW, type Machine, PAGE_SIZE, reportFinding } from '../machine/index.js';
import { type Vma, vmaPages, vmaSetFile } from '../mm/index.js';
import { checkDir, warn } from './attach.js';
import { lockHeld, waitForCpuAccess, withResvLock } from './resv-link.js';
import { type DmaBuf, dmabufState, type IosysMap } from './state.js';

function emitBracket(dmabuf: DmaBuf, begin: boolean, dir: number, agent: string, ret: number): void {
  const m = dmabuf.machine;
  if (m.bus.wants['dmabuf-cpu-access']) {
    m.bus.emit({ type: 'dmabuf-cpu-access', buf: dmabuf.id, begin, dir, agent, ret });
  }
}

function live(dmabuf: DmaBuf, call: string): boolean {
  if (dmabuf === null || dmabuf === undefined || !dmabufState(dmabuf.machine).bufs.has(dmabuf.id)) {
    if (dmabuf?.machine !== undefined) warn(dmabuf.machine, `${call}: no such dma-buf`);
    return false;
  }
  return true;
}

/** The bracket's opening, for a given agent (the kernel, or the process behind DMA_BUF_IOCTL_SYNC). */
export function beginCpuAccessAs(dmabuf: DmaBuf, dir: number, agent: string): number {
  if (!live(dmabuf, 'dma_buf_begin_cpu_access')) return -EINVAL;
  checkDir(dir, 'dma_buf_begin_cpu_access');
  const op = dmabuf.ops.beginCpuAccess;
  let ret = op === undefined ? 0 : op(dmabuf, dir);
  // The exporter may already have waited; waiting again for the same fences costs nothing.
  if (ret === 0) ret = waitForCpuAccess(dmabuf, dir === 0 || dir === 1);
  emitBracket(dmabuf, true, dir, agent, ret);
  return ret;
}

/** The bracket's close, for a given agent. */
export function endCpuAccessAs(dmabuf: DmaBuf, dir: number, agent: string): number {
  if (!live(dmabuf, 'dma_buf_end_cpu_access')) return -EINVAL;
  checkDir(dir, 'dma_buf_end_cpu_access');
  const op = dmabuf.ops.endCpuAccess;
  const ret = op === undefined ? 0 : op(dmabuf, dir);
  emitBracket(dmabuf, false, dir, agent, ret);
  return ret;
}

/**
 * `dma_buf_begin_cpu_access()`: the exporter makes the buffer coherent for
 * the CPU in direction `dir` (DMA_FROM_DEVICE: the CPU reads what devices
 * wrote; DMA_TO_DEVICE or DMA_BIDIRECTIONAL: the CPU will write), then the
 * core waits for the implicit fences that direction conflicts with (writers
 * for a read; writers and readers for a write). 0 or a negative errno. It
 * does not lock anyone else out.
 */
export function dmaBufBeginCpuAccess(dmabuf: DmaBuf, dir: number): number {
  return apiCall(dmabuf.machine, 'dma_buf_begin_cpu_access', () =>
    beginCpuAccessAs(dmabuf, dir, dmabuf.machine.agent),
  );
}

/** `dma_buf_end_cpu_access()`: the exporter hands the CPU's writes back to the devices. No fence wait. */
export function dmaBufEndCpuAccess(dmabuf: DmaBuf, dir: number): number {
  return apiCall(dmabuf.machine, 'dma_buf_end_cpu_access', () =>
    endCpuAccessAs(dmabuf, dir, dmabuf.machine.agent),
  );
}

/** Sets up a user mapping through the exporter (after the core's checks); emits the event. */
export function exporterMmap(m: Machine, dmabuf: DmaBuf, vma: Vma): number {
  const ret = dmabuf.ops.mmap!(dmabuf, vma);
  if (m.bus.wants['dmabuf-mmap']) {
    m.bus.emit({
      type: 'dmabuf-mmap',
      buf: dmabuf.id,
      pid: vma.vmMm.pid,
      vmStart: vma.vmStart,
      vmEnd: vma.vmEnd,
      pgoff: vma.vmPgoff,
      ret,
    });
  }
  return ret;
}

/**
 * `dma_buf_mmap()`: another driver's mmap handing its VMA to the buffer
 * (the VMA's file becomes the dma-buf's, `vm_pgoff` becomes `pgoff`), then
 * the exporter's `mmap`. -EINVAL without an exporter mmap or past the end,
 * -EOVERFLOW when the offset overflows.
 */
export function dmaBufMmap(dmabuf: DmaBuf, vma: Vma, pgoff: number): number {
  const m = dmabuf.machine;
  return apiCall(m, 'dma_buf_mmap', () => {
    if (!live(dmabuf, 'dma_buf_mmap') || vma === null || vma === undefined) return -EINVAL;
    if (dmabuf.ops.mmap === undefined) return -EINVAL;
    if (!Number.isInteger(pgoff) || pgoff < 0) return -EINVAL;
    const pages = vmaPages(vma);
    if (pgoff + pages > Number.MAX_SAFE_INTEGER) return -EOVERFLOW;
    if (pgoff + pages > Math.floor(dmabuf.size / PAGE_SIZE)) return -EINVAL;
    vmaSetFile(vma, dmabuf.file);
    vma.vmPgoff = pgoff;
    return exporterMmap(m, dmabuf, vma);
  });
}

function vmapInner(dmabuf: DmaBuf): IosysMap | number {
  const m = dmabuf.machine;
  if (!live(dmabuf, 'dma_buf_vmap')) return -EINVAL;
  lockHeld(dmabuf, 'dma_buf_vmap');
  const b = dmabuf.state;
  const op = dmabuf.ops.vmap;
  if (op === undefined) return -EINVAL;
  if (b.vmappingCounter > 0) {
    b.vmappingCounter++;
    return b.vmapPtr!;
  }
  const r = op(dmabuf);
  if (typeof r === 'number') {
    warn(m, `dma_buf_vmap: the exporter's vmap failed (${r})`);
    return r;
  }
  b.vmapPtr = { vaddr: r.vaddr, isIomem: r.isIomem };
  b.vmappingCounter = 1;
  if (m.bus.wants['dmabuf-vmap']) {
    m.bus.emit({ type: 'dmabuf-vmap', buf: dmabuf.id, map: true, vaddr: r.vaddr, isIomem: r.isIomem });
  }
  return b.vmapPtr;
}

function vunmapInner(dmabuf: DmaBuf, map: IosysMap): void {
  const m = dmabuf.machine;
  if (!live(dmabuf, 'dma_buf_vunmap')) return;
  lockHeld(dmabuf, 'dma_buf_vunmap');
  const b = dmabuf.state;
  const p = b.vmapPtr;
  if (b.vmappingCounter === 0 || p === null || map?.vaddr !== p.vaddr || map.isIomem !== p.isIomem) {
    reportFinding(
      m,
      BUG.code,
      `dma_buf_vunmap: ${b.vmappingCounter === 0 ? 'not vmapped' : 'not the map vmap returned'}`,
      {
        details: { buf: dmabuf.id },
      },
    );
    return;
  }
  if (--b.vmappingCounter > 0) return;
  const op = dmabuf.ops.vunmap;
  if (op !== undefined) op(dmabuf, p);
  b.vmapPtr = null;
  if (m.bus.wants['dmabuf-vmap']) {
    m.bus.emit({ type: 'dmabuf-vmap', buf: dmabuf.id, map: false, vaddr: p.vaddr, isIomem: p.isIomem });
  }
}

/**
 * `dma_buf_vmap()`: a kernel mapping of the whole buffer (the map is the
 * return value), reference counted: the exporter's `vmap` runs for the
 * first user only. -EINVAL when the exporter has none. The reservation
 * lock must be held (`dmaBufVmapUnlocked` takes it).
 */
export function dmaBufVmap(dmabuf: DmaBuf): IosysMap | number {
  return apiCall(dmabuf.machine, 'dma_buf_vmap', () => vmapInner(dmabuf));
}

/** `dma_buf_vunmap()`: drops a vmap reference; the last calls the exporter's `vunmap`. A wrong map is a BUG. */
export function dmaBufVunmap(dmabuf: DmaBuf, map: IosysMap): void {
  apiCall(dmabuf.machine, 'dma_buf_vunmap', () => vunmapInner(dmabuf, map));
}

/** `dma_buf_vmap_unlocked()`. */
export function dmaBufVmapUnlocked(dmabuf: DmaBuf): IosysMap | number {
  return apiCall(dmabuf.machine, 'dma_buf_vmap_unlocked', () =>
    withResvLock(dmabuf, () => vmapInner(dmabuf)),
  );
}

/** `dma_buf_vunmap_unlocked()`. */
export function dmaBufVunmapUnlocked(dmabuf: DmaBuf, map: IosysMap): void {
  apiCall(dmabuf.machine, 'dma_buf_vunmap_unlocked', () =>
    withResvLock(dmabuf, () => vunmapInner(dmabuf, map)),
  );
}
