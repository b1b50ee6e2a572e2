/**
 * Handles: `Process` (task and mm in one), `Vma`, `File`, `Inode` and
 * `AddressSpace`. Each carries its machine and an id; every field is a
 * getter (or setter) over `m.layers.mm`, so a restore in place keeps
 * handles valid. One handle object exists per id and machine, so handles
 * compare with `===`.
 *
 * Callback tables stored through a handle (`vma.vmOps`) go to the registry;
 * driver data (`vmPrivateData`, `privateData`) must be plain data.
 */

import { DmalabError, type Machine, type Page, type UserVa } from '../machine/index.js';
import type { VmFaultT } from './consts.js';
import { assertPlainData, tableById, tableId } from './internal/registry.js';
import {
  type FileState,
  type InodeState,
  type MappingState,
  mmState,
  type ProcState,
  type ProcStatus,
  type VmaState,
} from './internal/state.js';
import { assertPgprot, type Pgprot } from './pgprot.js';

/** `struct vm_fault`: what a fault handler is told, and where it may return a page. */
export interface VmFault {
  readonly vma: Vma;
  /** Faulting address, page aligned. */
  readonly address: UserVa;
  /** Faulting address as accessed. */
  readonly realAddress: UserVa;
  /** Page offset of `address` in the mapping's object: `vmPgoff + (address - vmStart) / PAGE_SIZE`. */
  readonly pgoff: number;
  /** FAULT_FLAG_* bits. */
  readonly flags: number;
  /**
   * A handler returning 0 sets the page to install here, with a reference
   * taken for the PTE (`getPage`), as the kernel's `->fault` returns
   * `vmf->page` holding a reference.
   */
  page: Page | null;
}

/**
 * `struct vm_operations_struct`: the callbacks dmalab runs. `open` runs when
 * a VMA is duplicated (a split), not on the first mmap; `close` when a VMA
 * is removed; `maySplit` may refuse a split with a negative errno.
 */
export interface VmOperationsStruct {
  open?(vma: Vma): void;
  close?(vma: Vma): void;
  fault?(vmf: VmFault): VmFaultT;
  maySplit?(vma: Vma, addr: UserVa): number;
  /** A write to a read-only PTE of a normal page in a shared mapping. */
  pageMkwrite?(vmf: VmFault): VmFaultT;
  /** The same for a PFN (special) PTE. */
  pfnMkwrite?(vmf: VmFault): VmFaultT;
  name?(vma: Vma): string;
}

/** `loff_t *`: a position a read or write callback advances. */
export interface LoffT {
  value: number;
}

/**
 * `struct file_operations` for a character device. Where the kernel would
 * reach `current`, the calling process comes as a last argument.
 */
export interface FileOperations {
  open?(inode: Inode, file: File, current: Process): number;
  release?(inode: Inode, file: File): number;
  mmap?(file: File, vma: Vma, current: Process): number;
  unlockedIoctl?(file: File, cmd: number, arg: number, current: Process): number;
  read?(file: File, buf: UserVa, count: number, ppos: LoffT, current: Process): number;
  write?(file: File, buf: UserVa, count: number, ppos: LoffT, current: Process): number;
}

export const VM_OPS_MEMBERS = ['open', 'close', 'fault', 'maySplit', 'pageMkwrite', 'pfnMkwrite', 'name'];
export const FOPS_MEMBERS = ['open', 'release', 'mmap', 'unlockedIoctl', 'read', 'write'];

interface Caches {
  procs: Map<number, Process>;
  vmas: Map<number, Vma>;
  files: Map<number, File>;
  inodes: Map<number, Inode>;
  mappings: Map<number, AddressSpace>;
}
const caches = new WeakMap<Machine, Caches>();

function cacheOf(m: Machine): Caches {
  let c = caches.get(m);
  if (c === undefined) {
    c = { procs: new Map(), vmas: new Map(), files: new Map(), inodes: new Map(), mappings: new Map() };
    caches.set(m, c);
  }
  return c;
}

