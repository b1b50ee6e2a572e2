/**
 * A minimal VFS for character devices: a driver registers file operations
 * under a path (instead of a major number); processes open it, mmap it,
 * ioctl, read and write it, close it, and pass the fd to another process
 * (SCM_RIGHTS). Each device path has one inode whose `AddressSpace`
 * (`file.fMapping`) every open shares, so `unmapMappingRange` reaches every
 * mapping of the device in every process.
 *
 * `sysMmap` follows `do_mmap`/`mmap_region`: argument checks, flags from
 * prot and the file's mode, an address from `get_unmapped_area` (coloured on
 * PA-RISC), MAP_FIXED replacing what was there, the VMA created and handed
 * to the driver's `mmap`; on its failure the VMA is unmapped without calling
 * any further hook. MAP_POPULATE and MAP_LOCKED then fault the range in.
 */

import {
  apiCall,
  DmalabError,
  EACCES,
  EBADF,
  EBUSY,
  EEXIST,
  EFAULT,
  EINVAL,
  ENODEV,
  ENOENT,
  ENOMEM,
  ENOTTY,
  ESRCH,
  type Machine,
  PAGE_SIZE,
  TASK_SIZE,
  type UserVa,
} from '../machine/index.js';
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_LOCKED,
  MAP_NONBLOCK,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_TYPE,
  O_ACCMODE,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  VM_EXEC,
  VM_LOCKED,
  VM_LOCKED_MASK,
  VM_MAYEXEC,
  VM_MAYREAD,
  VM_MAYSHARE,
  VM_MAYWRITE,
  VM_READ,
  VM_SHARED,
  VM_SPECIAL,
  VM_WRITE,
} from './consts.js';
import { mmPopulate } from './gup.js';
import {
  type File,
  type FileOperations,
  FOPS_MEMBERS,
  fileHandle,
  inodeHandle,
  type LoffT,
  type Process,
  type Vma,
  vmaHandle,
} from './handles.js';
import { fput, getFile } from './internal/files.js';
import { pteClearRange } from './internal/pagetable.js';
import { assertPlainData, tableById, tableId } from './internal/registry.js';
import { type FileState, mmState, nextId, type ProcState, withMmapLock } from './internal/state.js';
import { vmGetPageProt } from './pgprot.js';
import { announceVma, getUnmappedArea, insertVma, rangeFree, removeVma, unmapRange } from './vma.js';

/**
 * Registers a character device at `path` with its file operations
 * (kernel: `register_chrdev`, with a path in place of the major number).
 * Returns 0, or -EBUSY when the path is taken.
 */
export function registerChrdev(m: Machine, path: string, fops: FileOperations): number {
  return apiCall(m, 'register_chrdev', () => {
    if (typeof path !== 'string' || path === '') {
      throw new DmalabError('registerChrdev: path must be a non-empty string', { field: 'path' });
    }
    const fopsId = tableId(fops, 'fops', FOPS_MEMBERS);
    const st = mmState(m);
    const prev = st.chrdevs.get(path);
    if (prev !== undefined && st.inodes.get(prev)!.registered) return -EBUSY;
    const inodeId = nextId(st);
    const mappingId = nextId(st);
    st.inodes.set(inodeId, { id: inodeId, path, fops: fopsId, mapping: mappingId, registered: true });
    st.mappings.set(mappingId, { id: mappingId, inode: inodeId, vmas: [] });
    st.chrdevs.set(path, inodeId);
    return 0;
  });
}

/** `unregister_chrdev()`: no new opens; files already open keep working until released. */
export function unregisterChrdev(m: Machine, path: string): void {
  apiCall(m, 'unregister_chrdev', () => {
    const st = mmState(m);
    const id = st.chrdevs.get(path);
    if (id !== undefined) {
      st.inodes.get(id)!.registered = false;
      st.chrdevs.delete(path);
    }
  });
}

function running(proc: Process): ProcState | null {
  const p = proc.state;
  return p.status === 'running' ? p : null;
}

function lowestFreeFd(p: ProcState): number {
  let fd = 3;
  while (p.fds.has(fd)) fd++;
  return fd;
}

function fileOf(m: Machine, p: ProcState, fd: number): FileState | null {
  const id = p.fds.get(fd);
  return id === undefined ? null : mmState(m).files.get(id)!;
}

function fopsOf(m: Machine, f: FileState): FileOperations {
  return tableById<FileOperations>(mmState(m).inodes.get(f.inode)!.fops);
}

const readable = (f: FileState) => f.accmode !== O_WRONLY;
const writable = (f: FileState) => f.accmode !== O_RDONLY;

