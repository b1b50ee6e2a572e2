/**
 * The bo layer's state, as plain data in `m.layers.bo`: TTM devices (their
 * resource managers, LRUs, GART and fake-offset space) and buffer objects
 * (their resource, their `ttm_tt` pages, their fake offset). Snapshotted,
 * restored and hashed like every layer's slot.
 */

import { DmalabError, type Hasher, type Machine, registerSlot } from '../../machine/index.js';
import type { TtmBoType, TtmCaching } from '../consts.js';
import type { DrmMmState } from './drm-mm.js';

/** `struct ttm_place`. `lpfn` 0 means "to the end of the manager". */
export interface TtmPlace {
  readonly fpfn: number;
  readonly lpfn: number;
  readonly memType: number;
  readonly flags: number;
}

/** `struct ttm_placement`. */
export interface TtmPlacement {
  readonly numPlacement: number;
  readonly placement: readonly TtmPlace[];
}

/** `struct ttm_operation_ctx`; `bytesMoved` is counted up by moves, as in the kernel. */
export interface TtmOperationCtx {
  interruptible: boolean;
  noWaitGpu: boolean;
  bytesMoved: number;
}

/** `struct ttm_resource`: where a BO lives now. `start` is a page in the manager (0 for SYSTEM). */
export interface ResourceState {
  memType: number;
  start: number;
  pages: number;
  /** The place flags it was allocated with (`placement`). */
  placement: number;
}

/** `struct ttm_tt`: the system pages behind a SYSTEM or TT resource. */
export interface TtState {
  caching: TtmCaching;
  pageFlags: number;
  populated: boolean;
  /** Frame of each page, -1 when not populated. */
  pfns: number[];
  /** Kernel address and DMA address of each page (`ttm_pool` with `use_dma_alloc`). */
  cpu: number[];
  dma: number[];
  /** The bytes of a swapped-out tt (`TTM_TT_FLAG_SWAPPED`), as the shmem file would hold them. */
  swap: Uint8Array | null;
}

export interface BoObjState {
  id: number;
  bdev: number;
  size: number;
  pages: number;
  type: TtmBoType;
  priority: number;
  pinCount: number;
  refs: number;
  deleted: boolean;
  resource: ResourceState | null;
  tt: TtState | null;
  /** Fake offset (`base.vma_node`): first page and pages; start 0 when none. */
  nodeStart: number;
  nodePages: number;
  /** Files allowed to mmap it (`drm_vma_node_allow`), with counts. */
  allowed: [number, number][];
  /** Preferred and allowed GEM domains (the GPU model's, as amdgpu keeps them). */
  preferredDomains: number;
  allowedDomains: number;
  /** The reservation object (`base.resv`), and whether it is the object's own (`base._resv`). */
  resv: number;
  ownResv: boolean;
  /** The dma-buf it is exported as (`base.dma_buf`), or -1. */
  dmabuf: number;
}

/** `struct ttm_resource_manager` of one memory type. */
export interface ManState {
  memType: number;
  useTt: boolean;
  usable: boolean;
  /** Size in pages (SYSTEM: unlimited, -1). */
  size: number;
  usage: number;
  /** The range manager's `drm_mm` of pages (owner: the BO id); unused by SYSTEM. */
  mm: DrmMmState;
  /** One LRU per priority: BO ids, least recently used first. */
  lru: number[][];
  /** `man->move`: the last pipelined move out of this manager (a fence id), or -1. */
  move: number;
}

/** `struct ttm_device` plus the GPU model around it. */
export interface BdevState {
  id: number;
  device: number;
  name: string;
  path: string;
  vramPhys: number;
  vramPages: number;
  /** `bdev->dev_mapping` (address_space id), known once a file of the device is mmapped. */
  mappingId: number;
  /** GART entries: DMA address of each aperture page, -1 when unbound. */
  gart: number[];
  man: ManState[];
  /** `bdev->unevictable`: pinned and swapped BOs. */
  unevictable: number[];
  /** The fake-offset space (`vma_manager->vm_addr_space_mm`), in pages; owner: the BO id. */
  vmaMm: DrmMmState;
  ttPages: number;
  ttPagesLimit: number;
  copyNsPerPage: number;
  bugs: string[];
  /** BOs released while busy (`deleted`), freed when idle (the delayed-delete work). */
  zombies: number[];
  /** The copy engine's fence timeline. */
  fenceContext: number;
  fenceSeqno: number;
}

export interface BoLayerState {
  bdevs: BdevState[];
  bos: Map<number, BoObjState>;
  nextBo: number;
}

export function boState(m: Machine): BoLayerState {
  const s = m.layers.bo as BoLayerState | undefined;
  if (s === undefined) throw new DmalabError('the bo layer is not initialised on this machine');
  return s;
}

/** Registers the bo layer's slot (createMachine calls it). */
export function initBo(m: Machine): void {
  m.layers.bo = {
    bdevs: [],
    bos: new Map(),
    nextBo: 1,
  } satisfies BoLayerState;
  registerSlot(m, {
    name: 'bo',
    snapshot: (mm) => structuredClone(boState(mm)),
    restore: (mm, snap) => {
      mm.layers.bo = structuredClone(snap as BoLayerState);
    },
    hash: (mm: Machine, h: Hasher) => {
      const s = boState(mm);
      h.value(s.bdevs).value(s.bos).num(s.nextBo);
    },
  });
}

export function bdevState(m: Machine, id: number): BdevState {
  const b = boState(m).bdevs[id];
  if (b === undefined) throw new DmalabError(`no TTM device ${id}`);
  return b;
}

export function boObj(m: Machine, id: number): BoObjState {
  const b = boState(m).bos.get(id);
  if (b === undefined)
    throw new DmalabError(`buffer object ${id} no longer exists (a use after free in the kernel)`);
  return b;
}
