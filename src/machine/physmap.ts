/**
 * The physical address space: RAM from physical 0, then persistent memory
 * and device memory (BARs, VRAM, an audio card's buffer) above RAM, with
 * holes between. Up to 2^48 bytes, sparse. `pfnValid` is honest about which
 * frames have a `struct page`: RAM does (except frame 0, which dmalab
 * reserves so that no `Page` is 0), persistent memory does through
 * ZONE_DEVICE unless the machine models seed 001's page-less RFC, device
 * memory does not.
 */

import { DmalabError } from './errors.js';
import type { Machine } from './machine.js';
import { alignUp, MAX_PHYS_BITS, PAGE_SIZE, type Page, type PhysAddr } from './types.js';

export type PhysRegionKind = 'ram' | 'pmem' | 'device';

export interface PhysRegion {
  readonly start: number;
  readonly size: number;
  readonly kind: PhysRegionKind;
  readonly name: string;
  /** The frames of this region have a `struct page`. */
  readonly hasPage: boolean;
}

export interface PhysMap {
  /** Sorted by start, non-overlapping. */
  regions: PhysRegion[];
  /** Where the next region above RAM may start. */
  cursor: number;
}

const MIN_REGION_ALIGN = 2 * 1024 * 1024;
const MAX_REGION_ALIGN = 1024 * 1024 * 1024;

/** Builds the map with RAM only. */
export function createPhysMap(ramBytes: number): PhysMap {
  return {
    regions: [{ start: 0, size: ramBytes, kind: 'ram', name: 'System RAM', hasPage: true }],
    cursor: alignUp(ramBytes, MIN_REGION_ALIGN),
  };
}

/**
 * Adds persistent or device memory above RAM, aligned to its size (at least
 * 2 MiB, at most 1 GiB), and returns it. Its bytes read as zeroes until
 * written.
 */
export function addPhysRegion(m: Machine, kind: 'pmem' | 'device', size: number, name: string): PhysRegion {
  if (!Number.isInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
    throw new DmalabError(`${kind} region '${name}' size must be a positive multiple of ${PAGE_SIZE}`, {
      field: 'size',
    });
  }
  const map = m.hw.phys;
  let align = MIN_REGION_ALIGN;
  while (align < size && align < MAX_REGION_ALIGN) align *= 2;
  const start = alignUp(map.cursor, align);
  if (start + size > 2 ** MAX_PHYS_BITS) {
    throw new DmalabError(`no room for ${kind} region '${name}' below 2^${MAX_PHYS_BITS}`, { field: 'size' });
  }
  const region: PhysRegion = {
    start,
    size,
    kind,
    name,
    hasPage: kind === 'pmem' && !m.options.pagelessSg,
  };
  map.regions.push(region);
  map.cursor = alignUp(start + size, MIN_REGION_ALIGN);
  return region;
}

/** The region wholly containing [pa, pa+len), or null (a hole, or a range crossing regions). */
export function physRegionFor(m: Machine, pa: number, len: number): PhysRegion | null {
  const regions = m.hw.phys.regions;
  // RAM is first and by far the most used.
  const ram = regions[0]!;
  if (pa >= 0 && pa + len <= ram.size) return ram;
  for (let i = 1; i < regions.length; i++) {
    const r = regions[i]!;
    if (pa >= r.start && pa + len <= r.start + r.size) return r;
  }
  return null;
}

/** `pfn_valid()`: the frame has a `struct page` in this machine. */
export function pfnValid(m: Machine, pfn: number): boolean {
  if (!Number.isInteger(pfn) || pfn <= 0) return false;
  const r = physRegionFor(m, pfn * PAGE_SIZE, PAGE_SIZE);
  return r?.hasPage ?? false;
}

/** `pfn_to_page()`: the page of a frame, or null where the machine has no struct page (and for frame 0). */
export function pfnToPage(m: Machine, pfn: number): Page | null {
  return pfnValid(m, pfn) ? (pfn as Page) : null;
}

/** `PHYS_PFN()` / `__phys_to_pfn()`. */
export function physToPfn(pa: PhysAddr | number): number {
  return Math.floor(pa / PAGE_SIZE);
}

/** True when the frame is RAM (`page_is_ram()`), with or without allocation. */
export function pfnIsRam(m: Machine, pfn: number): boolean {
  return pfn >= 0 && pfn * PAGE_SIZE < m.hw.phys.regions[0]!.size;
}

/** Total RAM in bytes. */
export function ramBytes(m: Machine): number {
  return m.hw.phys.regions[0]!.size;
}