/**
 * `open()` of a character device: a new file (its driver's `open` runs) and
 * the lowest free fd from 3. Returns the fd or a negative errno (-ENOENT for
 * an unknown path, or the driver's error).
 */
export function sysOpen(proc: Process, path: string, flags: number = O_RDWR): number {
  const m = proc.machine;
  return apiCall(m, 'open', () => {
    const p = running(proc);
    if (p === null) return -ESRCH;
    const st = mmState(m);
    const inodeId = st.chrdevs.get(path);
    if (inodeId === undefined) return -ENOENT;
    const accmode = flags & O_ACCMODE;
    if (accmode === O_ACCMODE) return -EINVAL;
    const id = nextId(st);
    st.files.set(id, { id, inode: inodeId, refs: 1, accmode, priv: undefined, pos: 0 });
    const inode = st.inodes.get(inodeId)!;
    const fops = tableById<FileOperations>(inode.fops);
    if (fops.open !== undefined) {
      const r = fops.open(inodeHandle(m, inodeId), fileHandle(m, id), proc);
      if (r !== 0) {
        // A failed open is torn down without ->release.
        st.files.delete(id);
        return r < 0 ? r : -EINVAL;
      }
    }
    const fd = lowestFreeFd(p);
    p.fds.set(fd, id);
    return fd;
  });
}

/** `close()`: drops the fd's file reference; the driver's `release` runs when the last reference goes. */
export function sysClose(proc: Process, fd: number): number {
  const m = proc.machine;
  return apiCall(m, 'close', () => {
    const p = running(proc);
    if (p === null) return -ESRCH;
    const id = p.fds.get(fd);
    if (id === undefined) return -EBADF;
    p.fds.delete(fd);
    fput(m, id);
    return 0;
  });
}

/**
 * Passes an open file from one process to another, as a unix-socket
 * SCM_RIGHTS message does (dmalab: the send and the receive in one call).
 * The receiver gets its lowest free fd; the sender keeps its own.
 */
export function passFd(from: Process, fd: number, to: Process): number {
  const m = from.machine;
  if (to.machine !== m) throw new DmalabError('passFd: both processes must be on the same machine');
  return apiCall(m, 'scm_rights', () => {
    const p = running(from);
    const q = running(to);
    if (p === null || q === null) return -ESRCH;
    const id = p.fds.get(fd);
    if (id === undefined) return -EBADF;
    getFile(m, id);
    const nfd = lowestFreeFd(q);
    q.fds.set(nfd, id);
    return nfd;
  });
}

function checkInt(v: number, what: string): void {
  if (!Number.isInteger(v)) throw new DmalabError(`${what} must be an integer, got ${v}`, { field: what });
}

/**
 * `mmap()`: maps `length` bytes of the device open at `fd` at `offset`
 * (or anonymous memory with MAP_ANONYMOUS and fd -1). Returns the address,
 * or a negative errno (the driver's `mmap` error included).
 */
export function sysMmap(
  proc: Process,
  addr: UserVa | number,
  length: number,
  prot: number,
  flags: number,
  fd: number,
  offset: number,
): number {
  const m = proc.machine;
  return apiCall(m, 'mmap', () => {
    for (const [v, n] of [
      [addr, 'addr'],
      [length, 'length'],
      [prot, 'prot'],
      [flags, 'flags'],
      [fd, 'fd'],
      [offset, 'offset'],
    ] as const) {
      checkInt(v, n);
    }
    const p = running(proc);
    if (p === null) return -ESRCH;
    return withMmapLock(m, 'write', () => doMmap(m, proc, p, addr, length, prot, flags, fd, offset));
  });
}

