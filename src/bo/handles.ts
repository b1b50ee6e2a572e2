/**
 * Handles of the bo layer: `TtmDevice` (`struct ttm_device` with the GPU
 * around it), `TtmBufferObject` (`struct ttm_buffer_object`) and
 * `DrmVmaOffsetNode` (`bo->base.vma_node`). Each is a view over
 * `m.layers.bo` by id, so snapshots restore in place and handles stay
 * valid; one handle exists per id and machine, so they compare with `===`.
 */

import { type Device, DmalabError, type Machine, PAGE_SIZE } from '../machine/index.js';
import { uniqueHandle } from '../mm/index.js';
import { MEM_TYPE_NAMES, TTM_MAX_BO_PRIORITY } from './consts.js';
import { lruTail } from './internal/resource.js';
import { type BoObjState, bdevState, boObj, boState } from './internal/state.js';

/** `struct ttm_device`: a GPU's buffer-object memory manager (and the GPU model's device). */
export class TtmDevice {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  /** The device doing DMA (the PCI function). */
  get dev(): Device {
    return this.machine.devices[bdevState(this.machine, this.id).device]!;
  }
  get name(): string {
    return bdevState(this.machine, this.id).name;
  }
  /** The DRM device file (`/dev/dri/cardN`): opened and mmapped at fake offsets. */
  get path(): string {
    return bdevState(this.machine, this.id).path;
  }
  /** `dev->vma_offset_manager`. */
  get vmaManager(): DrmVmaOffsetManager {
    return vmaManagerHandle(this.machine, this.id);
  }
  /** Pages in use in a memory type's manager (`ttm_resource_manager_usage`, in pages). */
  managerUsage(memType: number): number {
    return bdevState(this.machine, this.id).man[memType]?.usage ?? 0;
  }
  /** System pages held by tts of this device (dmalab query). */
  get ttPages(): number {
    return bdevState(this.machine, this.id).ttPages;
  }
  toString(): string {
    return this.name;
  }
}

/** `struct drm_vma_offset_manager` of a device. */
export class DrmVmaOffsetManager {
  constructor(
    readonly machine: Machine,
    readonly bdev: number,
  ) {}
}

/** `struct drm_vma_offset_node` of a buffer object. */
export class DrmVmaOffsetNode {
  constructor(
    readonly machine: Machine,
    readonly bo: number,
  ) {}
  /** First page of the fake offset (0 when none). */
  get start(): number {
    return boObj(this.machine, this.bo).nodeStart;
  }
  /** Pages of the fake offset (0 when none). */
  get size(): number {
    return boObj(this.machine, this.bo).nodePages;
  }
}

/** `struct ttm_buffer_object`. */
export class TtmBufferObject {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  /** The BO's state (internal). */
  get state(): BoObjState {
    return boObj(this.machine, this.id);
  }
  get bdev(): TtmDevice {
    return bdevHandle(this.machine, this.state.bdev);
  }
  /** `base.size`, in bytes. */
  get size(): number {
    return this.state.size;
  }
  /** `resource->mem_type` (`TTM_PL_*`), or -1 without a resource. */
  get memType(): number {
    return this.state.resource?.memType ?? -1;
  }
  /** Where it lives: `system`, `tt`, `vram`, `swapped` (system, swapped out) or `none`. */
  get placementName(): string {
    return placementName(this.state);
  }
  /** `resource->start`: first page in its manager. */
  get resourceStart(): number {
    return this.state.resource?.start ?? -1;
  }
  get pinCount(): number {
    return this.state.pinCount;
  }
  get priority(): number {
    return this.state.priority;
  }
  /** `bo->priority`: 0 is evicted first; changing it moves the object to that LRU's tail. */
  set priority(p: number) {
    if (!Number.isInteger(p) || p < 0 || p >= TTM_MAX_BO_PRIORITY) {
      throw new DmalabError(`priority must be an integer from 0 to ${TTM_MAX_BO_PRIORITY - 1}, got ${p}`, {
        field: 'priority',
      });
    }
    const s = this.state;
    s.priority = p;
    lruTail(bdevState(this.machine, s.bdev), s);
  }
  /** `base.vma_node`. */
  get vmaNode(): DrmVmaOffsetNode {
    return nodeHandle(this.machine, this.id);
  }
  /** Whether it still exists (not yet released). */
  get alive(): boolean {
    return boState(this.machine).bos.has(this.id);
  }
  /** Frame backing each page now (-1: none), as the fault handler would insert it (dmalab query). */
  get pfns(): number[] {
    return backingPfns(this.machine, this.state);
  }
  toString(): string {
    return `bo ${this.id}`;
  }
}

export function placementName(bo: BoObjState): string {
  const res = bo.resource;
  if (res === null) return 'none';
  if (bo.tt?.swap != null) return 'swapped';
  return MEM_TYPE_NAMES[res.memType] ?? `type${res.memType}`;
}

/** Frame backing each page of a BO now (-1 when none). */
export function backingPfns(m: Machine, bo: BoObjState): number[] {
  const res = bo.resource;
  if (res !== null && !boState(m).bdevs[bo.bdev]!.man[res.memType]!.useTt) {
    const base = boState(m).bdevs[bo.bdev]!.vramPhys / PAGE_SIZE + res.start;
    return Array.from({ length: bo.pages }, (_, i) => base + i);
  }
  return bo.tt === null ? new Array<number>(bo.pages).fill(-1) : bo.tt.pfns.slice();
}

export function bdevHandle(m: Machine, id: number): TtmDevice {
  return uniqueHandle(m, 'ttm_device', id, () => new TtmDevice(m, id));
}
export function boHandle(m: Machine, id: number): TtmBufferObject {
  return uniqueHandle(m, 'ttm_buffer_object', id, () => new TtmBufferObject(m, id));
}
export function nodeHandle(m: Machine, bo: number): DrmVmaOffsetNode {
  return uniqueHandle(m, 'drm_vma_offset_node', bo, () => new DrmVmaOffsetNode(m, bo));
}
export function vmaManagerHandle(m: Machine, bdev: number): DrmVmaOffsetManager {
  return uniqueHandle(m, 'drm_vma_offset_manager', bdev, () => new DrmVmaOffsetManager(m, bdev));
}
