/**
 * IOMMUs: per-domain IOVA page tables with read/write permission, and
 * translation for device accesses. A translation that finds no entry, or an
 * entry without the needed permission, is a fault: an event, a finding and
 * an access result, never a host exception.
 *
 * Each entry may carry a coherence index (PA-RISC's `lci` result written into
 * the I/O PDIR entry): the virtual page index of the CPU alias the DMA must
 * stay coherent with. A device of coherence `'ci'` snoops only the cache
 * lines of that alias.
 */

import { EEXIST, EINVAL } from './errors.js';
import type { Gfp } from './gfp.js';
import type { Machine } from './machine.js';
import { PAGE_SIZE, type PhysAddr } from './types.js';

/** Permission and attribute bits of `iommu_map` (include/linux/iommu.h). */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
export const IOMMU_MMIO = 1 << 4;
export const IOMMU_PRIV = 1 << 5;

/** IOVA space of every domain: 48 bits, as the common 4-level page tables. */
export const IOMMU_APERTURE_BITS = 48;
const SECTION = 512;

export interface IommuSection {
  /** Physical frame per IOVA page; -1 when unmapped. */
  pfn: Float64Array;
  prot: Uint8Array;
  /** Coherence index (virtual page index modulo the congruence), -1 when none. */
  ci: Int32Array;
}

export interface IommuDomainState {
  readonly id: number;
  readonly name: string;
  sections: Map<number, IommuSection>;
  mappedPages: number;
}

export interface IommuState {
  domains: IommuDomainState[];
}

/** `struct iommu_domain *`: a handle carrying its machine. */
export class IommuDomain {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get name(): string {
    return this.machine.hw.iommu.domains[this.id]!.name;
  }
}

export function initIommu(m: Machine): void {
  m.hw.iommu = { domains: [] };
}

/** `iommu_paging_domain_alloc()`: a new, empty translation domain. */
export function iommuDomainAlloc(m: Machine, name: string): IommuDomain {
  const id = m.hw.iommu.domains.length;
  m.hw.iommu.domains.push({ id, name, sections: new Map(), mappedPages: 0 });
  return new IommuDomain(m, id);
}

function sectionFor(d: IommuDomainState, iovaPfn: number, create: boolean): IommuSection | undefined {
  const si = Math.floor(iovaPfn / SECTION);
  let s = d.sections.get(si);
  if (s === undefined && create) {
    s = {
      pfn: new Float64Array(SECTION).fill(-1),
      prot: new Uint8Array(SECTION),
      ci: new Int32Array(SECTION).fill(-1),
    };
    d.sections.set(si, s);
  }
  return s;
}

function validRange(iova: number, paddr: number, size: number): boolean {
  return (
    Number.isInteger(iova) &&
    Number.isInteger(size) &&
    size > 0 &&
    iova % PAGE_SIZE === 0 &&
    paddr % PAGE_SIZE === 0 &&
    size % PAGE_SIZE === 0 &&
    iova + size <= 2 ** IOMMU_APERTURE_BITS
  );
}

/**
 * `iommu_map()`: maps [iova, iova+size) to [paddr, …) with `prot`. Ranges
 * must be page aligned (-EINVAL); an already mapped page is -EEXIST and
 * nothing is mapped. `vba`, a dmalab extension, is the CPU virtual address
 * whose coherence index the entries carry (PA-RISC), or -1.
 */
export function iommuMap(
  domain: IommuDomain,
  iova: number,
  paddr: PhysAddr | number,
  size: number,
  prot: number,
  _gfp: Gfp = 0,
  vba = -1,
): number {
  const m = domain.machine;
  const d = m.hw.iommu.domains[domain.id]!;
  if (!validRange(iova, paddr, size)) return -EINVAL;
  const first = iova / PAGE_SIZE;
  const n = size / PAGE_SIZE;
  for (let k = 0; k < n; k++) {
    const s = sectionFor(d, first + k, false);
    if (s !== undefined && s.pfn[(first + k) % SECTION]! >= 0) return -EEXIST;
  }
  const colours = m.hw.cache.colours;
  for (let k = 0; k < n; k++) {
    const p = first + k;
    const s = sectionFor(d, p, true)!;
    s.pfn[p % SECTION] = paddr / PAGE_SIZE + k;
    s.prot[p % SECTION] = prot;
    s.ci[p % SECTION] = vba < 0 ? -1 : (Math.floor(vba / PAGE_SIZE) + k) % colours;
  }
  d.mappedPages += n;
  if (m.bus.wants['iommu-map']) {
    m.bus.emit({ type: 'iommu-map', domain: domain.id, iova, pa: paddr, size, prot, ci: vba });
  }
  return 0;
}

