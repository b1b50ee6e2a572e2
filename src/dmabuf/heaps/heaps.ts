/**
 * dma-buf heaps (drivers/dma-buf/dma-heap.c, heaps/system_heap.c,
 * heaps/cma_heap.c): ready exporters that user space reaches as
 * /dev/dma_heap/<name> with DMA_HEAP_IOCTL_ALLOC, getting a dma-buf fd.
 *
 * - `system`: scattered pages, allocated greedily in 1 MiB, 64 KiB and
 *   4 KiB blocks (never a larger block after a smaller one), zeroed; user
 *   mmap populates the whole VMA with `remap_pfn_range`, page by page.
 * - `reserved` (the machine's CMA area, when it has one): one physically
 *   contiguous run from `cma_alloc`, zeroed; user mmap needs MAP_SHARED and
 *   is fault based (`vmf_insert_pfn`).
 */

import {
  __freePages,
  __GFP_COMP,
  __GFP_NORETRY,
  __GFP_NOWARN,
  __GFP_RECLAIM,
  __GFP_ZERO,
  allocPages,
  apiCall,
  cmaAlloc,
  cmaInfo,
  cmaRelease,
  DmalabError,
  EFAULT,
  EINVAL,
  ENOMEM,
  GFP_HIGHUSER,
  getOrder,
  type Machine,
  PAGE_SIZE,
  type Page,
  pageAddress,
} from '../../machine/index.js';
import {
  type FileOperations,
  kernelWrite,
  O_ACCMODE,
  type Process,
  registerChrdev,
  remapPfnRange,
  VM_DONTDUMP,
  VM_DONTEXPAND,
  VM_FAULT_SIGBUS,
  VM_IO,
  VM_MAYSHARE,
  VM_PFNMAP,
  VM_SHARED,
  type Vma,
  type VmOperationsStruct,
  vmFlagsSet,
  vmfInsertPfn,
} from '../../mm/index.js';
import { dmaBufExport, dmaBufFd, dmaBufPut } from '../dma-buf.js';
import { type DmaBuf, type DmaBufOps, dmaBufHandle } from '../state.js';
import { copyStructFromUser, copyStructToUser, ioc, le32, O_CLOEXEC, u32At } from '../uapi.js';
import { type HeapBufferPriv, heapBacking, heapCommonOps, heapPages, heapPriv } from './heap-buffer.js';

/** `struct dma_heap_allocation_data`: `{ __u64 len; __u32 fd; __u32 fd_flags; __u64 heap_flags; }`. */
export const DMA_HEAP_IOCTL_ALLOC = ioc(3, 0x48, 0, 24);
export const DMA_HEAP_VALID_FD_FLAGS = O_CLOEXEC | O_ACCMODE;
export const DMA_HEAP_VALID_HEAP_FLAGS = 0;

/** The system heap's block orders, largest first. */
const ORDERS = [8, 4, 0] as const;
/** Large blocks: no retry and no reclaim, so that fragmentation falls back to smaller ones quickly. */
const HIGH_ORDER_GFP =
  ((GFP_HIGHUSER | __GFP_ZERO | __GFP_NOWARN | __GFP_NORETRY) & ~__GFP_RECLAIM) | __GFP_COMP;
const LOW_ORDER_GFP = GFP_HIGHUSER | __GFP_ZERO;

function systemRelease(dmabuf: DmaBuf): void {
  const p = heapPriv(dmabuf);
  for (let i = 0; i < p.chunks.length; i += 2) {
    __freePages(dmabuf.machine, p.chunks[i]! as Page, Math.log2(p.chunks[i + 1]!));
  }
}

/** `system_heap_mmap()`: every page of the VMA mapped now, from `vm_pgoff`. */
function systemMmap(dmabuf: DmaBuf, vma: Vma): number {
  const pages = heapPages(heapPriv(dmabuf));
  let addr = vma.vmStart as number;
  for (let i = vma.vmPgoff; i < pages.length && addr < vma.vmEnd; i++, addr += PAGE_SIZE) {
    const r = remapPfnRange(vma, addr, pages[i]!, PAGE_SIZE, vma.vmPageProt);
    if (r !== 0) return r;
  }
  return 0;
}

