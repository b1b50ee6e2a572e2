/**
 * The kernel's constants for virtual memory, faults, GUP, mmap and the
 * driver core, with the kernel's names and values (include/linux/mm.h,
 * include/linux/mm_types.h, include/uapi/asm-generic/mman-common.h,
 * include/linux/vmalloc.h, include/linux/device/bus.h).
 *
 * Flag words stay below 2^31 so JavaScript's 32-bit bitwise operators are
 * safe on them (VM_MERGEABLE, bit 31, is left out: KSM is not modelled).
 */

// vm_area_struct->vm_flags (include/linux/mm.h).
export const VM_NONE = 0x0;
export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_SHARED = 0x8;
export const VM_MAYREAD = 0x10;
export const VM_MAYWRITE = 0x20;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
export const VM_GROWSDOWN = 0x100;
export const VM_PFNMAP = 0x400;
export const VM_LOCKED = 0x2000;
export const VM_IO = 0x4000;
export const VM_SEQ_READ = 0x8000;
export const VM_RAND_READ = 0x10000;
export const VM_DONTCOPY = 0x20000;
export const VM_DONTEXPAND = 0x40000;
export const VM_LOCKONFAULT = 0x80000;
export const VM_ACCOUNT = 0x100000;
export const VM_NORESERVE = 0x200000;
export const VM_HUGETLB = 0x400000;
export const VM_SYNC = 0x800000;
export const VM_WIPEONFORK = 0x2000000;
export const VM_DONTDUMP = 0x4000000;
export const VM_MIXEDMAP = 0x10000000;
export const VM_HUGEPAGE = 0x20000000;
export const VM_NOHUGEPAGE = 0x40000000;
/** `VM_SPECIAL`: mappings that mlock, populate and merging leave alone. */
export const VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;
export const VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT;

// enum vm_fault_reason (include/linux/mm_types.h).
export type VmFaultT = number;
export const VM_FAULT_OOM = 0x000001;
export const VM_FAULT_SIGBUS = 0x000002;
export const VM_FAULT_MAJOR = 0x000004;
export const VM_FAULT_HWPOISON = 0x000010;
export const VM_FAULT_HWPOISON_LARGE = 0x000020;
export const VM_FAULT_SIGSEGV = 0x000040;
export const VM_FAULT_NOPAGE = 0x000100;
export const VM_FAULT_LOCKED = 0x000200;
export const VM_FAULT_RETRY = 0x000400;
export const VM_FAULT_FALLBACK = 0x000800;
export const VM_FAULT_DONE_COW = 0x001000;
export const VM_FAULT_ERROR =
  VM_FAULT_OOM |
  VM_FAULT_SIGBUS |
  VM_FAULT_SIGSEGV |
  VM_FAULT_HWPOISON |
  VM_FAULT_HWPOISON_LARGE |
  VM_FAULT_FALLBACK;

// enum fault_flag (include/linux/mm_types.h).
export const FAULT_FLAG_WRITE = 1 << 0;
export const FAULT_FLAG_MKWRITE = 1 << 1;
export const FAULT_FLAG_ALLOW_RETRY = 1 << 2;
export const FAULT_FLAG_RETRY_NOWAIT = 1 << 3;
export const FAULT_FLAG_KILLABLE = 1 << 4;
export const FAULT_FLAG_TRIED = 1 << 5;
export const FAULT_FLAG_USER = 1 << 6;
export const FAULT_FLAG_REMOTE = 1 << 7;
export const FAULT_FLAG_INSTRUCTION = 1 << 8;
export const FAULT_FLAG_INTERRUPTIBLE = 1 << 9;
export const FAULT_FLAG_UNSHARE = 1 << 10;

