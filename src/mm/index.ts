/**
 * The mm layer's public face: address spaces, VMAs, page tables, the fault
 * path, PFN-map helpers, GUP, CPU loads and stores through the MMU, kernel
 * memory (kmalloc, vmalloc, vmap, ioremap, the stack), processes, a minimal
 * VFS for character devices, and the driver core.
 */

export * from './cacheflush.js';
export { FAULT_LIVELOCK, OOM_KILL, USE_AFTER_FREE } from './codes.js';
export * from './consts.js';
export * from './driver.js';
export * from './gup.js';
export {
  AddressSpace,
  File,
  type FileOperations,
  fileHandle,
  handleGone,
  Inode,
  type LoffT,
  Process,
  uniqueHandle,
  Vma,
  type VmFault,
  type VmOperationsStruct,
  vmaPages,
  vmFlagsClear,
  vmFlagsMod,
  vmFlagsSet,
} from './handles.js';
// Callback tables kept by id, for the layers above that store behaviour in state (dma_buf_ops, fence ops).
export { assertPlainData, tableById, tableId, tableKey } from './internal/registry.js';
export { initMm } from './internal/state.js';
export * from './kaccess.js';
export * from './kmalloc.js';
export * from './pfnmap.js';
export * from './pgprot.js';
export { exitProcess, spawnProcess } from './process.js';
export * from './query.js';
export { copyFromUser, copyToUser, userRead, userWrite } from './uaccess.js';
export * from './vfs.js';
export { MMAP_BASE } from './vma.js';
export {
  ioremap,
  ioremapCache,
  ioremapWc,
  iounmap,
  vfree,
  vmalloc,
  vmallocToPage,
  vmallocToPfn,
  vmallocUser,
  vmap,
  vmapAligned,
  vunmap,
  vzalloc,
} from './vmalloc.js';
