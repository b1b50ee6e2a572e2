/**
 * The event catalogue and the synchronous event bus (API.md §4).
 *
 * Every layer reports what it does as typed events; the checker, trace
 * exporters and the visualizer consume them. The bus lives outside the
 * snapshotted state and costs one boolean test per emission site when nobody
 * listens (`bus.wants[type]`). Events describe ranges, never one cache line
 * at a time, except a capacity eviction, which is one line by nature.
 *
 * Byte payloads (`data`) are views that stay valid only during the listener
 * call: copy them to keep them.
 *
 * | type | emitted by | meaning |
 * |---|---|---|
 * | cpu-access | machine/cpu | a CPU load or store at a physical address with an attribute, through an address space (`mm`) |
 * | device-access | machine/device | a device DMA read or write, per physically contiguous piece |
 * | cache-fill | machine/cache | lines filled from memory (speculative fills flagged) |
 * | cache-writeback | machine/cache | dirty lines written to memory (eviction, clean, flush) |
 * | cache-invalidate | machine/cache | lines discarded (dirty bytes discarded are counted) |
 * | iommu-map / iommu-unmap | machine/iommu | IOVA range mapped or unmapped in a domain |
 * | iommu-fault | machine/iommu | translation failed for a device access |
 * | page-alloc / page-free | machine/pagealloc | a block of frames handed out or returned |
 * | job-submit / job-complete | machine/engine | device engine work queued and finished |
 * | job-start | machine/engine | a job's data starts to move (its device accesses follow) |
 * | time | machine/engine | model time moved |
 * | finding | machine/findings | a finding was recorded |
 * | swiotlb-map / swiotlb-unmap | dma/swiotlb | a bounce slot run taken for an original, or released |
 * | swiotlb-bounce | dma/swiotlb | bytes copied between an original and its slot |
 * | dma-map / dma-unmap | dma/api | a streaming mapping made (or failed) / torn down |
 * | dma-sync | dma/api | a sync for the CPU or for the device |
 * | dma-map-sg / dma-unmap-sg / dma-sync-sg | dma/api | the scatter-gather forms, with every entry |
 * | dma-mapping-error | dma/api | the driver checked a DMA address with dma_mapping_error |
 * | dma-alloc / dma-free | dma/api | coherent, non-coherent, page and non-contiguous allocations |
 * | pte-install / pte-remove | mm | a run of PTEs written or cleared (user or kernel), with attribute and frames |
 * | page-fault | mm | a fault went through the fault path (user access, uaccess, GUP), with its vm_fault_t |
 * | vma-map / vma-unmap | mm | a VMA created (mmap, split) or removed (munmap, exit, split) |
 * | signal | mm | a process got SIGSEGV, SIGBUS or SIGKILL from a fault |
 * | page-pin / page-unpin | mm | frames pinned by pin_user_pages (FOLL_PIN) and released |
 * | kmem-alloc / kmem-free | mm | kmalloc, vmalloc, vmap, ioremap and stack buffers handed out and returned |
 * | process | mm | a process spawned or exited |
 * | driver-bind / driver-unbind | mm | the driver core bound a driver to a device (probe) or unbound it |
 * | fence-init | dmabuf/fence | a dma_fence initialised (containers list their components) |
 * | fence-signal | dmabuf/fence | a dma_fence signalled, by a CPU agent or a device's job |
 * | fence-wait | dmabuf/fence | an agent waited on or tested a fence, and whether it saw it signalled |
 * | fence-callback | dmabuf/fence | a callback registered on a fence ran |
 * | fence-release | dmabuf/fence | a fence's last reference dropped: its id is never seen again |
 * | resv-add | dmabuf/resv | a fence added to a reservation object with a usage class |
 * | sched-push / sched-run | dmabuf/sched | a fence-gated device job queued by an agent / handed to the engine |
 * | dmabuf-export / dmabuf-release | dmabuf | a dma-buf created (with the physical pieces backing it) / freed at its last reference |
 * | dmabuf-backing | dmabuf | the exporter moved the buffer: its new physical pieces |
 * | dmabuf-attach / dmabuf-detach | dmabuf | an importing device attached (static or dynamic) / detached |
 * | dmabuf-map / dmabuf-unmap | dmabuf | an attachment mapped for its device (with the table's CPU pieces and DMA segments) / unmapped |
 * | dmabuf-pin | dmabuf | an attachment pinned or unpinned the buffer |
 * | dmabuf-move-notify | dmabuf | the exporter told dynamic importers that their mappings are going stale |
 * | dmabuf-cpu-access | dmabuf | begin/end of a CPU access bracket (dma_buf_begin/end_cpu_access, DMA_BUF_IOCTL_SYNC) |
 * | dmabuf-mmap / dmabuf-vmap | dmabuf | a user mapping of the buffer made; a kernel mapping made or dropped |
 * | bo-init / bo-move / bo-destroy | bo | a buffer object created (with its fake offset), its backing changed, its memory released |
 */

