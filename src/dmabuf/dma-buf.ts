/**
 * The exporter side of drivers/dma-buf/dma-buf.c: exporting a buffer as an
 * anonymous file, installing it in a process's file table, getting it back
 * from an fd, the references (the file's), and the final release.
 */

import {
  apiCall,
  BUG,
  DmalabError,
  EBADF,
  EINVAL,
  type Machine,
  PAGE_SIZE,
  reportFinding,
} from '../machine/index.js';
import {
  anonInodeGetfile,
  assertPlainData,
  type File,
  type FileOperations,
  fdInstall,
  fget,
  fputFile,
  getFileRef,
  O_ACCMODE,
  O_RDWR,
  type Process,
  tableId,
  type Vma,
} from '../mm/index.js';
import { warn } from './attach.js';
import { exporterMmap } from './cpu-access.js';
import type { DmaResv } from './fence-state.js';
import { dmaBufIoctl } from './ioctl.js';
import { releaseResv, resvForExport } from './resv-link.js';
import {
  DMA_BUF_OPS_MEMBERS,
  type DmaBuf,
  type DmaBufOps,
  type DmaBufState,
  dmaBufHandle,
  dmabufState,
} from './state.js';
import { O_NONBLOCK } from './uapi.js';

/**
 * `struct dma_buf_export_info` (`DEFINE_DMA_BUF_EXPORT_INFO` fills
 * `expName` with the module name; here the exporter names itself).
 * `backing` is a dmalab extension: the physical pieces behind the buffer
 * as flat [phys, length, …], which the checker uses to know whose bytes a
 * CPU or device access touches; `dmaBufSetBacking` updates it on a move.
 */
export interface DmaBufExportInfo {
  expName: string;
  size: number;
  ops: DmaBufOps;
  /** `O_RDWR` by default; only O_ACCMODE and O_NONBLOCK are kept. */
  flags?: number;
  /** The exporter's private data: plain data, required. */
  priv: unknown;
  /** A reservation object to share (e.g. a buffer object's); otherwise the buffer gets its own. */
  resv?: DmaResv;
  backing?: readonly number[];
}

function checkBacking(backing: readonly number[] | undefined, size: number): number[] {
  if (backing === undefined) return [];
  if (!Array.isArray(backing) || backing.length % 2 !== 0) {
    throw new DmalabError('backing must be flat [phys, length, …] pairs', { field: 'backing' });
  }
  let total = 0;
  for (let i = 0; i < backing.length; i++) {
    const v = backing[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || (i % 2 === 1 && v === 0)) {
      throw new DmalabError(`backing[${i}] must be a non-negative integer (lengths positive), got ${v}`, {
        field: 'backing',
      });
    }
    if (i % 2 === 1) total += v;
  }
  if (total > size) {
    throw new DmalabError(`backing covers ${total} bytes, more than the buffer's ${size}`, {
      field: 'backing',
    });
  }
  return [...backing];
}

/**
 * The dma-buf file's operations (`dma_buf_fops`): release drops the
 * buffer, mmap goes to the exporter (`dma_buf_mmap_internal`), ioctl is
 * the UAPI of include/uapi/linux/dma-buf.h.
 */
const dmaBufFops: FileOperations = {
  release(_inode, file) {
    dmaBufRelease(file);
    return 0;
  },
  mmap(file: File, vma: Vma) {
    const m = file.machine;
    const dmabuf = dmaBufOfFile(m, file.id);
    if (dmabuf === null || dmabuf.ops.mmap === undefined) return -EINVAL;
    // The VMA may not reach past the buffer.
    if (vma.vmPgoff + (vma.vmEnd - vma.vmStart) / PAGE_SIZE > Math.floor(dmabuf.size / PAGE_SIZE))
      return -EINVAL;
    return exporterMmap(m, dmabuf, vma);
  },
  unlockedIoctl(file, cmd, arg, current) {
    const dmabuf = dmaBufOfFile(file.machine, file.id);
    if (dmabuf === null) return -EINVAL;
    return dmaBufIoctl(dmabuf, cmd, arg, current);
  },
};

/** `is_dma_buf_file()` and `file->private_data`: the buffer of a file, or null. */
export function dmaBufOfFile(m: Machine, fileId: number): DmaBuf | null {
  const id = dmabufState(m).byFile.get(fileId);
  return id === undefined ? null : dmaBufHandle(m, id);
}

/** `dma_buf_release()`: the last reference went. */
function dmaBufRelease(file: File): void {
  const m = file.machine;
  const st = dmabufState(m);
  const dmabuf = dmaBufOfFile(m, file.id);
  if (dmabuf === null) return;
  const b = dmabuf.state;
  if (b.vmappingCounter !== 0) {
    reportFinding(m, BUG.code, `dma_buf_release: dma-buf ${b.id} (${b.expName}) is still vmapped`, {
      details: { buf: b.id, vmappingCounter: b.vmappingCounter },
    });
  }
  dmabuf.ops.release(dmabuf);
  releaseResv(m, b);
  if (b.attachments.length > 0) {
    warn(
      m,
      `dma_buf_release: dma-buf ${b.id} (${b.expName}) released with ${b.attachments.length} attachment(s)`,
    );
  }
  if (m.bus.wants['dmabuf-release']) m.bus.emit({ type: 'dmabuf-release', buf: b.id });
  st.byFile.delete(file.id);
  st.bufs.delete(b.id);
}

/**
 * `dma_buf_export()`: wraps the exporter's buffer in a dma-buf (an
 * anonymous file holding one reference). Returns the buffer, or -EINVAL
 * with a WARN when `priv`, `mapDmaBuf`, `unmapDmaBuf` or `release` is
 * missing, or when `pin` and `unpin` do not come together.
 */
