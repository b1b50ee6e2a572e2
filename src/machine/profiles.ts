/**
 * Architecture profiles (DESIGN.md §5): plain configuration naming the
 * behaviour that differs, so that no layer tests `arch === 'parisc'`. Layers
 * above read the policy fields (`dmaMaintenance`, `coherentAlloc`, …) and
 * dispatch to their own narrow hooks.
 */

import { DmalabError } from './errors.js';
import { isPowerOfTwo, PAGE_SIZE } from './types.js';

export type Coherence = 'snoop' | 'none' | 'ci';
export type MmapStrategy = 'remap' | 'fault' | 'congruent' | 'coherence-index' | 'refuse';

export interface CacheGeometry {
  /** Line size in bytes (`L1_CACHE_BYTES`). */
  readonly lineSize: number;
  /** Capacity in bytes. */
  readonly sizeBytes: number;
  readonly ways: number;
  /** PIPT: aliases always agree. VIPT: aliases agree only when congruent. */
  readonly indexing: 'pipt' | 'vipt';
  /** VIPT congruence modulus in bytes (`SHM_COLOUR` on parisc); PAGE_SIZE for PIPT. */
  readonly congruence: number;
}

export interface Profile {
  readonly name: string;
  readonly description: string;
  /** The kernel architecture the profile models. */
  readonly arch: 'x86' | 'arm64' | 'parisc';
  readonly cache: CacheGeometry;
  /** Uncached/WC CPU accesses snoop the caches (x86 does; arm64 and parisc do not). */
  readonly uncachedSnoops: boolean;
  /** Minimum kmalloc alignment when small kmalloc buffers are bounced for DMA (or always, when the arch has no bouncing). */
  readonly kmallocMinAlign: number;
  /** `ARCH_DMA_MINALIGN`, or 1 when the arch defines none (`dma_get_cache_alignment()`). */
  readonly archDmaMinalign: number;
  /** arm64 ≥ 6.5 bounces small kmalloc buffers for non-coherent DMA (`DMA_BOUNCE_UNALIGNED_KMALLOC`). */
  readonly kmallocBounce: boolean;
  /** How devices see the CPU caches unless `addDevice` says otherwise. */
  readonly deviceCoherence: Coherence;
  /** Devices sit behind an IOMMU unless `addDevice` says otherwise. */
  readonly iommuDefault: boolean;
  /** Which IOMMU DMA ops: the generic iommu-dma, or parisc's sba-style ops. */
  readonly iommuOps: 'iommu-dma' | 'sba';
  /** Every streaming mapping bounces through swiotlb (`swiotlb=force`). */
  readonly forceSwiotlb: boolean;
  /** `arch_sync_dma_for_device/_for_cpu` behaviour for non-coherent devices. */
  readonly dmaMaintenance: 'none' | 'arm64' | 'pcxl';
  /** How `dma_alloc_coherent` gives memory to a non-coherent device. */
  readonly coherentAlloc: 'cached' | 'remap-uncached' | 'pcxl-uncached';
  /** `ARCH_HAS_DMA_WRITE_COMBINE`: `DMA_ATTR_WRITE_COMBINE` honoured in `dma_pgprot`. */
  readonly writeCombine: boolean;
  /** Default `dma_mmap_coherent` strategy (seed 000). */
  readonly mmapStrategy: MmapStrategy;
  /** `CONFIG_DMA_NONCOHERENT_MMAP`. */
  readonly noncoherentMmap: boolean;
  /** Top of ZONE_DMA, in address bits (`zone_dma_limit`). */
  readonly zoneDmaBits: number;
  /** Top of ZONE_DMA32, in address bits. */
  readonly zoneDma32Bits: number;
  /** Speculative fills through cached mappings are explorer choice points. */
  readonly speculativeFills: boolean;
  /**
   * `ARCH_HAS_FLUSH_ON_KUNMAP` (parisc): `kunmap_local` flushes the kernel
   * alias of the page, so a page cleared through `kmap_local_page` (as
   * `__GFP_ZERO` does with `clear_highpage`) leaves no line in the cache.
   */
  readonly flushOnKunmap: boolean;
}