import { DmalabError } from './errors.js';
import type { MemAttr } from './types.js';

interface EventBase {
  /** The machine's step when the event was emitted. */
  step: number;
  /** Model time in nanoseconds. */
  time: number;
}

export interface CpuAccessEvent extends EventBase {
  type: 'cpu-access';
  write: boolean;
  pa: number;
  va: number;
  len: number;
  attr: MemAttr;
  /** Who accessed: `kernel`, a process name, or an internal copier such as `swiotlb`. */
  agent: string;
  /**
   * Address space the access went through: 0 for the kernel's (linear map,
   * vmalloc, ioremap, internal copiers such as swiotlb), else the owning
   * process's pid (its own loads and stores, and copy_to/from_user on its
   * behalf). Names repeat across processes; this does not.
   */
  mm: number;
  /** The bytes read or written (a view valid during the call). */
  data: Uint8Array;
}

export interface DeviceAccessEvent extends EventBase {
  type: 'device-access';
  device: string;
  write: boolean;
  /** Bus address of this piece. */
  bus: number;
  /** Physical address it reached. */
  pa: number;
  len: number;
  /** How the device saw the CPU caches: snooped all lines, none, or one colour (PA-RISC ci). */
  coherence: 'snoop' | 'none' | 'ci';
  /** The colour the device was coherent with (ci devices), else -1. */
  colour: number;
  data: Uint8Array;
}

export interface CacheFillEvent extends EventBase {
  type: 'cache-fill';
  pa: number;
  colour: number;
  len: number;
  speculative: boolean;
}

export interface CacheWritebackEvent extends EventBase {
  type: 'cache-writeback';
  pa: number;
  colour: number;
  /** Bytes written back (whole lines). */
  len: number;
  reason: 'evict' | 'clean' | 'flush' | 'spontaneous' | 'snoop';
  /** The bytes written (a view valid during the call); one line for evictions. */
  data: Uint8Array | null;
}

export interface CacheInvalidateEvent extends EventBase {
  type: 'cache-invalidate';
  pa: number;
  len: number;
  /** Colour whose lines were targeted, or -1 for all aliases. */
  colour: number;
  /** Lines discarded. */
  lines: number;
  /** Dirty lines whose bytes were discarded without write-back. */
  dirtyDiscarded: number;
}

export interface IommuMapEvent extends EventBase {
  type: 'iommu-map';
  domain: number;
  iova: number;
  pa: number;
  size: number;
  prot: number;
  ci: number;
}

export interface IommuUnmapEvent extends EventBase {
  type: 'iommu-unmap';
  domain: number;
  iova: number;
  size: number;
}

export interface IommuFaultEvent extends EventBase {
  type: 'iommu-fault';
  device: string;
  domain: number;
  iova: number;
  write: boolean;
  reason: 'unmapped' | 'permission';
}

export interface PageAllocEvent extends EventBase {
  type: 'page-alloc';
  pfn: number;
  order: number;
  zone: string;
}

export interface PageFreeEvent extends EventBase {
  type: 'page-free';
  pfn: number;
  order: number;
}

export interface JobSubmitEvent extends EventBase {
  type: 'job-submit';
  device: string;
  job: number;
  kind: string;
  start: number;
  due: number;
}

export interface JobCompleteEvent extends EventBase {
  type: 'job-complete';
  device: string;
  job: number;
  kind: string;
  ok: boolean;
}

export interface JobStartEvent extends EventBase {
  type: 'job-start';
  device: string;
  job: number;
}

export interface TimeEvent extends EventBase {
  type: 'time';
  from: number;
  to: number;
}

