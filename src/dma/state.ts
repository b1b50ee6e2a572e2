/**
 * The DMA layer's state, plain data under `m.layers.dma`, and its slot.
 */

import { type Device, type Hasher, type Machine, registerSlot } from '../machine/index.js';
import type { AtomicPool, DevCoherentPool, DmaAllocRecord } from './alloc.js';
import type { DmaPoolState } from './dmapool.js';
import type { IovaDomainState } from './iova.js';
import type { SbaState } from './sba.js';
import type { SwiotlbState } from './swiotlb.js';

/** Per-device DMA state (the kernel's `struct device` DMA fields). */
export interface DmaDevState {
  /** `dev->dma_skip_sync`: syncs are no-ops for this device. */
  skipSync: boolean;
  /** iommu-dma's PCI 32-bit workaround is still on (first try IOVAs below 4 GiB). */
  pci32Workaround: boolean;
  /** `dma_get_min_align_mask()`. */
  minAlignMask: number;
  /** `WARN_ONCE` sites that already fired for this device. */
  warned: string[];
}

export interface DmaState {
  /** By device id; created on first use. */
  devices: (DmaDevState | undefined)[];
  swiotlb: SwiotlbState | null;
  /** iommu-dma IOVA allocators, by IOMMU domain id. */
  iova: Map<number, IovaDomainState>;
  /** parisc sba resource maps, by IOMMU domain id. */
  sba: Map<number, SbaState>;
  /** Live allocations, by CPU address (or page cookie). */
  allocs: Map<number, DmaAllocRecord>;
  /** Declared device-local coherent memory, by device id. */
  devCoherent: Map<number, DevCoherentPool>;
  /** The pre-remapped pool for non-blocking coherent allocations. */
  atomicPool: AtomicPool | null;
  /** DMA pools, by id. */
  pools: Map<number, DmaPoolState>;
  nextPoolId: number;
  /** Counters (events are the detailed record). */
  stats: { maps: number; unmaps: number; syncs: number; bounced: number; mapErrors: number };
}

export function dmaState(m: Machine): DmaState {
  return m.layers.dma as DmaState;
}

/** The DMA state of a device, created with the kernel's defaults on first use. */
export function dmaDev(dev: Device): DmaDevState {
  const s = dmaState(dev.machine);
  let d = s.devices[dev.id];
  if (d === undefined) {
    d = { skipSync: false, pci32Workaround: true, minAlignMask: 0, warned: [] };
    s.devices[dev.id] = d;
  }
  return d;
}

/** True the first time a `WARN_ONCE`/`dev_WARN_ONCE` site fires for this device. */
export function warnOnce(dev: Device, site: string): boolean {
  const d = dmaDev(dev);
  if (d.warned.includes(site)) return false;
  d.warned.push(site);
  return true;
}

/** Registers the layer's state and slot (the swiotlb pool is set up by `initSwiotlb`). */
export function initDmaState(m: Machine): void {
  const state: DmaState = {
    devices: [],
    swiotlb: null,
    iova: new Map(),
    sba: new Map(),
    allocs: new Map(),
    devCoherent: new Map(),
    atomicPool: null,
    pools: new Map(),
    nextPoolId: 1,
    stats: { maps: 0, unmaps: 0, syncs: 0, bounced: 0, mapErrors: 0 },
  };
  m.layers.dma = state;
  registerSlot(m, {
    name: 'dma',
    snapshot: (mm) => structuredClone(dmaState(mm)),
    restore: (mm, snap) => {
      mm.layers.dma = structuredClone(snap as DmaState);
    },
    hash: (mm: Machine, h: Hasher) => {
      const s = dmaState(mm);
      h.value(s.devices)
        .value(s.iova)
        .value(s.sba)
        .value(s.allocs)
        .value(s.devCoherent)
        .value(s.atomicPool)
        .value(s.pools);
      // The swiotlb diagnostics (call sites, counters) record history, not state.
      const t = s.swiotlb;
      if (t !== null) h.value([t.start, t.origAddr, t.allocSize, t.list, t.index, t.used]);
    },
  });
}
