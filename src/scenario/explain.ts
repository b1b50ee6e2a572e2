/**
 * The executable semantics table behind `dmalab explain`: for each profile,
 * each DMA API call and direction (and the dma-buf calls that sync through
 * it: mapping an attachment, CPU access brackets on a system-heap buffer),
 * what the model does to the CPU caches,
 * which bounce copies it makes, which attributes it honours and what the
 * CPU (or user) mapping it hands out looks like.
 *
 * Nothing here is written by hand: every row runs its call on a fresh
 * machine of the profile and reads the events the lower layers emit. Before
 * a call the probe buffer's lines are made present and dirty through the
 * kernel alias, so that each kind of maintenance leaves its own trace:
 *
 * | events seen on the buffer | operation |
 * |---|---|
 * | write-backs (reason clean), lines kept | clean (arm64 `dc cvac`) |
 * | write-backs (reason flush), then lines dropped | flush: clean + invalidate (`dc civac`, PA-RISC `fdc`) |
 * | lines dropped with their dirty bytes | invalidate (`dc ivac`, PA-RISC `pdc` "purge") |
 */

import { createMachine } from '../boot.js';
import {
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_ATTR_WRITE_COMBINE,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
  type DmaDataDirection,
  dmaAllocAttrs,
  dmaAllocCoherent,
  dmaAllocNoncoherent,
  dmaDirName,
  dmaMapSg,
  dmaMapSingleAttrs,
  dmaMmapAttrs,
  dmaSyncSgForCpu,
  dmaSyncSgForDevice,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapSg,
  dmaUnmapSingleAttrs,
  formatDmaAttrs,
  getDmaOps,
} from '../dma/index.js';
import {
  type DmaBufAttachment,
  dmaBufAttach,
  dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess,
  dmaBufMapAttachmentUnlocked,
  dmaHeapBufferAlloc,
} from '../dmabuf/index.js';
import { createScatterlist, type Scatterlist, sgAt, sgInitTable, sgSetPage } from '../lib/index.js';
import {
  __freePages,
  addDevice,
  allocPages,
  cpuWrite,
  type Device,
  type DmaAddr,
  DmalabError,
  GFP_KERNEL,
  type Machine,
  type MachineEvent,
  type MemAttr,
  nthPage,
  PAGE_SIZE,
  PROFILE_NAMES,
  pageToPhys,
  physToVirt,
  resolveProfile,
} from '../machine/index.js';
import {
  kmalloc,
  MAP_SHARED,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  registerChrdev,
  spawnProcess,
  sysMmap,
  sysOpen,
  virtToPhys,
} from '../mm/index.js';

/** A cache maintenance operation as the events show it. */
export type CacheOpName = 'clean' | 'flush' | 'invalidate';

/** One operation on one range: the probe buffer itself, or its swiotlb bounce slot. */
export interface CacheOp {
  readonly op: CacheOpName;
  readonly on: 'buffer' | 'slot';
}

/** A bounce copy: into the swiotlb slot (towards the device) or back out of it. */
export type BounceCopy = 'to-slot' | 'from-slot';

/** One row of the semantics table. */
export interface SemanticsRow {
  readonly profile: string;
  /** The kernel function called. */
  readonly call: string;
  /** `DMA_TO_DEVICE`, … or null for calls without a direction. */
  readonly dir: string | null;
  /** The attributes passed (`formatDmaAttrs`), '' for none. */
  readonly attrs: string;
  /** Bytes mapped or allocated: a page-sized kmalloc buffer, or a small one (bounced on arm64 ≥ 6.5). */
  readonly size: number;
  /** Cache maintenance observed, in order. */
  readonly cache: readonly CacheOp[];
  /** Bounce copies observed, in order. */
  readonly bounce: readonly BounceCopy[];
  /** Attribute of the CPU view an allocation returns, or of the user mapping `dma_mmap_*` makes. */
  readonly mapping: MemAttr | null;
  /** What came back: the backend that mapped, `DMA_MAPPING_ERROR`, an errno, or the mmap strategy. */
  readonly result: string;
}