export interface PteInstallEvent extends EventBase {
  type: 'pte-install';
  /** Address space: 0 for the kernel's, else the owning process's pid. */
  mm: number;
  /** Process name, or `kernel`. */
  owner: string;
  /** First virtual address of the run. */
  va: number;
  /** First frame of the run (frames ascend by one with the addresses). */
  pfn: number;
  pages: number;
  attr: MemAttr;
  write: boolean;
  /** Special (pfnmap) PTEs: no page reference is held through them. */
  special: boolean;
  /** `fault`, `cow`, `remap`, `insert`, `vmalloc`, `vmap`, `ioremap` or `stack`. */
  reason: string;
}

export interface PteRemoveEvent extends EventBase {
  type: 'pte-remove';
  mm: number;
  owner: string;
  va: number;
  pfn: number;
  pages: number;
  attr: MemAttr;
  special: boolean;
  /** `munmap`, `exit`, `zap`, `unmap-mapping`, `cow`, `mmap-failed`, `vunmap` or `iounmap`. */
  reason: string;
}

export interface PageFaultEvent extends EventBase {
  type: 'page-fault';
  pid: number;
  owner: string;
  va: number;
  write: boolean;
  /** `user` (the process's own access), `uaccess` (copy_to/from_user), `gup` or `populate`. */
  context: 'user' | 'uaccess' | 'gup' | 'populate';
  /** The fault path's `vm_fault_t` (0 when a page was installed). */
  result: number;
}

export interface VmaMapEvent extends EventBase {
  type: 'vma-map';
  pid: number;
  owner: string;
  start: number;
  end: number;
  flags: number;
  pgoff: number;
  /** Path of the mapped file, null for anonymous memory. */
  file: string | null;
  reason: 'mmap' | 'split';
}

export interface VmaUnmapEvent extends EventBase {
  type: 'vma-unmap';
  pid: number;
  owner: string;
  start: number;
  end: number;
  reason: 'munmap' | 'exit' | 'split' | 'mmap-failed';
}

export interface SignalEvent extends EventBase {
  type: 'signal';
  pid: number;
  owner: string;
  signal: 'SIGSEGV' | 'SIGBUS' | 'SIGKILL';
  /** The faulting address. */
  va: number;
  /** `SEGV_MAPERR`, `SEGV_ACCERR`, `BUS_ADRERR`, `BUS_OBJERR` or `OOM`. */
  code: string;
}

export interface PagePinEvent extends EventBase {
  type: 'page-pin';
  pid: number;
  owner: string;
  pfn: number;
  pages: number;
  longterm: boolean;
  write: boolean;
}

export interface PageUnpinEvent extends EventBase {
  type: 'page-unpin';
  pfn: number;
  pages: number;
}

export interface KmemAllocEvent extends EventBase {
  type: 'kmem-alloc';
  kind: 'kmalloc' | 'vmalloc' | 'vmap' | 'ioremap' | 'stack';
  va: number;
  /** Bytes requested. */
  size: number;
  /** Bytes usable (the kmalloc object size, or the mapped span). */
  objSize: number;
  /** Physical address when physically contiguous (kmalloc, ioremap), else -1. */
  pa: number;
}

export interface KmemFreeEvent extends EventBase {
  type: 'kmem-free';
  kind: 'kmalloc' | 'vmalloc' | 'vmap' | 'ioremap' | 'stack';
  va: number;
  size: number;
}

export interface ProcessEvent extends EventBase {
  type: 'process';
  pid: number;
  name: string;
  action: 'spawn' | 'exit';
  /** For exits: `exit`, or the signal that killed it. */
  reason: string;
}

export interface DriverBindEvent extends EventBase {
  type: 'driver-bind';
  device: string;
  driver: string;
  /** probe()'s return value. */
  result: number;
}

export interface DriverUnbindEvent extends EventBase {
  type: 'driver-unbind';
  device: string;
  driver: string;
}

export interface FindingEvent extends EventBase {
  type: 'finding';
  code: string;
  verdict: string;
  message: string;
}

export interface SwiotlbMapEvent extends EventBase {
  type: 'swiotlb-map';
  device: string;
  /** Physical address of the original buffer. */
  orig: number;
  /** Physical address of the bounce slot standing for it. */
  slot: number;
  size: number;
  dir: number;
}