const systemHeapOps: DmaBufOps = { ...heapCommonOps, mmap: systemMmap, release: systemRelease };

/** `system_heap_allocate()`. */
function systemAllocate(m: Machine, len: number, fdFlags: number): DmaBuf | number {
  const chunks: number[] = [];
  let left = len;
  let maxOrder: number = ORDERS[0];
  while (left > 0) {
    let got = false;
    for (const order of ORDERS) {
      const bytes = PAGE_SIZE << order;
      if (left < bytes || order > maxOrder) continue;
      const page = allocPages(m, order === 0 ? LOW_ORDER_GFP : HIGH_ORDER_GFP, order);
      if (page === null) continue;
      chunks.push(page, 1 << order);
      left -= bytes;
      maxOrder = order;
      got = true;
      break;
    }
    if (!got) {
      for (let i = 0; i < chunks.length; i += 2)
        __freePages(m, chunks[i]! as Page, Math.log2(chunks[i + 1]!));
      return -ENOMEM;
    }
  }
  return exportHeapBuffer(m, { heap: 'system', len, chunks }, systemHeapOps, fdFlags, () => {
    for (let i = 0; i < chunks.length; i += 2) __freePages(m, chunks[i]! as Page, Math.log2(chunks[i + 1]!));
  });
}

function exportHeapBuffer(
  m: Machine,
  priv: HeapBufferPriv,
  ops: DmaBufOps,
  fdFlags: number,
  undo: () => void,
): DmaBuf | number {
  const r = dmaBufExport(m, {
    expName: priv.heap,
    size: priv.len,
    ops,
    flags: fdFlags,
    priv,
    backing: heapBacking(priv),
  });
  if (typeof r === 'number') undo();
  return r;
}

/** The CMA heap's fault handler: one PFN per fault; past the buffer is SIGBUS. */
const cmaVmOps: VmOperationsStruct = {
  fault(vmf) {
    const m = vmf.vma.machine;
    const { buf } = vmf.vma.vmPrivateData as { buf: number };
    const pages = heapPages(heapPriv(dmaBufHandle(m, buf)));
    if (vmf.pgoff >= pages.length) return VM_FAULT_SIGBUS;
    return vmfInsertPfn(vmf.vma, vmf.address, pages[vmf.pgoff]!);
  },
};