/** The calls `explainSemantics` probes, in table order. */
export const SEMANTICS_CALLS: readonly string[] = [
  'dma_map_single',
  'dma_sync_single_for_cpu',
  'dma_sync_single_for_device',
  'dma_unmap_single',
  'dma_map_single_attrs',
  'dma_unmap_single_attrs',
  'dma_map_sg',
  'dma_sync_sg_for_cpu',
  'dma_sync_sg_for_device',
  'dma_unmap_sg',
  'dma_alloc_coherent',
  'dma_alloc_attrs',
  'dma_alloc_noncoherent',
  'dma_mmap_coherent',
  'dma_mmap_attrs',
  'dma_buf_map_attachment',
  'dma_buf_begin_cpu_access',
  'dma_buf_end_cpu_access',
];

export interface ExplainOptions {
  /** Profiles to probe (default: every built-in profile). */
  readonly profiles?: readonly string[];
  /** Calls to probe, by kernel name (default: all of `SEMANTICS_CALLS`). */
  readonly calls?: readonly string[];
}

const DIRS: readonly DmaDataDirection[] = [DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL];
const SIZE = PAGE_SIZE;
/** A kmalloc size whose slab may share a cache line with a neighbour (`dma_kmalloc_needs_bounce`). */
const SMALL = 64;
const RAM = 64 * 1024 * 1024;

/** Records the events of interest while `fn` runs. */
function observe<T>(m: Machine, fn: () => T): { value: T; events: MachineEvent[] } {
  const events: MachineEvent[] = [];
  const offs = (
    [
      'cache-writeback',
      'cache-invalidate',
      'swiotlb-bounce',
      'swiotlb-map',
      'dma-map',
      'dma-alloc',
      'dma-mmap',
    ] as const
  ).map((t) => m.bus.on(t, (ev) => events.push({ ...ev } as MachineEvent)));
  try {
    return { value: fn(), events };
  } finally {
    for (const off of offs) off();
  }
}

/**
 * Names the maintenance in an event trace. Write-backs for capacity
 * evictions are the cache's own business and are left out.
 */
function cacheOps(events: readonly MachineEvent[], buf: number, len: number): CacheOp[] {
  const ops: CacheOp[] = [];
  const where = (pa: number): 'buffer' | 'slot' => (pa >= buf && pa < buf + len ? 'buffer' : 'slot');
  const push = (op: CacheOpName, on: 'buffer' | 'slot') => {
    const last = ops[ops.length - 1];
    if (last === undefined || last.op !== op || last.on !== on) ops.push({ op, on });
  };
  let flushed = false;
  for (const ev of events) {
    if (ev.type === 'cache-writeback') {
      if (ev.reason === 'clean') push('clean', where(ev.pa));
      else if (ev.reason === 'flush') flushed = true;
    } else if (ev.type === 'cache-invalidate') {
      push(ev.dirtyDiscarded > 0 || !flushed ? 'invalidate' : 'flush', where(ev.pa));
      flushed = false;
    }
  }
  return ops;
}

function bounces(events: readonly MachineEvent[]): BounceCopy[] {
  const out: BounceCopy[] = [];
  for (const ev of events) if (ev.type === 'swiotlb-bounce') out.push(ev.toDevice ? 'to-slot' : 'from-slot');
  return out;
}

interface Probe {
  m: Machine;
  dev: Device;
  /** Kernel address, physical address and size of a kmalloc buffer. */
  va: number;
  pa: number;
  size: number;
}

function probe(profile: string, size: number): Probe {
  const m = createMachine({ profile, ramBytes: RAM, check: false });
  const dev = addDevice(m, { name: 'probe' });
  const va = kmalloc(m, size, GFP_KERNEL);
  if (va === null) throw new DmalabError('explain: the probe buffer could not be allocated');
  return { m, dev, va, pa: virtToPhys(m, va), size };
}