// GUP flags (include/linux/mm_types.h; FOLL_PIN is internal to mm/).
export const FOLL_WRITE = 1 << 0;
export const FOLL_GET = 1 << 1;
export const FOLL_DUMP = 1 << 2;
export const FOLL_FORCE = 1 << 3;
export const FOLL_NOWAIT = 1 << 4;
export const FOLL_NOFAULT = 1 << 5;
export const FOLL_HWPOISON = 1 << 6;
export const FOLL_ANON = 1 << 7;
export const FOLL_LONGTERM = 1 << 8;
export const FOLL_SPLIT_PMD = 1 << 9;
export const FOLL_PCI_P2PDMA = 1 << 10;
export const FOLL_INTERRUPTIBLE = 1 << 11;
export const FOLL_HONOR_NUMA_FAULT = 1 << 12;
/** mm/internal.h: set by `pin_user_pages*()`, never by callers. */
export const FOLL_PIN = 1 << 19;

// mmap(2) (include/uapi/asm-generic/mman-common.h, mman.h; the x86 values).
export const PROT_NONE = 0x0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_TYPE = 0x0f;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_LOCKED = 0x2000;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_NONBLOCK = 0x10000;
export const MAP_FIXED_NOREPLACE = 0x100000;
/** `MAP_FAILED`: what libc's mmap returns on failure; `sysMmap` returns the negative errno instead, as the syscall does. */
export const MAP_FAILED = -1;

// open(2) access modes.
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_ACCMODE = 3;

// vm_struct flags (include/linux/vmalloc.h): the kernel's own mappings.
export const VM_IOREMAP = 0x1;
export const VM_ALLOC = 0x2;
export const VM_MAP = 0x4;
export const VM_USERMAP = 0x8;
export const VM_DMA_COHERENT = 0x10;
export const VM_NO_GUARD = 0x40;
export const VM_MAP_PUT_PAGES = 0x200;

// Bus notifier actions (include/linux/device/bus.h).
export const BUS_NOTIFY_ADD_DEVICE = 0x1;
export const BUS_NOTIFY_DEL_DEVICE = 0x2;
export const BUS_NOTIFY_REMOVED_DEVICE = 0x3;
export const BUS_NOTIFY_BIND_DRIVER = 0x4;
export const BUS_NOTIFY_BOUND_DRIVER = 0x5;
export const BUS_NOTIFY_UNBIND_DRIVER = 0x6;
export const BUS_NOTIFY_UNBOUND_DRIVER = 0x7;
export const BUS_NOTIFY_DRIVER_NOT_BOUND = 0x8;

/** `THREAD_SIZE`: a kernel stack, 16 KiB on x86_64, arm64 and 64-bit parisc. */
export const THREAD_SIZE = 16384;
/** `mmap_min_addr`'s usual default. */
export const MMAP_MIN_ADDR = 65536;

/** `is_cow_mapping()`: private and may become writable. */
export function isCowMapping(flags: number): boolean {
  return (flags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;
}

/** `vma_is_accessible()` on flags: readable, writable or executable. */
export function vmFlagsAccessible(flags: number): boolean {
  return (flags & (VM_READ | VM_WRITE | VM_EXEC)) !== 0;
}

const VM_FAULT_NAMES: readonly [number, string][] = [
  [VM_FAULT_OOM, 'OOM'],
  [VM_FAULT_SIGBUS, 'SIGBUS'],
  [VM_FAULT_MAJOR, 'MAJOR'],
  [VM_FAULT_HWPOISON, 'HWPOISON'],
  [VM_FAULT_HWPOISON_LARGE, 'HWPOISON_LARGE'],
  [VM_FAULT_SIGSEGV, 'SIGSEGV'],
  [VM_FAULT_NOPAGE, 'NOPAGE'],
  [VM_FAULT_LOCKED, 'LOCKED'],
  [VM_FAULT_RETRY, 'RETRY'],
  [VM_FAULT_FALLBACK, 'FALLBACK'],
  [VM_FAULT_DONE_COW, 'DONE_COW'],
];

/** Renders a `vm_fault_t` as the kernel's `VM_FAULT_RESULT_TRACE` does: `NOPAGE|LOCKED`, `0` for none. */
export function formatVmFault(code: VmFaultT): string {
  if (code === 0) return '0';
  const parts: string[] = [];
  let rest = code;
  for (const [bit, name] of VM_FAULT_NAMES) {
    if (rest & bit) {
      parts.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) parts.push(`0x${rest.toString(16)}`);
  return parts.join('|');
}