/** Throws the DmalabError of a handle whose object was freed. */
export function handleGone(what: string, id: number): never {
  throw new DmalabError(`${what} ${id} no longer exists (a use after free in the kernel)`);
}

const gone = handleGone;

/** `struct task_struct` and its `mm_struct`: a user process. */
export class Process {
  constructor(
    readonly machine: Machine,
    readonly pid: number,
  ) {}

  /** The process's state (internal). */
  get state(): ProcState {
    return mmState(this.machine).procs.get(this.pid) ?? gone('process', this.pid);
  }
  /** `comm`. */
  get name(): string {
    return this.state.name;
  }
  /** `running`, `exited`, or `killed` (by a signal). */
  get status(): ProcStatus {
    return this.state.status;
  }
  /** The signal that killed the process, or null. */
  get killedBy(): string | null {
    return this.state.signal;
  }
  get alive(): boolean {
    return this.state.status === 'running';
  }
  toString(): string {
    return `${this.name}[${this.pid}]`;
  }
}

/** `struct vm_area_struct`. */
export class Vma {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}

  /** The VMA's state (internal); throws once the VMA is gone. */
  get state(): VmaState {
    return mmState(this.machine).vmas.get(this.id) ?? gone('vma', this.id);
  }
  get vmStart(): UserVa {
    return this.state.start as UserVa;
  }
  get vmEnd(): UserVa {
    return this.state.end as UserVa;
  }
  /** VM_* flags. Prefer `vmFlagsSet`/`vmFlagsClear`, as current kernels do. */
  get vmFlags(): number {
    return this.state.flags;
  }
  set vmFlags(f: number) {
    if (!Number.isInteger(f) || f < 0 || f >= 2 ** 31) {
      throw new DmalabError(`must be a VM_* flag word, got ${f}`, { field: 'vmFlags' });
    }
    this.state.flags = f;
  }
  get vmPgoff(): number {
    return this.state.pgoff;
  }
  set vmPgoff(p: number) {
    if (!Number.isInteger(p) || p < 0)
      throw new DmalabError(`must be a page offset, got ${p}`, { field: 'vmPgoff' });
    this.state.pgoff = p;
  }
  get vmPageProt(): Pgprot {
    return this.state.prot;
  }
  set vmPageProt(p: Pgprot) {
    assertPgprot(p, 'vmPageProt');
    this.state.prot = { attr: p.attr, read: p.read, write: p.write, exec: p.exec };
  }
  get vmOps(): VmOperationsStruct | null {
    const id = this.state.ops;
    return id < 0 ? null : tableById<VmOperationsStruct>(id);
  }
  set vmOps(ops: VmOperationsStruct | null) {
    this.state.ops = ops === null ? -1 : tableId(ops, 'vmOps', VM_OPS_MEMBERS);
  }
  /** `vm_private_data`: plain data, shared by the pieces of a split as the kernel's pointer is. */
  get vmPrivateData(): unknown {
    return this.state.priv;
  }
  set vmPrivateData(d: unknown) {
    assertPlainData(d, 'vmPrivateData');
    this.state.priv = d;
  }
  get vmFile(): File | null {
    const f = this.state.file;
    return f < 0 ? null : fileHandle(this.machine, f);
  }
  /** `vm_mm`: the process whose address space holds the VMA. */
  get vmMm(): Process {
    return procHandle(this.machine, this.state.pid);
  }
  toString(): string {
    const s = this.state;
    return `vma ${s.start.toString(16)}-${s.end.toString(16)}`;
  }
}