/** Dirties every line of the buffer through the kernel alias, as a driver filling it would. */
function dirty(p: Probe): void {
  cpuWrite(p.m, p.pa, p.va, 'cached', new Uint8Array(p.size).fill(0x5a), 0, p.size);
}

function row(
  profile: string,
  call: string,
  dir: DmaDataDirection | null,
  attrs: number,
  events: readonly MachineEvent[],
  p: { pa: number; size: number },
  mapping: MemAttr | null,
  result: string,
): SemanticsRow {
  return {
    profile,
    call,
    dir: dir === null ? null : dmaDirName(dir),
    attrs: formatDmaAttrs(attrs),
    size: p.size,
    cache: cacheOps(events, p.pa, p.size),
    bounce: bounces(events),
    mapping,
    result,
  };
}

function mapResult(events: readonly MachineEvent[], addr: number): string {
  if (addr === DMA_MAPPING_ERROR) return 'DMA_MAPPING_ERROR';
  const map = events.find((e) => e.type === 'dma-map');
  const bounced = events.some((e) => e.type === 'swiotlb-map');
  const backend = map?.type === 'dma-map' ? map.backend : 'unknown';
  return bounced && backend !== 'swiotlb' ? `${backend} + swiotlb` : backend;
}

/** `dma_map_single_attrs` on a dirty buffer. */
function probeMap(
  profile: string,
  call: string,
  dir: DmaDataDirection,
  attrs: number,
  size = SIZE,
): SemanticsRow {
  const p = probe(profile, size);
  dirty(p);
  const r = observe(p.m, () => dmaMapSingleAttrs(p.dev, p.va, size, dir, attrs));
  return row(profile, call, dir, attrs, r.events, p, null, mapResult(r.events, r.value));
}

/** A call made on a live mapping whose buffer the CPU has dirtied since. */
function probeOnMapping(
  profile: string,
  call: string,
  dir: DmaDataDirection,
  attrs: number,
  fn: (dev: Device, addr: DmaAddr, size: number) => void,
  size = SIZE,
): SemanticsRow {
  const p = probe(profile, size);
  const addr = dmaMapSingleAttrs(p.dev, p.va, size, dir, 0);
  dirty(p);
  const r = observe(p.m, () => fn(p.dev, addr, size));
  return row(
    profile,
    call,
    dir,
    attrs,
    r.events,
    p,
    null,
    addr === DMA_MAPPING_ERROR ? 'DMA_MAPPING_ERROR' : 'ok',
  );
}

/** Two page entries over one physically contiguous block: whether the backend merges them shows. */
function sgProbe(profile: string): { p: Probe; sg: Scatterlist } {
  const m = createMachine({ profile, ramBytes: RAM, check: false });
  const dev = addDevice(m, { name: 'probe' });
  const page = allocPages(m, GFP_KERNEL, 1);
  if (page === null) throw new DmalabError('explain: the probe pages could not be allocated');
  const sg = createScatterlist(2);
  sgInitTable(sg, 2);
  sgSetPage(sgAt(sg, 0), page, PAGE_SIZE, 0);
  sgSetPage(sgAt(sg, 1), nthPage(page, 1), PAGE_SIZE, 0);
  const pa = pageToPhys(page);
  return { p: { m, dev, va: physToVirt(pa), pa, size: 2 * PAGE_SIZE }, sg };
}

/** `dma_map_sg` of a dirty two-entry list: maintenance, bounces, and the segments it became. */
function probeMapSg(profile: string, call: string, dir: DmaDataDirection): SemanticsRow {
  const { p, sg } = sgProbe(profile);
  dirty(p);
  const r = observe(p.m, () => dmaMapSg(p.dev, sg, 2, dir));
  const result =
    r.value === 0
      ? 'failed'
      : `${getDmaOps(p.dev).name}: 2 entries → ${r.value} segment${r.value === 1 ? '' : 's'}`;
  return row(profile, call, dir, 0, r.events, p, null, result);
}