export interface SwiotlbUnmapEvent extends EventBase {
  type: 'swiotlb-unmap';
  device: string;
  slot: number;
  size: number;
}

export interface SwiotlbBounceEvent extends EventBase {
  type: 'swiotlb-bounce';
  device: string;
  orig: number;
  slot: number;
  size: number;
  /** True: original → slot; false: slot → original. */
  toDevice: boolean;
}

export interface DmaMapEvent extends EventBase {
  type: 'dma-map';
  device: string;
  /** The kernel function the driver called (`dma_map_single_attrs`, `dma_map_page_attrs`, …). */
  call: string;
  /** The CPU address given to `dma_map_single`, else -1. */
  cpuAddr: number;
  phys: number;
  size: number;
  dir: number;
  attrs: number;
  /** The DMA address returned; `DMA_MAPPING_ERROR` on failure. */
  dmaAddr: number;
  /** The backend that handled it. */
  backend: string;
}

export interface DmaUnmapEvent extends EventBase {
  type: 'dma-unmap';
  device: string;
  call: string;
  dmaAddr: number;
  size: number;
  dir: number;
  attrs: number;
}

export interface DmaSyncEvent extends EventBase {
  type: 'dma-sync';
  device: string;
  call: string;
  forCpu: boolean;
  dmaAddr: number;
  size: number;
  dir: number;
}

export interface DmaMappingErrorEvent extends EventBase {
  type: 'dma-mapping-error';
  device: string;
  dmaAddr: number;
}

/**
 * `dma_map_sg` and its variants, after the backend ran. `phys`/`lengths` are
 * the input entries' CPU side (`sg_phys`, `sg->length`; a page-less entry's
 * physical address), `dmaAddrs`/`dmaLengths` the DMA fields of the first
 * `mapped` entries (`sg_dma_address`, `sg_dma_len`).
 */
export interface DmaMapSgEvent extends EventBase {
  type: 'dma-map-sg';
  device: string;
  call: string;
  /** `nents` passed by the driver. */
  nents: number;
  /** The count returned: DMA segments mapped, or a negative errno. */
  mapped: number;
  dir: number;
  attrs: number;
  phys: readonly number[];
  lengths: readonly number[];
  dmaAddrs: readonly number[];
  dmaLengths: readonly number[];
}

/**
 * `dma_unmap_sg`, emitted before the backend tears the mapping down (the
 * kernel's order), so the DMA fields are still those of the map.
 * `dmaAddrs`/`dmaLengths` hold the DMA fields of all `nents` entries.
 */
export interface DmaUnmapSgEvent extends EventBase {
  type: 'dma-unmap-sg';
  device: string;
  call: string;
  nents: number;
  dir: number;
  attrs: number;
  phys: readonly number[];
  lengths: readonly number[];
  dmaAddrs: readonly number[];
  dmaLengths: readonly number[];
}

/** `dma_sync_sg_for_cpu/_for_device`, with the DMA fields of all `nents` entries passed. */
export interface DmaSyncSgEvent extends EventBase {
  type: 'dma-sync-sg';
  device: string;
  call: string;
  forCpu: boolean;
  nents: number;
  dir: number;
  phys: readonly number[];
  lengths: readonly number[];
  dmaAddrs: readonly number[];
  dmaLengths: readonly number[];
}

/** What a DMA allocation gives: shared coherent memory, or memory the driver syncs. */
export type DmaAllocKind = 'coherent' | 'noncoherent' | 'noncontiguous';

/**
 * A DMA allocation made (`dma_alloc_attrs`, `dma_alloc_pages`,
 * `dma_alloc_noncoherent`, `dma_alloc_noncontiguous`, managed variants).
 */
export interface DmaAllocEvent extends EventBase {
  type: 'dma-alloc';
  device: string;
  call: string;
  kind: DmaAllocKind;
  /** The CPU address returned (-1 for none; a page cookie with `DMA_ATTR_NO_KERNEL_MAPPING`). */
  cpuAddr: number;
  /** Memory attribute of the CPU view returned at `cpuAddr`. */
  cpuAttr: MemAttr;
  /** `DMA_MAPPING_ERROR` when the allocation failed. */
  dmaAddr: number;
  size: number;
  /** Physical address of the first byte (-1 when failed). */
  phys: number;
  /** `DMA_BIDIRECTIONAL` for coherent memory. */
  dir: number;
  attrs: number;
  /** The allocation's GFP flags (absent for events that have none). */
  gfp?: number;
  /** noncontiguous: the CPU pieces (physical address, length), one contiguous DMA range. */
  segments?: readonly { phys: number; length: number }[];
}

