/**
 * Where the dma-buf core meets its reservation object (`dmabuf->resv`):
 * the lock assertions of map/unmap/pin/move_notify and the lock the
 * `_unlocked` variants take.
 */

import { ENOTTY, type Machine } from '../machine/index.js';
import type { Process } from '../mm/index.js';
import type { DmaBuf, DmaBufState } from './state.js';

/** `dma_resv_assert_held(dmabuf->resv)`. */
export function lockHeld(dmabuf: DmaBuf, call: string): void {
  void dmabuf;
  void call;
}

/** Runs `fn` with `dmabuf->resv` locked (`dma_resv_lock` … `dma_resv_unlock`). */
export function withResvLock<T>(dmabuf: DmaBuf, fn: () => T): T {
  void dmabuf;
  return fn();
}

/**
 * `__dma_buf_begin_cpu_access()`'s wait on the implicit fences: all of
 * them before a CPU write, the writers' before a read. 0 or a negative errno.
 */
export function waitForCpuAccess(dmabuf: DmaBuf, write: boolean): number {
  void dmabuf;
  void write;
  return 0;
}

/** The buffer's reservation object at export: the exporter's, or a new embedded one (-1: none yet). */
export function resvForExport(m: Machine, shared: number | undefined): number {
  void m;
  return shared ?? -1;
}

/** Finalises the embedded reservation object at release. */
export function releaseResv(m: Machine, b: DmaBufState): void {
  void m;
  void b;
}

/** DMA_BUF_IOCTL_EXPORT_SYNC_FILE / IMPORT_SYNC_FILE (need sync_file: -ENOTTY, as without CONFIG_SYNC_FILE). */
export function syncFileIoctl(dmabuf: DmaBuf, exportFile: boolean, arg: number, proc: Process): number {
  void dmabuf;
  void exportFile;
  void arg;
  void proc;
  return -ENOTTY;
}
