/**
 * The dma-buf layer's state (plain data under `m.layers.dmabuf`, with its
 * slot), the callback tables (`struct dma_buf_ops`,
 * `struct dma_buf_attach_ops`) and the handles `DmaBuf` and
 * `DmaBufAttachment`: views over the state by id, one object per id and
 * machine, so a restore in place keeps them valid.
 *
 * Exporter and importer private data (`priv`, `importer_priv`) must be
 * plain data; the callback tables are kept by registry id. Scatter-gather
 * tables are host-side driver data (API.md §1): the mapping the core keeps
 * for an attachment lives beside the state, like a driver's own tables.
 */

import type { SgTable } from '../lib/index.js';
import type { Device } from '../machine/index.js';
import { DmalabError, type Hasher, type KernelVa, type Machine, registerSlot } from '../machine/index.js';
import {
  assertPlainData,
  type File,
  fileHandle,
  handleGone,
  tableById,
  tableKey,
  uniqueHandle,
} from '../mm/index.js';
import { type DmaResv, resvHandle } from './fence-state.js';

/** `struct iosys_map`: a kernel mapping of a buffer, system or I/O memory. */
export interface IosysMap {
  readonly vaddr: KernelVa;
  readonly isIomem: boolean;
}

/**
 * `struct dma_buf_ops`. `mapDmaBuf`, `unmapDmaBuf` and `release` are
 * mandatory; `pin` and `unpin` come together and make the exporter
 * dynamic (it may move the buffer while no one has it pinned). Where the
 * kernel returns an `ERR_PTR`, the callback returns a negative errno; out
 * parameters are return values (`vmap` returns the map).
 */
export interface DmaBufOps {
  attach?(dmabuf: DmaBuf, attach: DmaBufAttachment): number;
  detach?(dmabuf: DmaBuf, attach: DmaBufAttachment): void;
  pin?(attach: DmaBufAttachment): number;
  unpin?(attach: DmaBufAttachment): void;
  mapDmaBuf(attach: DmaBufAttachment, dir: number): SgTable | number | null;
  unmapDmaBuf(attach: DmaBufAttachment, sgt: SgTable, dir: number): void;
  release(dmabuf: DmaBuf): void;
  beginCpuAccess?(dmabuf: DmaBuf, dir: number): number;
  endCpuAccess?(dmabuf: DmaBuf, dir: number): number;
  mmap?(dmabuf: DmaBuf, vma: import('../mm/index.js').Vma): number;
  vmap?(dmabuf: DmaBuf): IosysMap | number;
  vunmap?(dmabuf: DmaBuf, map: IosysMap): void;
}

export const DMA_BUF_OPS_MEMBERS = [
  'attach',
  'detach',
  'pin',
  'unpin',
  'mapDmaBuf',
  'unmapDmaBuf',
  'release',
  'beginCpuAccess',
  'endCpuAccess',
  'mmap',
  'vmap',
  'vunmap',
];

/**
 * `struct dma_buf_attach_ops`: what a dynamic importer gives. `moveNotify`
 * is mandatory; `allowPeer2peer` is a flag, so it is passed to
 * `dmaBufDynamicAttach` beside the table rather than in it.
 */
export interface DmaBufAttachOps {
  moveNotify(attach: DmaBufAttachment): void;
}

export const DMA_BUF_ATTACH_OPS_MEMBERS = ['moveNotify'];

export interface DmaBufState {
  readonly id: number;
  readonly size: number;
  /** `dma_buf_ops` registry id. */
  readonly ops: number;
  /** `exp_name`. */
  readonly expName: string;
  /** `name`, set by DMA_BUF_SET_NAME. */
  name: string;
  /** The exporter's `priv`: plain data. */
  priv: unknown;
  /** The mm file id (the file's references are the buffer's). */
  readonly file: number;
  /** `O_ACCMODE | O_NONBLOCK` of the export flags. */
  readonly flags: number;
  /** Attachment ids, in attach order. */
  attachments: number[];
  /** `vmapping_counter` and `vmap_ptr`. */
  vmappingCounter: number;
  vmapPtr: IosysMap | null;
  /** Physical pieces as the exporter last declared them (flat [phys, length, …]). */
  backing: number[];
  /** The reservation object's id (an embedded one unless the exporter shared its own). */
  resv: number;
  /** The reservation object is the buffer's own (finalised at release). */
  ownResv: boolean;
}

export interface AttachmentState {
  readonly id: number;
  readonly buf: number;
  /** Device id. */
  readonly dev: number;
  /** The exporter's per-attachment `priv`: plain data. */
  priv: unknown;
  /** `importer_ops` registry id; -1 for a static importer. */
  readonly importerOps: number;
  readonly importerPriv: unknown;
  readonly peer2peer: boolean;
}