/**
 * A DMA allocation given back (`dma_free_attrs`, `dma_free_pages`, …),
 * emitted before the backend frees it. `phys` is what the freed CPU address
 * translates to (-1 when it translates to nothing).
 */
export interface DmaFreeEvent extends EventBase {
  type: 'dma-free';
  device: string;
  call: string;
  kind: DmaAllocKind;
  cpuAddr: number;
  dmaAddr: number;
  size: number;
  phys: number;
  dir: number;
  attrs: number;
  segments?: readonly { phys: number; length: number }[];
}

export interface DmaMmapEvent extends EventBase {
  type: 'dma-mmap';
  device: string;
  call: string;
  /** The allocation's CPU address and DMA handle, and the size asked for. */
  cpuAddr: number;
  dmaAddr: number;
  size: number;
  /** The user mapping: process, VMA range, first page offset. */
  pid: number;
  vmStart: number;
  vmEnd: number;
  pgoff: number;
  /** The seed-000 strategy used, and the attribute of the user mapping. */
  strategy: string;
  attr: MemAttr;
  /** 0 or the negative errno returned. */
  ret: number;
}

// --- fence layer (src/dmabuf: fence.ts, resv.ts, sched.ts) ---

export interface FenceInitEvent extends EventBase {
  type: 'fence-init';
  fence: number;
  context: number;
  seqno: number;
  driver: string;
  timeline: string;
  /** A container's component fence ids (dma_fence_array), else null. */
  components: readonly number[] | null;
}

export interface FenceSignalEvent extends EventBase {
  type: 'fence-signal';
  fence: number;
  context: number;
  seqno: number;
  /** The fence's error (0 for success). */
  error: number;
  /** Who signalled: the device whose engine job is running, else the CPU agent. */
  agent: string;
  /** True when a device's job signalled it (`agent` is then a device name). */
  byDevice: boolean;
}

export interface FenceWaitEvent extends EventBase {
  type: 'fence-wait';
  fence: number;
  /** The CPU agent that waited or tested. */
  agent: string;
  /** True when the agent saw the fence signalled (the happens-before edge). */
  signaled: boolean;
}

export interface FenceCallbackEvent extends EventBase {
  type: 'fence-callback';
  fence: number;
  /** The registered function's name. */
  func: string;
}

export interface FenceReleaseEvent extends EventBase {
  type: 'fence-release';
  fence: number;
}

export interface ResvAddEvent extends EventBase {
  type: 'resv-add';
  resv: number;
  fence: number;
  /** `DMA_RESV_USAGE_*`. */
  usage: number;
  /** The fence it replaced in its slot, else -1. */
  replaced: number;
}

export interface SchedPushEvent extends EventBase {
  type: 'sched-push';
  job: number;
  device: string;
  /** The agent that pushed the job; its program order up to here precedes the job. */
  agent: string;
  /** Fences the job waits for. */
  deps: readonly number[];
  /** The job's finished fence. */
  finished: number;
}

export interface SchedRunEvent extends EventBase {
  type: 'sched-run';
  job: number;
  device: string;
  /** The engine job it became. */
  engineJob: number;
}

// ---- dma-buf (src/dmabuf) ----

/**
 * A dma-buf exported. `backing` is the physical memory behind it as flat
 * [phys, length, …] pairs in buffer order, as the exporter declared it
 * (empty when the exporter does not say, e.g. not placed yet).
 */
export interface DmaBufExportEvent extends EventBase {
  type: 'dmabuf-export';
  /** The dma-buf's id (stable for its life, reused by no other buffer). */
  buf: number;
  /** `exp_name`. */
  exporter: string;
  size: number;
  /** The exporter has `pin`/`unpin`: it may move the buffer. */
  dynamic: boolean;
  backing: readonly number[];
  /** The reservation object's id (`dmabuf->resv`), -1 when none. */
  resv: number;
}

/** The exporter moved a dma-buf: its new backing (flat [phys, length, …]). */
export interface DmaBufBackingEvent extends EventBase {
  type: 'dmabuf-backing';
  buf: number;
  backing: readonly number[];
}