const PIPT_64: CacheGeometry = {
  lineSize: 64,
  sizeBytes: 1024 * 1024,
  ways: 16,
  indexing: 'pipt',
  congruence: PAGE_SIZE,
};

const PARISC_CACHE: CacheGeometry = {
  lineSize: 16,
  sizeBytes: 1024 * 1024,
  ways: 4,
  indexing: 'vipt',
  congruence: 4 * 1024 * 1024,
};

const x86: Profile = {
  name: 'x86_64',
  description: 'cache-coherent x86-64: snooping DMA, PIPT write-back caches, swiotlb only for small masks',
  arch: 'x86',
  cache: PIPT_64,
  uncachedSnoops: true,
  kmallocMinAlign: 8,
  archDmaMinalign: 1,
  kmallocBounce: false,
  deviceCoherence: 'snoop',
  iommuDefault: false,
  iommuOps: 'iommu-dma',
  forceSwiotlb: false,
  dmaMaintenance: 'none',
  coherentAlloc: 'cached',
  writeCombine: false,
  mmapStrategy: 'remap',
  noncoherentMmap: false,
  zoneDmaBits: 24,
  zoneDma32Bits: 32,
  speculativeFills: false,
  flushOnKunmap: false,
};

/** The profiles that ship with dmalab, by name. */
export const PROFILES: Readonly<Record<string, Profile>> = {
  x86_64: x86,
  'arm64-coherent': {
    ...x86,
    name: 'arm64-coherent',
    description: 'arm64 with coherent (snooping) DMA masters: PIPT caches, no cache maintenance',
    arch: 'arm64',
    uncachedSnoops: false,
    archDmaMinalign: 128,
    kmallocBounce: true,
    dmaMaintenance: 'arm64',
    coherentAlloc: 'remap-uncached',
    writeCombine: true,
    noncoherentMmap: true,
    zoneDmaBits: 32,
  },
  'arm64-noncoherent': {
    ...x86,
    name: 'arm64-noncoherent',
    description:
      'arm64 SoC with non-coherent DMA: clean on map, invalidate on sync-for-cpu, uncached coherent memory',
    arch: 'arm64',
    uncachedSnoops: false,
    archDmaMinalign: 128,
    kmallocBounce: true,
    deviceCoherence: 'none',
    dmaMaintenance: 'arm64',
    coherentAlloc: 'remap-uncached',
    writeCombine: true,
    noncoherentMmap: true,
    zoneDmaBits: 32,
    speculativeFills: true,
  },
  parisc: {
    ...x86,
    name: 'parisc',
    flushOnKunmap: true,
    description:
      'PA-RISC 2.0 with an sba-style IOMMU: VIPT caches (4 MiB congruence), DMA coherent with the kernel alias through the coherence index',
    arch: 'parisc',
    cache: PARISC_CACHE,
    uncachedSnoops: false,
    kmallocMinAlign: 16,
    archDmaMinalign: 16,
    deviceCoherence: 'ci',
    iommuDefault: true,
    iommuOps: 'sba',
    dmaMaintenance: 'pcxl',
    coherentAlloc: 'pcxl-uncached',
    mmapStrategy: 'refuse',
    zoneDmaBits: 32,
  },
  'parisc-pcxl': {
    ...x86,
    name: 'parisc-pcxl',
    flushOnKunmap: true,
    description:
      'PA-RISC 1.1 PA7100LC without IOMMU: VIPT caches, non-coherent DMA with flush/purge, uncached DMA window',
    arch: 'parisc',
    cache: PARISC_CACHE,
    uncachedSnoops: false,
    kmallocMinAlign: 16,
    archDmaMinalign: 16,
    deviceCoherence: 'none',
    dmaMaintenance: 'pcxl',
    coherentAlloc: 'pcxl-uncached',
    mmapStrategy: 'remap',
    zoneDmaBits: 32,
  },
  'swiotlb-force': {
    ...x86,
    name: 'swiotlb-force',
    description: 'x86-64 booted with swiotlb=force: every streaming mapping bounces',
    forceSwiotlb: true,
  },
};