/** `dma_unmap_sg` of a mapped list whose pages the CPU dirtied since. */
function probeUnmapSg(profile: string, call: string, dir: DmaDataDirection): SemanticsRow {
  const { p, sg } = sgProbe(profile);
  const n = dmaMapSg(p.dev, sg, 2, dir);
  dirty(p);
  const r = observe(p.m, () => dmaUnmapSg(p.dev, sg, 2, dir));
  return row(profile, call, dir, 0, r.events, p, null, n === 0 ? 'failed' : 'ok');
}

/** `dma_sync_sg_for_cpu/_for_device` on a mapped list whose pages the CPU dirtied since. */
function probeSyncSg(profile: string, call: string, dir: DmaDataDirection, forCpu: boolean): SemanticsRow {
  const { p, sg } = sgProbe(profile);
  const n = dmaMapSg(p.dev, sg, 2, dir);
  dirty(p);
  const r = observe(p.m, () => (forCpu ? dmaSyncSgForCpu : dmaSyncSgForDevice)(p.dev, sg, 2, dir));
  return row(profile, call, dir, 0, r.events, p, null, n === 0 ? 'failed' : 'ok');
}

/**
 * A one-page system-heap dma-buf with the probe device attached (static
 * importer), as user space gets it from DMA_HEAP_IOCTL_ALLOC.
 */
function heapProbe(profile: string): { p: Probe; at: DmaBufAttachment } {
  const m = createMachine({ profile, ramBytes: RAM, check: false });
  const dev = addDevice(m, { name: 'probe' });
  // Where the exporter put the bytes, as it announces them (not from its private data).
  let pa = -1;
  const off = m.bus.on('dmabuf-export', (ev) => {
    pa = ev.backing[0] ?? -1;
  });
  const db = dmaHeapBufferAlloc(m, 'system', SIZE, O_RDWR, 0);
  off();
  if (typeof db === 'number')
    throw new DmalabError(`explain: the system heap refused the probe buffer (${db})`);
  if (pa < 0) throw new DmalabError('explain: the system heap announced no backing for the probe buffer');
  const at = dmaBufAttach(db, dev);
  if (typeof at === 'number') throw new DmalabError(`explain: the probe device could not attach (${at})`);
  return { p: { m, dev, va: physToVirt(pa), pa, size: SIZE }, at };
}

/** `dma_buf_map_attachment` of a system-heap buffer the CPU has dirtied (the exporter's `dma_map_sgtable`). */
function probeDmaBufMap(profile: string, call: string, dir: DmaDataDirection): SemanticsRow {
  const { p, at } = heapProbe(profile);
  dirty(p);
  const r = observe(p.m, () => dmaBufMapAttachmentUnlocked(at, dir));
  const bounced = r.events.some((e) => e.type === 'swiotlb-map');
  const backend = getDmaOps(p.dev).name;
  const result =
    typeof r.value === 'number' ? errnoName(r.value) : `ok (${bounced ? `${backend} + swiotlb` : backend})`;
  return row(profile, call, dir, 0, r.events, p, null, result);
}

/**
 * `dma_buf_begin/end_cpu_access(dir)` on a system-heap buffer mapped
 * DMA_BIDIRECTIONAL for the probe device, after CPU stores: the heap syncs
 * each mapped attachment's table for the CPU or for its device in `dir`.
 */
function probeCpuAccess(profile: string, call: string, dir: DmaDataDirection, begin: boolean): SemanticsRow {
  const { p, at } = heapProbe(profile);
  const sgt = dmaBufMapAttachmentUnlocked(at, DMA_BIDIRECTIONAL);
  dirty(p);
  const r = observe(p.m, () => (begin ? dmaBufBeginCpuAccess : dmaBufEndCpuAccess)(at.dmabuf, dir));
  const result =
    typeof sgt === 'number' ? `map: ${errnoName(sgt)}` : r.value === 0 ? 'ok' : errnoName(r.value);
  return row(profile, call, dir, 0, r.events, p, null, result);
}