/** A dma-buf's last reference dropped: the exporter's `release` ran. */
export interface DmaBufReleaseEvent extends EventBase {
  type: 'dmabuf-release';
  buf: number;
}

/** `dma_buf_(dynamic_)attach` succeeded (`attachment` ≥ 0) or failed (`ret` < 0). */
export interface DmaBufAttachEvent extends EventBase {
  type: 'dmabuf-attach';
  buf: number;
  attachment: number;
  device: string;
  /** The importer gave `importer_ops` (it handles move_notify). */
  dynamic: boolean;
  ret: number;
}

export interface DmaBufDetachEvent extends EventBase {
  type: 'dmabuf-detach';
  buf: number;
  attachment: number;
  device: string;
}

/**
 * An attachment's mapping handed to its importer (`dma_buf_map_attachment`;
 * every one is the exporter's). `phys`/`lengths` are the table's CPU
 * pieces, `dmaAddrs`/`dmaLengths` its DMA segments.
 */
export interface DmaBufMapEvent extends EventBase {
  type: 'dmabuf-map';
  buf: number;
  attachment: number;
  device: string;
  dir: number;
  /** 0, or the negative errno returned. */
  ret: number;
  phys: readonly number[];
  lengths: readonly number[];
  dmaAddrs: readonly number[];
  dmaLengths: readonly number[];
}

/** An attachment's mapping given back to the exporter (its DMA segments). */
export interface DmaBufUnmapEvent extends EventBase {
  type: 'dmabuf-unmap';
  buf: number;
  attachment: number;
  device: string;
  dir: number;
  dmaAddrs: readonly number[];
  dmaLengths: readonly number[];
}

/** `dma_buf_pin`/`dma_buf_unpin` (or the core's pin for a static importer of a dynamic exporter). */
export interface DmaBufPinEvent extends EventBase {
  type: 'dmabuf-pin';
  buf: number;
  attachment: number;
  pin: boolean;
  ret: number;
}

/** `dma_buf_move_notify`: the dynamic attachments told. */
export interface DmaBufMoveNotifyEvent extends EventBase {
  type: 'dmabuf-move-notify';
  buf: number;
  attachments: readonly number[];
}

/**
 * A CPU access bracket: `dma_buf_begin_cpu_access` (`begin`) or
 * `dma_buf_end_cpu_access`, directly or through `DMA_BUF_IOCTL_SYNC`.
 * `agent` is who will access: `kernel` or the process's name.
 */
export interface DmaBufCpuAccessEvent extends EventBase {
  type: 'dmabuf-cpu-access';
  buf: number;
  begin: boolean;
  dir: number;
  agent: string;
  /** 0, or the negative errno returned. */
  ret: number;
}

/** A user mapping of a dma-buf (mmap of its fd, or `dma_buf_mmap` from another driver). */
export interface DmaBufMmapEvent extends EventBase {
  type: 'dmabuf-mmap';
  buf: number;
  pid: number;
  vmStart: number;
  vmEnd: number;
  pgoff: number;
  ret: number;
}

/** `dma_buf_vmap` (the first, which called the exporter) and the last `dma_buf_vunmap`. */
export interface DmaBufVmapEvent extends EventBase {
  type: 'dmabuf-vmap';
  buf: number;
  map: boolean;
  vaddr: number;
  isIomem: boolean;
}

// ---- bo layer (src/bo): migratable buffer objects -------------------------

/** A buffer object created on a TTM device, with its fake offset in the device file. */
export interface BoInitEvent extends EventBase {
  type: 'bo-init';
  bo: number;
  device: string;
  size: number;
  /** The device file mmapped at the fake offset, and the offset in pages (`vm_pgoff`). */
  path: string;
  pgoff: number;
}

/**
 * A buffer object's backing changed: validation, eviction, swap-out or
 * swap-in, or its pages were populated. `pfns` holds the frame backing each
 * page of the object now (-1: none, e.g. unpopulated or swapped out).
 */
export interface BoMoveEvent extends EventBase {
  type: 'bo-move';
  bo: number;
  device: string;
  /** `system`, `tt`, `vram` or `none`; `swapped` for a swapped-out system object. */
  from: string;
  to: string;
  pfns: readonly number[];
  reason: 'validate' | 'evict' | 'populate' | 'swapout';
  /**
   * Whether the user PTEs of the object were shot down first: false in a
   * deliberately broken driver, and when an object is purged (validated
   * with an empty placement), which the kernel leaves to the driver.
   */
  unmapped: boolean;
}