function doMmap(
  m: Machine,
  proc: Process,
  p: ProcState,
  addr: number,
  length: number,
  prot: number,
  flagsIn: number,
  fd: number,
  offset: number,
): number {
  const st = mmState(m);
  if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) return -EINVAL;
  if (length <= 0 || addr < 0 || offset < 0) return -EINVAL;
  const len = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
  if (len > TASK_SIZE) return -ENOMEM;
  if (offset % PAGE_SIZE !== 0) return -EINVAL;
  let pgoff = offset / PAGE_SIZE;
  let flags = flagsIn;
  if (flags & MAP_FIXED_NOREPLACE) flags |= MAP_FIXED;
  const type = flags & MAP_TYPE;
  if (type !== MAP_SHARED && type !== MAP_PRIVATE && type !== MAP_SHARED_VALIDATE) return -EINVAL;
  const shared = type !== MAP_PRIVATE;
  if (flags & MAP_FIXED && addr % PAGE_SIZE !== 0) return -EINVAL;
  const anon = (flags & MAP_ANONYMOUS) !== 0;
  let file: FileState | null = null;
  let vmFlags =
    (prot & PROT_READ ? VM_READ : 0) |
    (prot & PROT_WRITE ? VM_WRITE : 0) |
    (prot & PROT_EXEC ? VM_EXEC : 0) |
    (flags & MAP_LOCKED ? VM_LOCKED : 0) |
    VM_MAYREAD |
    VM_MAYWRITE |
    VM_MAYEXEC;
  if (!anon) {
    file = fileOf(m, p, fd);
    if (file === null) return -EBADF;
    if (fopsOf(m, file).mmap === undefined) return -ENODEV;
    if (!readable(file)) return -EACCES;
    if (shared) {
      if (prot & PROT_WRITE && !writable(file)) return -EACCES;
      vmFlags |= VM_SHARED | VM_MAYSHARE;
      if (!writable(file)) vmFlags &= ~(VM_MAYWRITE | VM_SHARED);
    }
  } else if (shared) vmFlags |= VM_SHARED | VM_MAYSHARE;
  const mappingId = file === null ? -1 : st.inodes.get(file.inode)!.mapping;
  const at = getUnmappedArea(m, p, mappingId, addr, len, pgoff, flags);
  if (at < 0) return at;
  if (flags & MAP_FIXED_NOREPLACE && !rangeFree(st, p, at, at + len)) return -EEXIST;
  if (flags & MAP_FIXED) {
    const r = unmapRange(m, p, at, at + len, 'munmap');
    if (r !== 0) return r;
  }
  // Anonymous memory ignores the offset (after get_unmapped_area has seen it, as in do_mmap).
  if (anon) pgoff = shared ? 0 : at / PAGE_SIZE;
  const v = insertVma(m, p, {
    start: at,
    end: at + len,
    flags: vmFlags,
    pgoff,
    prot: { ...vmGetPageProt(vmFlags) },
    ops: -1,
    priv: undefined,
    file: file === null ? -1 : file.id,
    kind: anon ? 'anon' : 'file',
  });
  if (file !== null) {
    const mmapOp = fopsOf(m, file).mmap!;
    const r = mmapOp(fileHandle(m, file.id), vmaHandle(m, v.id), proc);
    if (typeof r !== 'number' || !Number.isInteger(r)) {
      throw new DmalabError(`the driver's mmap must return 0 or a negative errno, got ${String(r)}`);
    }
    if (r !== 0) {
      // The mapping is inconsistent: no further hooks; unmap what the driver mapped.
      v.ops = -1;
      pteClearRange(m, st.spaces.get(p.space)!, p.name, v.start, v.end, 'mmap-failed');
      removeVma(m, p, v, 'mmap-failed');
      return r;
    }
  }
  if (v.flags & VM_LOCKED && v.flags & VM_SPECIAL) v.flags &= ~VM_LOCKED_MASK;
  announceVma(m, p, v);
  if ((flags & MAP_POPULATE && !(flags & MAP_NONBLOCK)) || v.flags & VM_LOCKED) {
    mmPopulate(m, p, at, at + len, true);
  }
  return at;
}

/** `munmap()`: removes the mappings of [addr, addr+length). 0, or -EINVAL, or a driver's refusal to split. */
export function sysMunmap(proc: Process, addr: UserVa | number, length: number): number {
  const m = proc.machine;
  return apiCall(m, 'munmap', () => {
    checkInt(addr, 'addr');
    checkInt(length, 'length');
    const p = running(proc);
    if (p === null) return -ESRCH;
    if (addr % PAGE_SIZE !== 0 || length <= 0 || addr < 0) return -EINVAL;
    const len = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    if (addr + len > TASK_SIZE) return -EINVAL;
    return withMmapLock(m, 'write', () => unmapRange(m, p, addr, addr + len, 'munmap'));
  });
}

/** `ioctl()`: calls the driver's `unlockedIoctl(file, cmd, arg)`; -ENOTTY without one. */
export function sysIoctl(proc: Process, fd: number, cmd: number, arg: number): number {
  const m = proc.machine;
  return apiCall(m, 'ioctl', () => {
    const p = running(proc);
    if (p === null) return -ESRCH;
    const f = fileOf(m, p, fd);
    if (f === null) return -EBADF;
    const op = fopsOf(m, f).unlockedIoctl;
    if (op === undefined) return -ENOTTY;
    return op(fileHandle(m, f.id), cmd, arg, proc);
  });
}