export function dmaBufExport(m: Machine, exportInfo: DmaBufExportInfo): DmaBuf | number {
  return apiCall(m, 'dma_buf_export', () => {
    if (typeof exportInfo !== 'object' || exportInfo === null) {
      throw new DmalabError('dmaBufExport: exportInfo must be an object');
    }
    const { expName, size, ops, priv } = exportInfo;
    if (typeof expName !== 'string' || expName === '') {
      throw new DmalabError('dmaBufExport: expName must be a non-empty string', { field: 'expName' });
    }
    if (!Number.isInteger(size) || size < 0) {
      throw new DmalabError(`dmaBufExport: size must be a non-negative integer, got ${size}`, {
        field: 'size',
      });
    }
    if (
      priv === undefined ||
      priv === null ||
      typeof ops !== 'object' ||
      ops === null ||
      typeof ops.mapDmaBuf !== 'function' ||
      typeof ops.unmapDmaBuf !== 'function' ||
      typeof ops.release !== 'function'
    ) {
      warn(m, `dma_buf_export (${expName}): priv, ops, map_dma_buf, unmap_dma_buf and release are required`);
      return -EINVAL;
    }
    if ((ops.pin === undefined) !== (ops.unpin === undefined)) {
      warn(m, `dma_buf_export (${expName}): pin and unpin must come together`);
      return -EINVAL;
    }
    const opsId = tableId(ops, 'ops', DMA_BUF_OPS_MEMBERS);
    assertPlainData(priv, 'priv');
    const backing = checkBacking(exportInfo.backing, size);
    const flags = (exportInfo.flags ?? O_RDWR) & (O_ACCMODE | O_NONBLOCK);
    const st = dmabufState(m);
    const id = st.nextId++;
    const file = anonInodeGetfile(m, 'dmabuf', dmaBufFops, undefined, flags);
    const b: DmaBufState = {
      id,
      size,
      ops: opsId,
      expName,
      name: '',
      priv,
      file: file.id,
      flags,
      attachments: [],
      vmappingCounter: 0,
      vmapPtr: null,
      backing,
      resv: -1,
      ownResv: false,
    };
    st.bufs.set(id, b);
    st.byFile.set(file.id, id);
    const resv = resvForExport(m, exportInfo.resv);
    b.resv = resv.id;
    b.ownResv = resv.own;
    if (m.bus.wants['dmabuf-export']) {
      m.bus.emit({
        type: 'dmabuf-export',
        buf: id,
        exporter: expName,
        size,
        dynamic: ops.pin !== undefined,
        backing,
        resv: b.resv,
      });
    }
    return dmaBufHandle(m, id);
  });
}

/**
 * dmalab extension: the exporter declares where the buffer's bytes now
 * are (flat [phys, length, …]) after moving it, so the checker follows.
 */
export function dmaBufSetBacking(dmabuf: DmaBuf, backing: readonly number[]): void {
  const m = dmabuf.machine;
  apiCall(m, 'dma_buf_set_backing', () => {
    const b = dmabuf.state;
    b.backing = checkBacking(backing, b.size);
    if (m.bus.wants['dmabuf-backing']) m.bus.emit({ type: 'dmabuf-backing', buf: b.id, backing: b.backing });
  });
}

/**
 * `dma_buf_fd()`: installs the buffer in the process's lowest free fd,
 * handing it the caller's reference. Of `flags` only `O_CLOEXEC` means
 * anything to `get_unused_fd_flags`, and dmalab has no exec to close on.
 * Returns the fd or a negative errno.
 */
export function dmaBufFd(proc: Process, dmabuf: DmaBuf, flags: number): number {
  const m = proc.machine;
  return apiCall(m, 'dma_buf_fd', () => {
    if (dmabuf === null || dmabuf === undefined || dmabuf.machine !== m) return -EINVAL;
    if (!dmabufState(m).bufs.has(dmabuf.id)) return -EINVAL;
    if (!Number.isInteger(flags)) {
      throw new DmalabError(`dmaBufFd: flags must be an integer (O_CLOEXEC), got ${flags}`, {
        field: 'flags',
      });
    }
    return fdInstall(proc, dmabuf.file);
  });
}

/**
 * `dma_buf_get()`: the buffer behind a process's fd, with a reference
 * taken (drop it with `dmaBufPut`); -EBADF for no file, -EINVAL for a file
 * that is not a dma-buf.
 */
export function dmaBufGet(proc: Process, fd: number): DmaBuf | number {
  const m = proc.machine;
  return apiCall(m, 'dma_buf_get', () => {
    const file = fget(proc, fd);
    if (file === null) return -EBADF;
    const dmabuf = dmaBufOfFile(m, file.id);
    if (dmabuf === null) {
      fputFile(file);
      return -EINVAL;
    }
    return dmabuf;
  });
}

/** `get_dma_buf()`: takes another reference (the file's). */
export function getDmaBuf(dmabuf: DmaBuf): void {
  apiCall(dmabuf.machine, 'get_dma_buf', () => {
    getFileRef(dmabuf.file);
  });
}

/** `dma_buf_put()`: drops a reference; the last one releases the buffer through the exporter. */
export function dmaBufPut(dmabuf: DmaBuf): void {
  const m = dmabuf.machine;
  apiCall(m, 'dma_buf_put', () => {
    if (!dmabufState(m).bufs.has(dmabuf.id)) {
      warn(m, `dma_buf_put: dma-buf ${dmabuf.id} was already released`);
      return;
    }
    fputFile(dmabuf.file);
  });
}
