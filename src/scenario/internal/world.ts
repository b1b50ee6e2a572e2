/**
 * The named things of a declarative scenario's run — devices, buffers,
 * mappings, attachments, user mappings — and the small helpers every kind
 * of step shares.
 */

import { DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE, type DmaDataDirection } from '../../dma/index.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  type DmaFence,
  type DrmSchedJob,
  ERESTARTSYS,
} from '../../dmabuf/index.js';
import { forEachSgtableDmaSg, type SgTable } from '../../lib/index.js';
import {
  type Device,
  type DmaAddr,
  DmalabError,
  errnoName,
  formatHex,
  type KernelVa,
  type Machine,
  PAGE_SIZE,
  type Page,
} from '../../machine/index.js';
import type { Process } from '../../mm/index.js';
import type { RunContext } from '../runtime.js';
import type { BufferSetup, StepSpec } from '../types.js';

/** The directions a file names, as the DMA API's constants. */
export const DIRS: Readonly<Record<string, DmaDataDirection>> = {
  DMA_TO_DEVICE,
  DMA_FROM_DEVICE,
  DMA_BIDIRECTIONAL,
};

/** A buffer of the setup and what its allocation gave; fields a kind does not use stay null. */
export interface Buffer {
  readonly spec: BufferSetup;
  readonly dev: Device | null;
  /** kmalloc and coherent buffers: the kernel address. */
  cpu: KernelVa | null;
  /** Coherent buffers: the bus address. */
  dma: DmaAddr | null;
  /** pages buffers: the pages, in buffer order, and the sg_table over them. */
  pages: Page[] | null;
  sgt: SgTable | null;
  /** heap buffers: the dma-buf, its kernel mapping (dma_buf_vmap, made at the first kernel access). */
  dmabuf: DmaBuf | null;
  vmap: KernelVa | null;
  /** heap buffers: each process's fd for the dma-buf, by pid. */
  readonly fds: Map<number, number>;
}

/** A DMA mapping a step made: a single range, a pages buffer's sg_table, or a mapped dma-buf attachment. */
export type Mapping =
  | {
      readonly kind: 'single';
      readonly dev: Device;
      readonly dma: DmaAddr;
      readonly size: number;
      readonly dir: DmaDataDirection;
      readonly dirName: string;
    }
  | {
      readonly kind: 'sgtable';
      readonly dev: Device;
      readonly buffer: string;
      readonly sgt: SgTable;
      readonly dir: DmaDataDirection;
      readonly dirName: string;
    }
  | {
      readonly kind: 'dmabuf';
      readonly dev: Device;
      readonly buffer: string;
      readonly attachment: DmaBufAttachment;
      readonly sgt: SgTable;
      readonly dir: DmaDataDirection;
      readonly dirName: string;
    };

/** A dma-buf attachment a step made; its buffer and device kept by name, as the handle dies at detach. */
export interface Attachment {
  readonly buffer: string;
  readonly dev: Device;
  readonly at: DmaBufAttachment;
}

export interface UserMap {
  readonly proc: Process;
  readonly addr: number;
}

/** The run's named things. */
export interface World {
  readonly m: Machine;
  readonly ctx: RunContext;
  readonly file: string;
  readonly devices: Map<string, Device>;
  readonly buffers: Map<string, Buffer>;
  /** Null when the mapping failed (later steps on it are skipped). */
  readonly mappings: Map<string, Mapping | null>;
  readonly attachments: Map<string, Attachment | null>;
  readonly maps: Map<string, UserMap | null>;
  /** A page of user memory per process (by pid) for ioctl arguments. */
  readonly scratch: Map<number, number>;
  /** The process that allocates heap buffers (spawned by the first). */
  allocator: Process | null;
  /** Named fences (the scenario's reference to each); null when the step that makes it was skipped. */
  readonly fences: Map<string, DmaFence | null>;
  /** Named sync_file fds, each its process's; null when the export failed. */
  readonly syncFiles: Map<string, { readonly proc: Process; readonly fd: number } | null>;
  /** Scheduler jobs that read with an expectation, checked once every job has completed. */
  readonly jobReads: JobRead[];
}

/** A scheduler job's read and what its bytes must be: one job per piece of the mapping it covers. */
export interface JobRead {
  readonly label: string;
  readonly jobs: readonly { readonly job: DrmSchedJob; readonly len: number }[];
  readonly expect: number;
}

/** A step's numeric argument, or `def` when it has none. */
export function num(args: Readonly<Record<string, unknown>>, key: string, def = 0): number {
  const x = args[key];
  return typeof x === 'number' ? x : def;
}

/** A step's argument as text (names, directions). */
export function str(args: Readonly<Record<string, unknown>>, key: string): string {
  return String(args[key]);
}

/** `length` bytes of `value`: what `fill` writes and devices transfer. */
export function fill(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value);
}

/** `1 DMA segment`, `4 DMA segments`: counts in the timeline. */
export function count(n: number, what: string, plural = `${what}s`): string {
  return `${n} ${n === 1 ? what : plural}`;
}

/** An address as the kernel prints it. */
export function hex(n: number): string {
  return formatHex(n);
}

/**
 * A call's return as the kernel names it: `-ENOMEM`, or `-ERESTARTSYS` for an
 * interrupted wait (kernel-internal, so not in the errno table), or the number.
 */