/** `struct file`: one open of a character device. */
export class File {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}

  get state(): FileState {
    return mmState(this.machine).files.get(this.id) ?? gone('file', this.id);
  }
  get fInode(): Inode {
    return inodeHandle(this.machine, this.state.inode);
  }
  /** `f_mapping`: the inode's address space, shared by every open. */
  get fMapping(): AddressSpace {
    return this.fInode.iMapping;
  }
  /** The device path it was opened by (dmalab). */
  get path(): string {
    return this.fInode.path;
  }
  /** O_RDONLY, O_WRONLY or O_RDWR. */
  get fAccmode(): number {
    return this.state.accmode;
  }
  get fPos(): number {
    return this.state.pos;
  }
  set fPos(p: number) {
    if (!Number.isInteger(p) || p < 0)
      throw new DmalabError(`must be a file position, got ${p}`, { field: 'fPos' });
    this.state.pos = p;
  }
  /** `private_data`: plain data. */
  get privateData(): unknown {
    return this.state.priv;
  }
  set privateData(d: unknown) {
    assertPlainData(d, 'privateData');
    this.state.priv = d;
  }
}

/** `struct inode` of a character device. */
export class Inode {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get state(): InodeState {
    return mmState(this.machine).inodes.get(this.id) ?? gone('inode', this.id);
  }
  get path(): string {
    return this.state.path;
  }
  /** `i_mapping`. */
  get iMapping(): AddressSpace {
    return mappingHandle(this.machine, this.state.mapping);
  }
}

/** `struct address_space`: what `unmapMappingRange` takes. */
export class AddressSpace {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get state(): MappingState {
    return mmState(this.machine).mappings.get(this.id) ?? gone('address_space', this.id);
  }
  /** `host`: the inode. */
  get host(): Inode {
    return inodeHandle(this.machine, this.state.inode);
  }
}

function cached<T>(map: Map<number, T>, id: number, make: () => T): T {
  let h = map.get(id);
  if (h === undefined) {
    h = make();
    map.set(id, h);
  }
  return h;
}

const layerCaches = new WeakMap<Machine, Map<string, Map<number, object>>>();

/**
 * The one handle of `kind` and `id` on this machine, made by `make` the
 * first time, for the layers above that keep their objects as plain state
 * and hand out views (dma-bufs, attachments): handles compare with `===`
 * and survive a restore in place.
 */
export function uniqueHandle<T extends object>(m: Machine, kind: string, id: number, make: () => T): T {
  let byKind = layerCaches.get(m);
  if (byKind === undefined) {
    byKind = new Map();
    layerCaches.set(m, byKind);
  }
  let ids = byKind.get(kind);
  if (ids === undefined) {
    ids = new Map();
    byKind.set(kind, ids);
  }
  return cached(ids, id, make) as T;
}

/** The one `Process` handle of a pid on this machine (internal). */
export function procHandle(m: Machine, pid: number): Process {
  return cached(cacheOf(m).procs, pid, () => new Process(m, pid));
}
/** The one `Vma` handle of an id (internal). */
export function vmaHandle(m: Machine, id: number): Vma {
  return cached(cacheOf(m).vmas, id, () => new Vma(m, id));
}
/** The one `File` handle of an id (internal). */
export function fileHandle(m: Machine, id: number): File {
  return cached(cacheOf(m).files, id, () => new File(m, id));
}
/** The one `Inode` handle of an id (internal). */
export function inodeHandle(m: Machine, id: number): Inode {
  return cached(cacheOf(m).inodes, id, () => new Inode(m, id));
}
/** The one `AddressSpace` handle of an id (internal). */
export function mappingHandle(m: Machine, id: number): AddressSpace {
  return cached(cacheOf(m).mappings, id, () => new AddressSpace(m, id));
}

/** `vm_flags_set()`. */
export function vmFlagsSet(vma: Vma, flags: number): void {
  vma.vmFlags = vma.vmFlags | flags;
}

/** `vm_flags_clear()`. */
export function vmFlagsClear(vma: Vma, flags: number): void {
  vma.vmFlags = vma.vmFlags & ~flags;
}

/** `vm_flags_mod()`: set some flags and clear others. */
export function vmFlagsMod(vma: Vma, set: number, clear: number): void {
  vma.vmFlags = (vma.vmFlags | set) & ~clear;
}

/** `vma_pages()`. */
export function vmaPages(vma: Vma): number {
  return (vma.vmEnd - vma.vmStart) / 4096;
}