export interface DmaBufLayerState {
  bufs: Map<number, DmaBufState>;
  atts: Map<number, AttachmentState>;
  /** mm file id → dma-buf id (`is_dma_buf_file`). */
  byFile: Map<number, number>;
  nextId: number;
}

export function dmabufState(m: Machine): DmaBufLayerState {
  const s = m.layers.dmabuf as DmaBufLayerState | undefined;
  if (s === undefined) throw new DmalabError('the dma-buf layer is not initialised on this machine');
  return s;
}

/** `struct dma_buf`. */
export class DmaBuf {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get state(): DmaBufState {
    return dmabufState(this.machine).bufs.get(this.id) ?? handleGone('dma-buf', this.id);
  }
  get size(): number {
    return this.state.size;
  }
  get expName(): string {
    return this.state.expName;
  }
  get name(): string {
    return this.state.name;
  }
  get ops(): DmaBufOps {
    return tableById<DmaBufOps>(this.state.ops);
  }
  /** The exporter's private data (plain data). */
  get priv(): unknown {
    return this.state.priv;
  }
  set priv(d: unknown) {
    assertPlainData(d, 'priv');
    this.state.priv = d;
  }
  /** The backing file; its references are the buffer's. */
  get file(): File {
    return fileHandle(this.machine, this.state.file);
  }
  /** The attachments, in attach order. */
  get attachments(): DmaBufAttachment[] {
    return this.state.attachments.map((a) => attachmentHandle(this.machine, a));
  }
  /** `dmabuf->resv`: the reservation object (its fences order the buffer's users). */
  get resv(): DmaResv {
    return resvHandle(this.machine, this.state.resv);
  }
  toString(): string {
    return `dma-buf ${this.id} (${this.state.expName}, ${this.state.size} bytes)`;
  }
}

/** `struct dma_buf_attachment`. */
export class DmaBufAttachment {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get state(): AttachmentState {
    return dmabufState(this.machine).atts.get(this.id) ?? handleGone('dma-buf attachment', this.id);
  }
  get dmabuf(): DmaBuf {
    return dmaBufHandle(this.machine, this.state.buf);
  }
  get dev(): Device {
    return this.machine.devices[this.state.dev]!;
  }
  /** The exporter's per-attachment private data (plain data). */
  get priv(): unknown {
    return this.state.priv;
  }
  set priv(d: unknown) {
    assertPlainData(d, 'priv');
    this.state.priv = d;
  }
  get importerOps(): DmaBufAttachOps | null {
    const id = this.state.importerOps;
    return id < 0 ? null : tableById<DmaBufAttachOps>(id);
  }
  get importerPriv(): unknown {
    return this.state.importerPriv;
  }
  get peer2peer(): boolean {
    return this.state.peer2peer;
  }
  toString(): string {
    return `attachment ${this.id} of dma-buf ${this.state.buf} (${this.dev.name})`;
  }
}

/** The one `DmaBuf` handle of an id (internal). */
export function dmaBufHandle(m: Machine, id: number): DmaBuf {
  return uniqueHandle(m, 'dma-buf', id, () => new DmaBuf(m, id));
}

/** The one `DmaBufAttachment` handle of an id (internal). */
export function attachmentHandle(m: Machine, id: number): DmaBufAttachment {
  return uniqueHandle(m, 'dma-buf attachment', id, () => new DmaBufAttachment(m, id));
}

function hashState(s: DmaBufLayerState, h: Hasher): void {
  h.value(s.nextId);
  for (const b of s.bufs.values()) {
    h.value([b.id, b.size, tableKey(b.ops), b.expName, b.name, b.priv, b.file, b.flags, b.attachments]);
    h.value([b.vmappingCounter, b.vmapPtr, b.backing, b.resv, b.ownResv]);
  }
  for (const a of s.atts.values()) {
    const ops = a.importerOps < 0 ? '' : tableKey(a.importerOps);
    h.value([a.id, a.buf, a.dev, a.priv, ops, a.importerPriv, a.peer2peer]);
  }
  h.value(s.byFile);
}

/** Registers the layer's state and slot (createMachine, after mm). */
export function initDmaBuf(m: Machine): void {
  m.layers.dmabuf = { bufs: new Map(), atts: new Map(), byFile: new Map(), nextId: 1 } as DmaBufLayerState;
  registerSlot(m, {
    name: 'dmabuf',
    snapshot: (mm) => structuredClone(dmabufState(mm)),
    restore: (mm, snap) => {
      mm.layers.dmabuf = structuredClone(snap as DmaBufLayerState);
    },
    hash: (mm, h) => hashState(dmabufState(mm), h),
  });
}