/** A buffer object's memory was released. */
export interface BoDestroyEvent extends EventBase {
  type: 'bo-destroy';
  bo: number;
  device: string;
}

/** The bo layer's events. */
export type BoEvent = BoInitEvent | BoMoveEvent | BoDestroyEvent;
const BO_EVENT_TYPES = ['bo-init', 'bo-move', 'bo-destroy'] as const;

/** Every event dmalab emits. */
export type MachineEvent =
  | CpuAccessEvent
  | DeviceAccessEvent
  | CacheFillEvent
  | CacheWritebackEvent
  | CacheInvalidateEvent
  | IommuMapEvent
  | IommuUnmapEvent
  | IommuFaultEvent
  | PageAllocEvent
  | PageFreeEvent
  | JobSubmitEvent
  | JobCompleteEvent
  | JobStartEvent
  | TimeEvent
  | FindingEvent
  | SwiotlbMapEvent
  | SwiotlbUnmapEvent
  | SwiotlbBounceEvent
  | DmaMapEvent
  | DmaUnmapEvent
  | DmaSyncEvent
  | DmaMappingErrorEvent
  | DmaMapSgEvent
  | DmaUnmapSgEvent
  | DmaSyncSgEvent
  | DmaAllocEvent
  | DmaFreeEvent
  | DmaMmapEvent
  | PteInstallEvent
  | PteRemoveEvent
  | PageFaultEvent
  | VmaMapEvent
  | VmaUnmapEvent
  | SignalEvent
  | PagePinEvent
  | PageUnpinEvent
  | KmemAllocEvent
  | KmemFreeEvent
  | ProcessEvent
  | DriverBindEvent
  | DriverUnbindEvent
  | FenceInitEvent
  | FenceSignalEvent
  | FenceWaitEvent
  | FenceCallbackEvent
  | FenceReleaseEvent
  | ResvAddEvent
  | SchedPushEvent
  | SchedRunEvent
  // dma-buf
  | DmaBufExportEvent
  | DmaBufBackingEvent
  | DmaBufReleaseEvent
  | DmaBufAttachEvent
  | DmaBufDetachEvent
  | DmaBufMapEvent
  | DmaBufUnmapEvent
  | DmaBufPinEvent
  | DmaBufMoveNotifyEvent
  | DmaBufCpuAccessEvent
  | DmaBufMmapEvent
  | DmaBufVmapEvent
  | BoEvent;

export type EventType = MachineEvent['type'];
export type EventOf<T extends EventType> = Extract<MachineEvent, { type: T }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** An event before the bus stamps its step and time. */
export type EventInit = DistributiveOmit<MachineEvent, 'step' | 'time'>;

export const EVENT_TYPES: readonly EventType[] = [
  'cpu-access',
  'device-access',
  'cache-fill',
  'cache-writeback',
  'cache-invalidate',
  'iommu-map',
  'iommu-unmap',
  'iommu-fault',
  'page-alloc',
  'page-free',
  'job-submit',
  'job-complete',
  'job-start',
  'time',
  'finding',
  'swiotlb-map',
  'swiotlb-unmap',
  'swiotlb-bounce',
  'dma-map',
  'dma-unmap',
  'dma-sync',
  'dma-mapping-error',
  'dma-map-sg',
  'dma-unmap-sg',
  'dma-sync-sg',
  'dma-alloc',
  'dma-free',
  'dma-mmap',
  'pte-install',
  'pte-remove',
  'page-fault',
  'vma-map',
  'vma-unmap',
  'signal',
  'page-pin',
  'page-unpin',
  'kmem-alloc',
  'kmem-free',
  'process',
  'driver-bind',
  'driver-unbind',
  // fence layer
  'fence-init',
  'fence-signal',
  'fence-wait',
  'fence-callback',
  'fence-release',
  'resv-add',
  'sched-push',
  'sched-run',
  // dma-buf
  'dmabuf-export',
  'dmabuf-backing',
  'dmabuf-release',
  'dmabuf-attach',
  'dmabuf-detach',
  'dmabuf-map',
  'dmabuf-unmap',
  'dmabuf-pin',
  'dmabuf-move-notify',
  'dmabuf-cpu-access',
  'dmabuf-mmap',
  'dmabuf-vmap',
  ...BO_EVENT_TYPES,
];

