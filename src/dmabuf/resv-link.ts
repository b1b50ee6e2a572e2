/**
 * Where the dma-buf core meets its reservation object (`dmabuf->resv`,
 * dma-resv.c): the lock assertions of map/unmap/pin/move_notify, the lock
 * the `_unlocked` variants take, the implicit-fence wait of
 * begin_cpu_access, and the embedded object's life.
 */

import { type Machine, reportFinding, WARN } from '../machine/index.js';
import { MAX_SCHEDULE_TIMEOUT } from './fence.js';
import { type DmaResv, resvHandle } from './fence-state.js';
import {
  DMA_RESV_USAGE_KERNEL,
  dmaResvFini,
  dmaResvInit,
  dmaResvIsLocked,
  dmaResvLock,
  dmaResvUnlock,
  dmaResvUsageRw,
  dmaResvWaitTimeout,
} from './resv.js';
import type { DmaBuf, DmaBufState } from './state.js';

/** The buffer's reservation object. */
export function resvOf(dmabuf: DmaBuf): DmaResv {
  return resvHandle(dmabuf.machine, dmabuf.state.resv);
}

/** `dma_resv_assert_held(dmabuf->resv)` in `call`: lockdep's WARN when the lock is not held. */
export function lockHeld(dmabuf: DmaBuf, call: string): void {
  const resv = resvOf(dmabuf);
  if (!dmaResvIsLocked(resv)) {
    reportFinding(
      dmabuf.machine,
      WARN.code,
      `${call}: the reservation lock of dma-buf ${dmabuf.id} (dma_resv ${resv.id}) is not held (lockdep_assert_held fails)`,
    );
  }
}

/**
 * Runs `fn` with `dmabuf->resv` locked (`dma_resv_lock` … `dma_resv_unlock`).
 * A lock already held is a self-deadlock in the kernel: the lock's WARN is
 * recorded and `fn` runs under the holder's lock.
 */
export function withResvLock<T>(dmabuf: DmaBuf, fn: () => T): T {
  const resv = resvOf(dmabuf);
  const locked = dmaResvLock(resv, null) === 0;
  try {
    return fn();
  } finally {
    if (locked) dmaResvUnlock(resv);
  }
}

/**
 * `__dma_buf_begin_cpu_access()`'s wait on the implicit fences, with no
 * timeout: all of them before a CPU write, the writers' before a read.
 * 0 or a negative errno.
 */
export function waitForCpuAccess(dmabuf: DmaBuf, write: boolean): number {
  const r = dmaResvWaitTimeout(resvOf(dmabuf), dmaResvUsageRw(write), true, MAX_SCHEDULE_TIMEOUT);
  return r < 0 ? r : 0;
}

/** The wait of a static importer's map for the kernel's own fences (moves, clears). 0 or a negative errno. */
export function waitForKernelFences(dmabuf: DmaBuf): number {
  const r = dmaResvWaitTimeout(resvOf(dmabuf), DMA_RESV_USAGE_KERNEL, true, MAX_SCHEDULE_TIMEOUT);
  return r < 0 ? r : 0;
}

/** The buffer's reservation object at export: the exporter's, or a new embedded one. Returns its id. */
export function resvForExport(m: Machine, shared: DmaResv | undefined): { id: number; own: boolean } {
  if (shared !== undefined) return { id: shared.id, own: false };
  return { id: dmaResvInit(m).id, own: true };
}

/** Finalises the embedded reservation object at release (a shared one stays its owner's). */
export function releaseResv(m: Machine, b: DmaBufState): void {
  if (b.ownResv) dmaResvFini(resvHandle(m, b.resv));
}