/** Profile names in their canonical order (for matrices). */
export const PROFILE_NAMES: readonly string[] = Object.keys(PROFILES);

/** Resolves a profile name or checks a user-defined profile object. */
export function resolveProfile(p: string | Profile, field = 'profile'): Profile {
  if (typeof p === 'string') {
    const found = PROFILES[p];
    if (found === undefined) {
      throw new DmalabError(`unknown profile '${p}' (known: ${PROFILE_NAMES.join(', ')})`, { field });
    }
    return found;
  }
  validateProfile(p, field);
  return p;
}

function validateProfile(p: Profile, field: string): void {
  const bad = (what: string): never => {
    throw new DmalabError(what, { field });
  };
  if (typeof p !== 'object' || p === null) bad('a profile must be a name or an object');
  if (typeof p.name !== 'string' || p.name === '') bad('profile.name must be a non-empty string');
  const c = p.cache;
  if (typeof c !== 'object' || c === null) bad('profile.cache is required');
  if (!isPowerOfTwo(c.lineSize) || c.lineSize < 8 || c.lineSize > PAGE_SIZE)
    bad(`profile.cache.lineSize must be a power of two between 8 and ${PAGE_SIZE}`);
  if (!isPowerOfTwo(c.ways)) bad('profile.cache.ways must be a power of two');
  if (!isPowerOfTwo(c.sizeBytes) || c.sizeBytes < c.lineSize * c.ways)
    bad('profile.cache.sizeBytes must be a power of two holding at least one set');
  if (c.indexing !== 'pipt' && c.indexing !== 'vipt') bad("profile.cache.indexing must be 'pipt' or 'vipt'");
  if (c.indexing === 'pipt' && c.congruence !== PAGE_SIZE)
    bad(`profile.cache.congruence must be ${PAGE_SIZE} for a PIPT cache`);
  if (c.indexing === 'vipt') {
    const setSpan = c.sizeBytes / c.ways;
    if (!isPowerOfTwo(c.congruence) || c.congruence < PAGE_SIZE || c.congruence % setSpan !== 0)
      bad('profile.cache.congruence must be a power of two multiple of the set span (sizeBytes / ways)');
  }
  for (const k of ['kmallocMinAlign', 'archDmaMinalign'] as const) {
    if (!isPowerOfTwo(p[k])) bad(`profile.${k} must be a power of two`);
  }
  if (!['snoop', 'none', 'ci'].includes(p.deviceCoherence))
    bad("profile.deviceCoherence must be 'snoop', 'none' or 'ci'");
  if (!['none', 'arm64', 'pcxl'].includes(p.dmaMaintenance))
    bad("profile.dmaMaintenance must be 'none', 'arm64' or 'pcxl'");
  if (!['cached', 'remap-uncached', 'pcxl-uncached'].includes(p.coherentAlloc))
    bad("profile.coherentAlloc must be 'cached', 'remap-uncached' or 'pcxl-uncached'");
  if (!isMmapStrategy(p.mmapStrategy))
    bad(`profile.mmapStrategy must be one of ${MMAP_STRATEGIES.join(', ')}`);
  if (typeof p.flushOnKunmap !== 'boolean') bad('profile.flushOnKunmap must be a boolean');
  if (
    !Number.isInteger(p.zoneDmaBits) ||
    !Number.isInteger(p.zoneDma32Bits) ||
    p.zoneDmaBits > p.zoneDma32Bits
  )
    bad('profile.zoneDmaBits must be an integer not above profile.zoneDma32Bits');
}

export const MMAP_STRATEGIES: readonly MmapStrategy[] = [
  'remap',
  'fault',
  'congruent',
  'coherence-index',
  'refuse',
];

export function isMmapStrategy(s: unknown): s is MmapStrategy {
  return typeof s === 'string' && (MMAP_STRATEGIES as readonly string[]).includes(s);
}