/** `iommu_unmap()`: unmaps the range and returns the bytes that were mapped. */
export function iommuUnmap(domain: IommuDomain, iova: number, size: number): number {
  const m = domain.machine;
  const d = m.hw.iommu.domains[domain.id]!;
  if (!validRange(iova, 0, size)) return 0;
  const first = iova / PAGE_SIZE;
  let unmapped = 0;
  for (let k = 0; k < size / PAGE_SIZE; k++) {
    const p = first + k;
    const s = sectionFor(d, p, false);
    if (s === undefined || s.pfn[p % SECTION]! < 0) continue;
    s.pfn[p % SECTION] = -1;
    s.prot[p % SECTION] = 0;
    s.ci[p % SECTION] = -1;
    unmapped += PAGE_SIZE;
  }
  d.mappedPages -= unmapped / PAGE_SIZE;
  if (unmapped > 0 && m.bus.wants['iommu-unmap']) {
    m.bus.emit({ type: 'iommu-unmap', domain: domain.id, iova, size });
  }
  return unmapped;
}

/** `iommu_iova_to_phys()`: the physical address behind an IOVA, 0 when unmapped. */
export function iommuIovaToPhys(domain: IommuDomain, iova: number): PhysAddr {
  const d = domain.machine.hw.iommu.domains[domain.id]!;
  const p = Math.floor(iova / PAGE_SIZE);
  const s = sectionFor(d, p, false);
  const pfn = s?.pfn[p % SECTION] ?? -1;
  return (pfn < 0 ? 0 : pfn * PAGE_SIZE + (iova % PAGE_SIZE)) as PhysAddr;
}

/** Permission bits of the entry for an IOVA (0 when unmapped). */
export function iommuIovaProt(domain: IommuDomain, iova: number): number {
  const d = domain.machine.hw.iommu.domains[domain.id]!;
  const p = Math.floor(iova / PAGE_SIZE);
  return sectionFor(d, p, false)?.prot[p % SECTION] ?? 0;
}

/**
 * The coherence index of the entry for an IOVA, as the virtual page index
 * it names (modulo the congruence), or -1.
 */
export function iommuCoherenceIndex(domain: IommuDomain, iova: number): number {
  const d = domain.machine.hw.iommu.domains[domain.id]!;
  const p = Math.floor(iova / PAGE_SIZE);
  return sectionFor(d, p, false)?.ci[p % SECTION] ?? -1;
}

/**
 * Reprograms the coherence index of mapped entries to name the alias at
 * `vba` (seed 000's strategy d: make DMA coherent with the user's mapping).
 * Returns the number of pages updated.
 */
export function iommuSetCoherenceIndex(domain: IommuDomain, iova: number, size: number, vba: number): number {
  const m = domain.machine;
  const d = m.hw.iommu.domains[domain.id]!;
  const colours = m.hw.cache.colours;
  const first = Math.floor(iova / PAGE_SIZE);
  let n = 0;
  for (let k = 0; k < Math.ceil(size / PAGE_SIZE); k++) {
    const p = first + k;
    const s = sectionFor(d, p, false);
    if (s === undefined || s.pfn[p % SECTION]! < 0) continue;
    s.ci[p % SECTION] = vba < 0 ? -1 : (Math.floor(vba / PAGE_SIZE) + k) % colours;
    n++;
  }
  return n;
}

/** Outcome of one page's translation, written into a reusable object. */
export interface Translation {
  pa: number;
  /** Coherence index of the entry, -1 when none. */
  ci: number;
  fault: 'none' | 'unmapped' | 'permission';
}

/** Translates one IOVA for a device access (internal to the device model). */
export function iommuTranslate(
  m: Machine,
  domainId: number,
  iova: number,
  write: boolean,
  out: Translation,
): void {
  const d = m.hw.iommu.domains[domainId]!;
  const p = Math.floor(iova / PAGE_SIZE);
  const s = d.sections.get(Math.floor(p / SECTION));
  const pfn = s === undefined ? -1 : s.pfn[p % SECTION]!;
  if (pfn < 0) {
    out.fault = 'unmapped';
    return;
  }
  const prot = s!.prot[p % SECTION]!;
  if ((prot & (write ? IOMMU_WRITE : IOMMU_READ)) === 0) {
    out.fault = 'permission';
    return;
  }
  out.fault = 'none';
  out.pa = pfn * PAGE_SIZE + (iova % PAGE_SIZE);
  out.ci = s!.ci[p % SECTION]!;
}

/** Pages mapped in a domain (for tests and leak reports). */
export function iommuMappedPages(domain: IommuDomain): number {
  return domain.machine.hw.iommu.domains[domain.id]!.mappedPages;
}
