/**
 * Helpers for the checker's tests: a machine with one device, page-backed
 * kernel buffers, raw kernel loads and stores through the linear map (what
 * the mm layer's kernelRead/kernelWrite will do), and the events of layers
 * still to come (scatter-gather maps, DMA allocations, PTEs, driver
 * binding), emitted inside a named kernel call as those layers will.
 */

import { createMachine, type MachineOptions } from '../src/boot.js';
import {
  addDevice,
  allocPages,
  apiCall,
  cpuRead,
  cpuWrite,
  type Device,
  type EventInit,
  GFP_KERNEL,
  type KernelVa,
  type Machine,
  machineFindings,
  PAGE_OFFSET,
  pageAddress,
} from '../src/index.js';

export const MiB = 1 << 20;

export function machine(
  profile: string,
  extra: MachineOptions = {},
  device: Parameters<typeof addDevice>[1] = { name: 'nic0' },
): { m: Machine; dev: Device } {
  const m = createMachine({ profile, ramBytes: 256 * MiB, ...extra });
  return { m, dev: addDevice(m, device) };
}

/** A page-aligned kernel buffer of 2^order pages on the linear map. */
export function buffer(m: Machine, order = 0): KernelVa {
  const p = allocPages(m, GFP_KERNEL, order);
  if (p === null) throw new Error('out of memory');
  return pageAddress(p);
}

/** A kernel load through the linear map (cached). */
export function kread(m: Machine, va: number, len: number): number[] {
  const out = new Uint8Array(len);
  cpuRead(m, va - PAGE_OFFSET, va, 'cached', out, 0, len);
  return [...out];
}

/** A kernel store through the linear map (cached). */
export function kwrite(m: Machine, va: number, bytes: ArrayLike<number>): void {
  const src = Uint8Array.from(bytes);
  cpuWrite(m, va - PAGE_OFFSET, va, 'cached', src, 0, src.length);
}

/** The codes of the findings so far. */
export function codes(m: Machine): string[] {
  return machineFindings(m).map((f) => f.code);
}

/** Emits an event inside the kernel call `call` (one step), as the emitting layer would. */
export function emitIn(m: Machine, call: string, ev: EventInit): void {
  apiCall(m, call, () => {
    if (m.bus.wants[ev.type]) m.bus.emit(ev);
  });
}

/** `dma_map_sg` of page-backed entries on a direct-mapped device: one DMA segment per entry, bus = phys. */
export function mapSgDirect(
  dev: Device,
  entries: { phys: number; length: number }[],
  dir: number,
  over: { dmaAddrs?: number[]; dmaLengths?: number[]; mapped?: number; attrs?: number } = {},
): { dmaAddrs: number[]; dmaLengths: number[] } {
  const dmaAddrs = over.dmaAddrs ?? entries.map((e) => e.phys);
  const dmaLengths = over.dmaLengths ?? entries.map((e) => e.length);
  emitIn(dev.machine, 'dma_map_sg_attrs', {
    type: 'dma-map-sg',
    device: dev.name,
    call: 'dma_map_sg_attrs',
    nents: entries.length,
    mapped: over.mapped ?? dmaAddrs.length,
    dir,
    attrs: over.attrs ?? 0,
    phys: entries.map((e) => e.phys),
    lengths: entries.map((e) => e.length),
    dmaAddrs,
    dmaLengths,
  });
  return { dmaAddrs, dmaLengths };
}

/** `dma_unmap_sg` or `dma_sync_sg_for_*` of such a list, with `nents` entries passed. */
export function sgOp(
  dev: Device,
  op: 'unmap' | 'sync-cpu' | 'sync-device',
  entries: { phys: number; length: number }[],
  dma: { dmaAddrs: number[]; dmaLengths: number[] },
  dir: number,
  nents = entries.length,
): void {
  const base = {
    device: dev.name,
    nents,
    dir,
    phys: entries.slice(0, nents).map((e) => e.phys),
    lengths: entries.slice(0, nents).map((e) => e.length),
    dmaAddrs: dma.dmaAddrs.slice(0, nents),
    dmaLengths: dma.dmaLengths.slice(0, nents),
  };
  const m = dev.machine;
  if (op === 'unmap')
    emitIn(m, 'dma_unmap_sg_attrs', { type: 'dma-unmap-sg', call: 'dma_unmap_sg_attrs', attrs: 0, ...base });
  else {
    const call = op === 'sync-cpu' ? 'dma_sync_sg_for_cpu' : 'dma_sync_sg_for_device';
    emitIn(m, call, { type: 'dma-sync-sg', call, forCpu: op === 'sync-cpu', ...base });
  }
}