type Listener = (ev: MachineEvent) => void;

/** Which event types somebody listens to; emission sites test this first. */
export type Wants = { [T in EventType]: boolean };

/** Per event type, its listeners. */
export type Listeners = { readonly [T in EventType]: readonly ((ev: EventOf<T>) => void)[] };

const NO_LISTENERS: readonly Listener[] = [];

/**
 * An object with one property per event type. Built by `Object.fromEntries`
 * so that V8 keeps it in fast mode: adding ~90 properties one by one with
 * computed keys turns an object into a hash table, and every `wants[type]`
 * test at every emission site would then be a dictionary lookup.
 */
function perType<V>(value: V): { [T in EventType]: V } {
  return Object.fromEntries(EVENT_TYPES.map((t) => [t, value])) as { [T in EventType]: V };
}

/**
 * The synchronous bus. Listeners run in subscription order during `emit`
 * (those of the event's type, then those of every type); a listener that
 * throws propagates to the emitter (a checker with panicOnWarn relies on
 * that). Listener lists are replaced, never mutated, when somebody
 * subscribes or unsubscribes, so `emit` walks them without copying and a
 * change made during an emission takes effect at the next one.
 */
export class EventBus {
  /** Per type, its listeners (replaced by `on`, never mutated); hot sites pass `listeners[type]` to `emitTo`. */
  private readonly lists: { [T in EventType]: readonly Listener[] } = perType(NO_LISTENERS);
  /** The same object as `lists`, typed per event type and read-only for the emission sites. */
  readonly listeners: Listeners = this.lists as unknown as Listeners;
  private anyType: readonly Listener[] = NO_LISTENERS;
  readonly wants: Wants = perType(false);

  constructor(private readonly clock: { step: number; time: number }) {}

  /** Subscribes to one event type, or to all with `'*'`; returns the unsubscribe function. */
  on<T extends EventType>(type: T | '*', fn: (ev: EventOf<T>) => void): () => void {
    const listener = fn as Listener;
    if (type !== '*' && !Object.hasOwn(this.lists, type)) {
      throw new DmalabError(`EventBus.on: unknown event type '${String(type)}' (see EVENT_TYPES)`);
    }
    if (type === '*') this.anyType = [...this.anyType, listener];
    else this.lists[type] = [...this.lists[type], listener];
    this.recompute();
    return () => {
      if (type === '*') this.anyType = without(this.anyType, listener);
      else this.lists[type] = without(this.lists[type], listener);
      this.recompute();
    };
  }

  /** Emits an event, stamping the current step and time. Call only when `wants[type]`. */
  emit(init: EventInit): void {
    const ev = init as unknown as MachineEvent;
    ev.step = this.clock.step;
    ev.time = this.clock.time;
    const list = this.lists[ev.type];
    for (let i = 0; i < list.length; i++) list[i]!(ev);
    const any = this.anyType;
    for (let i = 0; i < any.length; i++) any[i]!(ev);
  }

  /**
   * `emit` for hot sites: `list` is `listeners[type]` read at the site (a
   * property load with a literal key, where a lookup by a type passed in
   * would be a megamorphic keyed load on every emission), and the literal
   * already holds the clock's step and time (last, as `emit` would append
   * them), so the event keeps the shape it was built with.
   */
  emitTo<T extends EventType>(list: readonly ((ev: EventOf<T>) => void)[], ev: EventOf<T>): void {
    for (let i = 0; i < list.length; i++) list[i]!(ev);
    const any = this.anyType;
    for (let i = 0; i < any.length; i++) any[i]!(ev as MachineEvent);
  }

  private recompute(): void {
    const all = this.anyType.length > 0;
    for (const t of EVENT_TYPES) this.wants[t] = all || this.lists[t].length > 0;
  }
}

/** `list` without the first occurrence of `fn` (a new array). */
function without(list: readonly Listener[], fn: Listener): readonly Listener[] {
  const i = list.indexOf(fn);
  return i < 0 ? list : [...list.slice(0, i), ...list.slice(i + 1)];
}