export function errnoText(r: number): string {
  if (r === -ERESTARTSYS) return '-ERESTARTSYS';
  return r < 0 ? errnoName(r) : String(r);
}

/** `file:line: what`, for byte conditions. */
export function where(w: World, s: StepSpec, what: string): string {
  return `${w.file}:${s.line}: ${what}`;
}

/** A buffer of the setup by name (parse.ts has checked that it exists). */
export function buffer(w: World, name: string): Buffer {
  return w.buffers.get(name)!;
}

/** A buffer's size in bytes (a pages buffer's is its pages'). */
export function bufferSize(spec: BufferSetup): number {
  return spec.kind === 'pages' ? spec.pages * PAGE_SIZE : spec.size;
}

/** Where a step was written, for a DmalabError: file, line and, for a file's step, column. */
export function stepAt(w: World, s: StepSpec): { file: string; line: number; column?: number } {
  return { file: w.file, line: s.line, ...(s.column !== undefined ? { column: s.column } : {}) };
}

/**
 * An error a library call raised during a step (a use after free of a
 * handle, say), located at the step's line, unless it already names a file.
 */
export function atStep(e: unknown, w: World, s: StepSpec): unknown {
  if (!(e instanceof DmalabError) || e.location.file !== undefined) return e;
  const field = e.location.field;
  const prefix = field === undefined ? '' : `${field}: `;
  const message = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
  return new DmalabError(`${s.op}: ${message}`, stepAt(w, s));
}

/** A name used before the step that binds it ran: the scenario orders its agents wrongly. */
export function usedBeforeMade(w: World, s: StepSpec, field: string, what: string): never {
  throw new DmalabError(`${what} used before the step that makes it (wait for a signal first)`, {
    ...stepAt(w, s),
    field,
  });
}

/** Whether the setup (or, for coherent-for-mmap, the first open) allocated the buffer. */
export function allocated(b: Buffer): boolean {
  return b.cpu !== null || b.pages !== null || b.dmabuf !== null;
}

/** A mapping of the kind a step needs; parse.ts refuses any other, so this only guards the invariant. */
export function expectKind<K extends Mapping['kind']>(
  w: World,
  s: StepSpec,
  mp: Mapping,
  kind: K,
): Extract<Mapping, { kind: K }> {
  if (mp.kind !== kind) {
    throw new DmalabError(`'${str(s.args, 'mapping')}' is not a ${kind} mapping`, {
      ...stepAt(w, s),
      field: 'mapping',
    });
  }
  return mp as Extract<Mapping, { kind: K }>;
}

/** The mapping a step names: null when it failed; a DmalabError when no step made it yet. */
export function mappingOf(w: World, s: StepSpec, field: string): Mapping | null {
  const name = str(s.args, field);
  const mp = w.mappings.get(name);
  if (mp === undefined) usedBeforeMade(w, s, field, `mapping '${name}'`);
  return mp;
}

/** A contiguous run of bus addresses a device transfer covers. */
export interface BusPiece {
  readonly bus: number;
  readonly len: number;
  /** The DMA segment it lies in, counted from 1 (0 for a target that is one range). */
  readonly segment: number;
}

/**
 * Where a device transfer of `len` bytes at logical offset `off` of `target`
 * goes: one range for a coherent buffer or a single mapping; for an sg_table
 * or dma-buf mapping, the pieces of its DMA segments (`sg_dma_address`,
 * `sg_dma_len`) the range covers, in order. Null when the target failed.
 */
export function busPieces(
  w: World,
  s: StepSpec,
  target: string,
  off: number,
  len: number,
): { pieces: BusPiece[]; segments: number } | null {
  // Mapping first, as the parser resolves `at` (it refuses a mapping named as a buffer anyway).
  const b = w.mappings.has(target) ? undefined : w.buffers.get(target);
  if (b !== undefined) {
    return b.dma === null ? null : { pieces: [{ bus: b.dma + off, len, segment: 0 }], segments: 0 };
  }
  const mp = w.mappings.get(target);
  if (mp === undefined) usedBeforeMade(w, s, 'at', `mapping '${target}'`);
  if (mp === null) return null;
  if (mp.kind === 'single') return { pieces: [{ bus: mp.dma + off, len, segment: 0 }], segments: 0 };
  const pieces: BusPiece[] = [];
  let skip = off;
  let left = len;
  let segment = 0;
  for (const sg of forEachSgtableDmaSg(mp.sgt)) {
    segment++;
    if (left === 0) break;
    const segLen = sg.dmaLength;
    if (skip >= segLen) {
      skip -= segLen;
      continue;
    }
    const n = Math.min(segLen - skip, left);
    pieces.push({ bus: sg.dmaAddress + skip, len: n, segment });
    left -= n;
    skip = 0;
  }
  if (left > 0) {
    w.ctx.check(false, where(w, s, `${target}'s DMA segments end ${left} bytes before offset + length`));
  }
  return { pieces, segments: mp.sgt.nents };
}

/** A piece's share of a transfer's duration, by its bytes (the shares add up to the whole). */
export function share(duration: number, len: number, start: number, n: number): number {
  return Math.floor((duration * (start + n)) / len) - Math.floor((duration * start) / len);
}
