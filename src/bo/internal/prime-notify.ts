/**
 * What a move tells the dma-buf an object is exported as: importers hear
 * `move_notify` before the move (the driver's move notify), and the
 * buffer's backing is updated after it so the checker follows the bytes.
 */

import { DmaBuf, dmaBufMoveNotify, dmaBufSetBacking } from '../../dmabuf/index.js';
import { type Machine, PAGE_SIZE } from '../../machine/index.js';
import { backingPfns } from '../handles.js';
import type { BoObjState } from './state.js';

/** The flat [phys, length, …] pieces behind an object now (for `dmaBufSetBacking`). */
export function boBacking(m: Machine, bo: BoObjState): number[] {
  const out: number[] = [];
  for (const pfn of backingPfns(m, bo)) {
    if (pfn < 0) continue;
    const pa = pfn * PAGE_SIZE;
    const n = out.length;
    if (n > 0 && out[n - 2]! + out[n - 1]! === pa) out[n - 1]! += PAGE_SIZE;
    else out.push(pa, PAGE_SIZE);
  }
  return out;
}

/**
 * Tells the importers of an exported object that it is about to move
 * (`dma_buf_move_notify`, from the driver's move notify), reservation held.
 */
export function primeMoveNotify(m: Machine, bo: BoObjState): void {
  if (bo.dmabuf >= 0) dmaBufMoveNotify(new DmaBuf(m, bo.dmabuf));
}

/** After a move: where the exported object's bytes now are. */
export function primeSetBacking(m: Machine, bo: BoObjState): void {
  if (bo.dmabuf >= 0) dmaBufSetBacking(new DmaBuf(m, bo.dmabuf), boBacking(m, bo));
}