/** `cma_heap_mmap()`: shared mappings only; PTEs come on fault. */
function cmaMmap(dmabuf: DmaBuf, vma: Vma): number {
  if ((vma.vmFlags & (VM_SHARED | VM_MAYSHARE)) === 0) return -EINVAL;
  vmFlagsSet(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
  vma.vmOps = cmaVmOps;
  vma.vmPrivateData = { buf: dmabuf.id };
  return 0;
}

function cmaHeapRelease(dmabuf: DmaBuf): void {
  const p = heapPriv(dmabuf);
  cmaRelease(dmabuf.machine, p.chunks[0]! as Page, p.chunks[1]!);
}

const cmaHeapOps: DmaBufOps = { ...heapCommonOps, mmap: cmaMmap, release: cmaHeapRelease };

/** CONFIG_CMA_ALIGNMENT's default. */
const CMA_ALIGNMENT = 8;

/** `cma_heap_allocate()`. */
function cmaAllocate(m: Machine, len: number, fdFlags: number): DmaBuf | number {
  const count = len / PAGE_SIZE;
  const page = cmaAlloc(m, count, Math.min(getOrder(len), CMA_ALIGNMENT));
  if (page === null) return -ENOMEM;
  // Cleared through the kernel's linear map, as the heap does for lowmem pages.
  kernelWrite(m, pageAddress(page), new Uint8Array(len));
  return exportHeapBuffer(m, { heap: CMA_HEAP, len, chunks: [page, count] }, cmaHeapOps, fdFlags, () =>
    cmaRelease(m, page, count),
  );
}

/** The CMA heap's name: the default CMA area's. */
export const CMA_HEAP = 'reserved';

/** The heaps of a machine: the system heap always, the CMA heap when there is a CMA area. */
export function dmaHeapNames(m: Machine): string[] {
  return cmaInfo(m) === null ? ['system'] : ['system', CMA_HEAP];
}

/**
 * `dma_heap_buffer_alloc()`: a buffer of `len` bytes (rounded up to pages)
 * from the heap called `heapName` (dmalab takes the name for the kernel's
 * `struct dma_heap *`). Returns the dma-buf or a negative errno: -EINVAL for
 * a zero length or flags outside the valid sets, -ENOMEM when the memory is
 * not there.
 */
export function dmaHeapBufferAlloc(
  m: Machine,
  heapName: string,
  len: number,
  fdFlags: number,
  heapFlags: number,
): DmaBuf | number {
  return apiCall(m, 'dma_heap_buffer_alloc', () => {
    if (!dmaHeapNames(m).includes(heapName)) {
      throw new DmalabError(
        `no dma-buf heap '${heapName}' on this machine (heaps: ${dmaHeapNames(m).join(', ')})`,
        {
          field: 'heapName',
        },
      );
    }
    if (!Number.isInteger(len) || len < 0) return -EINVAL;
    // Heap flags are tested whole: no bit is valid, and `&` would see only the low 32 of a u64.
    if ((fdFlags & ~DMA_HEAP_VALID_FD_FLAGS) !== 0 || heapFlags !== DMA_HEAP_VALID_HEAP_FLAGS) return -EINVAL;
    const size = Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    if (size === 0) return -EINVAL;
    const flags = fdFlags & O_ACCMODE;
    return heapName === 'system' ? systemAllocate(m, size, flags) : cmaAllocate(m, size, flags);
  });
}

/**
 * `dma_heap_ioctl()`: the command is chosen by its `_IOC_NR` alone (an nr past
 * the table is -EINVAL); the user's struct may be shorter or longer than the
 * kernel's — what it passes in is copied, the rest zeroed, and as many bytes
 * as it asked for copied back. Then `dma_heap_ioctl_allocate()`: a new dma-buf
 * fd written back into the struct.
 */
function heapIoctl(heapName: string, ucmd: number, arg: number, proc: Process): number {
  const u = ucmd >>> 0;
  if ((u & 0xff) >= 1) return -EINVAL; // the table holds DMA_HEAP_IOCTL_ALLOC alone
  const kcmd = DMA_HEAP_IOCTL_ALLOC;
  const usize = (u >>> 16) & 0x3fff;
  const both = (u >>> 30) & (kcmd >>> 30); // _IOC_WRITE (1): user → kernel, _IOC_READ (2): kernel → user
  const inSize = both & 1 ? usize : 0;
  const outSize = both & 2 ? usize : 0;
  const m = proc.machine;
  const d = new Uint8Array(Math.max(inSize, outSize, 24));
  if (inSize > 0) {
    const got = copyStructFromUser(proc, arg, inSize);
    if (got === null) return -EFAULT;
    d.set(got);
  }
  const len = u32At(d, 0) + u32At(d, 4) * 2 ** 32;
  const fd = u32At(d, 8);
  const fdFlags = u32At(d, 12);
  if (fd !== 0) return -EINVAL;
  // No heap flag is valid (DMA_HEAP_VALID_HEAP_FLAGS is 0): test both halves, as JS bit operators see 32 bits.
  if ((u32At(d, 16) | u32At(d, 20)) !== 0) return -EINVAL;
  const dmabuf = dmaHeapBufferAlloc(m, heapName, len, fdFlags, 0);
  if (typeof dmabuf === 'number') return dmabuf;
  const nfd = dmaBufFd(proc, dmabuf, fdFlags & O_CLOEXEC);
  if (nfd < 0) {
    dmaBufPut(dmabuf);
    return nfd;
  }
  d.set(le32(nfd), 8);
  // The fd stays installed even if the copy back fails, as in the kernel.
  if (outSize > 0 && copyStructToUser(proc, arg, d.subarray(0, outSize)) !== 0) return -EFAULT;
  return 0;
}

const heapFops: FileOperations = {
  unlockedIoctl(file, cmd, arg, current) {
    return heapIoctl(file.path.slice('/dev/dma_heap/'.length), cmd, arg, current);
  },
};

/** Registers /dev/dma_heap/<name> for each heap of the machine (boot). */
export function registerDmaHeaps(m: Machine): void {
  for (const name of dmaHeapNames(m)) registerChrdev(m, `/dev/dma_heap/${name}`, heapFops);
}
