/**
 * DMA memory in user space (seed 000): the allocation must outlive every
 * user mapping of it ("we should not be freeing the coherent mapping until
 * the mmap of it has gone"). The checker keeps the live `dma_mmap_*`
 * mappings from `dma-mmap` and `vma-unmap` events and reports a free of an
 * allocation one of them still maps. The harm shows later: an access
 * through the stale PTE is mm's USE_AFTER_FREE.
 */

import type { DmaFreeEvent, DmaMmapEvent, Machine, VmaUnmapEvent } from '../machine/index.js';
import { formatHex } from '../machine/index.js';
import { DMA_FREE_MMAPPED } from './codes.js';
import { raise } from './report.js';
import type { DebugState } from './state.js';

export function onDmaMmap(st: DebugState, ev: DmaMmapEvent): void {
  if (ev.ret !== 0) return;
  st.userMaps.push({
    pid: ev.pid,
    start: ev.vmStart,
    end: ev.vmEnd,
    device: ev.device,
    cpuAddr: ev.cpuAddr,
    size: ev.size,
    step: ev.step,
  });
}

/** A VMA (or part of one) went away: drop or trim the user mappings it held. */
export function onVmaUnmap(st: DebugState, ev: VmaUnmapEvent): void {
  if (ev.reason === 'split') return; // the pieces stay mapped
  const out = [];
  for (const u of st.userMaps) {
    if (u.pid !== ev.pid || u.end <= ev.start || u.start >= ev.end) {
      out.push(u);
      continue;
    }
    if (u.start < ev.start) out.push({ ...u, end: ev.start });
    if (u.end > ev.end) out.push({ ...u, start: ev.end });
  }
  st.userMaps = out;
}

export function onFreeMmapped(m: Machine, st: DebugState, dev: number, ev: DmaFreeEvent): void {
  if (ev.cpuAddr < 0) return;
  const end = ev.cpuAddr + ev.size;
  const live = st.userMaps.find(
    (u) => u.device === ev.device && u.cpuAddr < end && ev.cpuAddr < u.cpuAddr + u.size,
  );
  if (live === undefined) return;
  raise(
    m,
    st,
    DMA_FREE_MMAPPED,
    dev,
    `DMA memory freed while process ${live.pid} still maps it [cpu address=${formatHex(ev.cpuAddr)}] [size=${ev.size} bytes] [user mapping=${formatHex(live.start)}-${formatHex(live.end)}] (mapped at step ${live.step}): free it from the VMA's close, after the last munmap`,
    {
      kind: 'free-while-mmapped',
      cpuAddr: ev.cpuAddr,
      size: ev.size,
      pid: live.pid,
      start: live.start,
      end: live.end,
    },
  );
  st.userMaps = st.userMaps.filter((u) => u !== live);
}