/**
 * An allocation. The page it will get is first taken, dirtied and given
 * back, so that maintenance on it (`arch_dma_prep_coherent`) is visible: the
 * buddy allocator hands the most recently freed page out first.
 */
function probeAlloc(
  profile: string,
  call: string,
  dir: DmaDataDirection | null,
  attrs: number,
  fn: (dev: Device) => { cpuAddr: number } | null,
): SemanticsRow {
  const m = createMachine({ profile, ramBytes: RAM, check: false });
  const dev = addDevice(m, { name: 'probe' });
  dirtyFreedPage(m);
  const r = observe(m, () => fn(dev));
  const alloc = r.events.find((e) => e.type === 'dma-alloc');
  const mapping = alloc?.type === 'dma-alloc' && r.value !== null ? alloc.cpuAttr : null;
  const pa = alloc?.type === 'dma-alloc' ? alloc.phys : -1;
  return row(
    profile,
    call,
    dir,
    attrs,
    r.events,
    { pa, size: SIZE },
    mapping,
    r.value === null ? 'NULL' : 'ok',
  );
}

/** Takes a page, dirties it through the kernel alias and frees it again. */
function dirtyFreedPage(m: Machine): void {
  const page = allocPages(m, GFP_KERNEL, 0);
  if (page === null) throw new DmalabError('explain: no scratch page');
  const pa = pageToPhys(page);
  cpuWrite(m, pa, physToVirt(pa), 'cached', new Uint8Array(SIZE).fill(0xa5), 0, SIZE);
  __freePages(m, page, 0);
}