function rw(proc: Process, fd: number, buf: number, count: number, write: boolean): number {
  const m = proc.machine;
  return apiCall(m, write ? 'write' : 'read', () => {
    checkInt(count, 'count');
    const p = running(proc);
    if (p === null) return -ESRCH;
    const f = fileOf(m, p, fd);
    if (f === null || !(write ? writable(f) : readable(f))) return -EBADF;
    const op = write ? fopsOf(m, f).write : fopsOf(m, f).read;
    if (op === undefined) return -EINVAL;
    if (count < 0 || buf < 0 || buf + count > TASK_SIZE) return -EFAULT;
    const ppos: LoffT = { value: f.pos };
    const r = op(fileHandle(m, f.id), buf as UserVa, count, ppos, proc);
    if (mmState(m).files.has(f.id)) f.pos = ppos.value;
    return r;
  });
}

/** `read()`: calls the driver's `read(file, buf, count, ppos)`, which copies to the user buffer. */
export function sysRead(proc: Process, fd: number, buf: UserVa | number, count: number): number {
  return rw(proc, fd, buf, count, false);
}

/** `write()`: calls the driver's `write(file, buf, count, ppos)`. */
export function sysWrite(proc: Process, fd: number, buf: UserVa | number, count: number): number {
  return rw(proc, fd, buf, count, true);
}

/**
 * A file not reached by a path, for objects like dma-bufs (kernel:
 * `anon_inode_getfile`; here each file gets its own inode and address
 * space, as `dma_buf_getfile`'s `alloc_anon_inode` gives). The file holds
 * one reference, which `fdInstall` hands to an fd or `fput` drops; its
 * driver's `release` runs when the last reference goes.
 */
export function anonInodeGetfile(
  m: Machine,
  name: string,
  fops: FileOperations,
  priv: unknown = undefined,
  flags: number = O_RDWR,
): File {
  return apiCall(m, 'anon_inode_getfile', () => {
    const fopsId = tableId(fops, 'fops', FOPS_MEMBERS);
    assertPlainData(priv, 'privateData');
    const st = mmState(m);
    const inodeId = nextId(st);
    const mappingId = nextId(st);
    st.inodes.set(inodeId, {
      id: inodeId,
      path: `anon_inode:${name}`,
      fops: fopsId,
      mapping: mappingId,
      registered: false,
    });
    st.mappings.set(mappingId, { id: mappingId, inode: inodeId, vmas: [] });
    const id = nextId(st);
    st.files.set(id, { id, inode: inodeId, refs: 1, accmode: flags & O_ACCMODE, priv, pos: 0 });
    return fileHandle(m, id);
  });
}

/**
 * `get_unused_fd_flags()` + `fd_install()`: gives the caller's reference on
 * `file` to the process's lowest free fd, and returns the fd.
 */
export function fdInstall(proc: Process, file: File): number {
  const m = proc.machine;
  return apiCall(m, 'fd_install', () => {
    const p = running(proc);
    if (p === null) return -ESRCH;
    const fd = lowestFreeFd(p);
    p.fds.set(fd, file.state.id);
    return fd;
  });
}

/** `fget()`: the file open at `fd`, with a reference taken (drop it with `fput`), or null. */
export function fget(proc: Process, fd: number): File | null {
  const m = proc.machine;
  return apiCall(m, 'fget', () => {
    const p = running(proc);
    const id = p?.fds.get(fd);
    if (id === undefined) return null;
    getFile(m, id);
    return fileHandle(m, id);
  });
}

/** `get_file()`: takes another reference on an open file. */
export function getFileRef(file: File): File {
  apiCall(file.machine, 'get_file', () => getFile(file.machine, file.state.id));
  return file;
}

/** `fput()`: drops a reference; the driver's `release` runs when it was the last. */
export function fputFile(file: File): void {
  apiCall(file.machine, 'fput', () => fput(file.machine, file.state.id));
}

/**
 * `vma_set_file()`: makes a VMA map another file (as `dma_buf_mmap` does
 * from an exporter's mmap): the new file's reference is taken, the old one
 * dropped, and the VMA moves to the new file's address space, so
 * `unmapMappingRange` on that one reaches it.
 */
export function vmaSetFile(vma: Vma, file: File): void {
  const m = vma.machine;
  apiCall(m, 'vma_set_file', () => {
    const st = mmState(m);
    const v = vma.state;
    const nf = file.state;
    getFile(m, nf.id);
    const old = v.file;
    if (old >= 0) {
      const mp = st.mappings.get(st.inodes.get(st.files.get(old)!.inode)!.mapping)!;
      mp.vmas.splice(mp.vmas.indexOf(v.id), 1);
    }
    v.file = nf.id;
    st.mappings.get(st.inodes.get(nf.inode)!.mapping)!.vmas.push(v.id);
    if (old >= 0) fput(m, old);
  });
}