/** `dma_mmap_attrs` of a coherent allocation into a process that then touches it. */
function probeMmap(profile: string, call: string, attrs: number): SemanticsRow {
  const m = createMachine({ profile, ramBytes: RAM, check: false });
  const dev = addDevice(m, { name: 'probe' });
  const buf = dmaAllocAttrs(dev, SIZE, GFP_KERNEL, attrs);
  if (buf === null)
    return row(profile, call, null, attrs, [], { pa: -1, size: SIZE }, null, 'no coherent memory');
  registerChrdev(m, '/dev/probe', {
    mmap: (_file, vma) => dmaMmapAttrs(dev, vma, buf.cpuAddr, buf.dmaHandle, SIZE, attrs),
  });
  const proc = spawnProcess(m, 'probe');
  const fd = sysOpen(proc, '/dev/probe');
  const r = observe(m, () => sysMmap(proc, 0, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  const ev = r.events.find((e) => e.type === 'dma-mmap');
  if (ev?.type !== 'dma-mmap')
    return row(profile, call, null, attrs, r.events, { pa: -1, size: SIZE }, null, 'not called');
  const result = ev.ret === 0 ? `ok (${ev.strategy})` : `${errnoName(ev.ret)} (${ev.strategy})`;
  return row(
    profile,
    call,
    null,
    attrs,
    r.events,
    { pa: -1, size: SIZE },
    ev.ret === 0 ? ev.attr : null,
    result,
  );
}

function errnoName(ret: number): string {
  const names: Record<number, string> = { [-6]: '-ENXIO', [-22]: '-EINVAL', [-12]: '-ENOMEM' };
  return names[ret] ?? String(ret);
}

function probeCall(profile: string, call: string): SemanticsRow[] {
  switch (call) {
    case 'dma_map_single':
      return [
        ...DIRS.map((d) => probeMap(profile, call, d, 0)),
        ...DIRS.map((d) => probeMap(profile, call, d, 0, SMALL)),
      ];
    case 'dma_map_single_attrs':
      return [
        ...DIRS.map((d) => probeMap(profile, call, d, DMA_ATTR_SKIP_CPU_SYNC)),
        probeMap(profile, call, DMA_BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT),
      ];
    case 'dma_sync_single_for_cpu':
      return DIRS.map((d) =>
        probeOnMapping(profile, call, d, 0, (dev, a, n) => dmaSyncSingleForCpu(dev, a, n, d)),
      );
    case 'dma_sync_single_for_device':
      return DIRS.map((d) =>
        probeOnMapping(profile, call, d, 0, (dev, a, n) => dmaSyncSingleForDevice(dev, a, n, d)),
      );
    case 'dma_unmap_single': {
      const unmap = (size: number) => (d: DmaDataDirection) =>
        probeOnMapping(profile, call, d, 0, (dev, a, n) => dmaUnmapSingleAttrs(dev, a, n, d, 0), size);
      return [...DIRS.map(unmap(SIZE)), ...DIRS.map(unmap(SMALL))];
    }
    case 'dma_unmap_single_attrs':
      return DIRS.map((d) =>
        probeOnMapping(profile, call, d, DMA_ATTR_SKIP_CPU_SYNC, (dev, a, n) =>
          dmaUnmapSingleAttrs(dev, a, n, d, DMA_ATTR_SKIP_CPU_SYNC),
        ),
      );
    case 'dma_map_sg':
      return DIRS.map((d) => probeMapSg(profile, call, d));
    case 'dma_sync_sg_for_cpu':
      return DIRS.map((d) => probeSyncSg(profile, call, d, true));
    case 'dma_sync_sg_for_device':
      return DIRS.map((d) => probeSyncSg(profile, call, d, false));
    case 'dma_unmap_sg':
      return DIRS.map((d) => probeUnmapSg(profile, call, d));
    case 'dma_alloc_coherent':
      return [probeAlloc(profile, call, null, 0, (dev) => dmaAllocCoherent(dev, SIZE, GFP_KERNEL))];
    case 'dma_alloc_attrs':
      return [
        probeAlloc(profile, call, null, DMA_ATTR_WRITE_COMBINE, (dev) =>
          dmaAllocAttrs(dev, SIZE, GFP_KERNEL, DMA_ATTR_WRITE_COMBINE),
        ),
      ];
    case 'dma_alloc_noncoherent':
      return DIRS.map((d) =>
        probeAlloc(profile, call, d, 0, (dev) => dmaAllocNoncoherent(dev, SIZE, d, GFP_KERNEL)),
      );
    case 'dma_mmap_coherent':
      return [probeMmap(profile, call, 0)];
    case 'dma_mmap_attrs':
      return [probeMmap(profile, call, DMA_ATTR_WRITE_COMBINE)];
    case 'dma_buf_map_attachment':
      return DIRS.map((d) => probeDmaBufMap(profile, call, d));
    case 'dma_buf_begin_cpu_access':
      return DIRS.map((d) => probeCpuAccess(profile, call, d, true));
    case 'dma_buf_end_cpu_access':
      return DIRS.map((d) => probeCpuAccess(profile, call, d, false));
    default:
      throw new DmalabError(`explain: unknown call '${call}' (known: ${SEMANTICS_CALLS.join(', ')})`, {
        field: 'call',
      });
  }
}

/**
 * Runs each probed call on a fresh machine of each profile and reports,
 * from the events, the cache maintenance (`arch_sync_dma_for_device`,
 * `arch_sync_dma_for_cpu`, `arch_dma_prep_coherent`), the swiotlb bounce
 * copies (`swiotlb_bounce`), the attributes honoured and the mapping
 * attribute given out (`dma_pgprot`). A dmalab extension: the kernel has
 * no such table; its reference digest (§5a) is what the tests compare with.
 */
export function explainSemantics(opts: ExplainOptions = {}): SemanticsRow[] {
  const profiles = opts.profiles ?? PROFILE_NAMES;
  const calls = opts.calls ?? SEMANTICS_CALLS;
  for (const p of profiles) resolveProfile(p);
  const rows: SemanticsRow[] = [];
  for (const profile of profiles) for (const call of calls) rows.push(...probeCall(profile, call));
  return rows;
}
