/**
 * Handles and address kinds shared by every layer (API.md §1).
 *
 * Addresses are plain numbers below 2^53. Branding keeps a bus address from
 * being passed where a physical one is expected: mixing them fails to
 * compile, converting needs an explicit, greppable cast.
 */

declare const brand: unique symbol;
/** A number that TypeScript keeps apart from other numbers. */
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** `struct page *`: the page frame number itself. Never 0 (frame 0 is reserved). */
export type Page = Brand<number, 'Page'>;
/** `phys_addr_t`. */
export type PhysAddr = Brand<number, 'PhysAddr'>;
/** `dma_addr_t`: what a device puts on its bus (an IOVA behind an IOMMU). */
export type DmaAddr = Brand<number, 'DmaAddr'>;
/** A kernel virtual address (linear map, vmalloc or ioremap area). */
export type KernelVa = Brand<number, 'KernelVa'>;
/** A user virtual address, below 2^47. */
export type UserVa = Brand<number, 'UserVa'>;
/** A DMA mask, as a bit count (see `DMA_BIT_MASK`). */
export type DmaMaskBits = Brand<number, 'DmaMaskBits'>;

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
/** Mask of the offset inside a page (for numbers below 2^32 only; use `offsetInPage` otherwise). */
export const PAGE_MASK_LOW = PAGE_SIZE - 1;

/**
 * The all-ones sentinel of a 64-bit kernel (`DMA_MAPPING_ERROR`, `SIZE_MAX`,
 * `ULONG_MAX`). dmalab's numbers stop at 2^53, so the sentinel is the largest
 * safe integer; `formatHex` prints it as the kernel does.
 */
export const ALL_ONES = Number.MAX_SAFE_INTEGER;
/** `ULONG_MAX`: the all-ones unsigned long. */
export const ULONG_MAX = ALL_ONES;
/** `SIZE_MAX`: the all-ones size_t. */
export const SIZE_MAX = ALL_ONES;
/** `UINT_MAX`: a 32-bit all-ones value, which does fit. */
export const UINT_MAX = 0xffff_ffff;

// The one virtual layout of every profile (API.md §1).
/** Top of user space (exclusive). */
export const TASK_SIZE = 2 ** 47;
/** Start of the linear map of physical memory. */
export const PAGE_OFFSET = 2 ** 52;
/** The linear map covers physical [0, 2^48). */
export const LINEAR_MAP_SIZE = 2 ** 48;
/** Start of the vmalloc area. */
export const VMALLOC_START = PAGE_OFFSET + 2 ** 49;
export const VMALLOC_END = PAGE_OFFSET + 2 ** 50;
/** Start of the ioremap area. */
export const IOREMAP_START = PAGE_OFFSET + 2 ** 50;
export const IOREMAP_END = PAGE_OFFSET + 2 ** 51;
/** Largest physical address space a machine can have. */
export const MAX_PHYS_BITS = 48;

/** Memory attribute carried by a PTE and by every CPU access. */
export type MemAttr = 'cached' | 'write-combine' | 'uncached';

/** `page_to_pfn()`: a `Page` is its pfn; no machine needed. */
export function pageToPfn(page: Page): number {
  return page;
}

/** Physical address of the first byte of a page frame (`PFN_PHYS()`). */
export function pfnPhys(pfn: number): PhysAddr {
  return (pfn * PAGE_SIZE) as PhysAddr;
}

/** `PHYS_PFN()`: the frame holding a physical address. */
export function physPfn(pa: number): number {
  return Math.floor(pa / PAGE_SIZE);
}

/** `offset_in_page()`, correct for numbers above 2^32. */
export function offsetInPage(addr: number): number {
  return addr % PAGE_SIZE;
}

/** `page_to_phys()`. */
export function pageToPhys(page: Page): PhysAddr {
  return (page * PAGE_SIZE) as PhysAddr;
}

/** `nth_page()`: the page `n` frames after `page`. */
export function nthPage(page: Page, n: number): Page {
  return (page + n) as Page;
}

/** `page_address()` for the linear map: the kernel virtual address of a page. */
export function pageAddress(page: Page): KernelVa {
  return (PAGE_OFFSET + page * PAGE_SIZE) as KernelVa;
}

/** `__va()`: the linear-map address of a physical address. */
export function physToVirt(pa: number): KernelVa {
  return (PAGE_OFFSET + pa) as KernelVa;
}

/** True when `va` lies in the linear map (`virt_addr_valid` without the RAM check). */
export function isLinearMapVa(va: number): boolean {
  return va >= PAGE_OFFSET && va < PAGE_OFFSET + LINEAR_MAP_SIZE;
}

/** True when `va` lies in the vmalloc area (`is_vmalloc_addr()`). */
export function isVmallocAddr(va: number): boolean {
  return va >= VMALLOC_START && va < VMALLOC_END;
}

/** True when `va` lies in the ioremap area. */
export function isIoremapAddr(va: number): boolean {
  return va >= IOREMAP_START && va < IOREMAP_END;
}

/**
 * `virt_to_page()` for the linear map. The result is only meaningful when
 * `pfnValid` says the frame has a page; no machine is needed to compute it.
 */
export function virtToPage(va: KernelVa | number): Page {
  return Math.floor((va - PAGE_OFFSET) / PAGE_SIZE) as Page;
}

/** `__pa()` for the linear map. */
export function linearVirtToPhys(va: KernelVa | number): PhysAddr {
  return (va - PAGE_OFFSET) as PhysAddr;
}

/** `PAGE_ALIGN()`. */
export function pageAlign(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

/** `ALIGN()` to a power of two `a`, safe above 2^32. */
export function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** `ALIGN_DOWN()` to a power of two `a`, safe above 2^32. */
export function alignDown(n: number, a: number): number {
  return Math.floor(n / a) * a;
}

/** `get_order()`: the smallest order whose block holds `size` bytes. */
export function getOrder(size: number): number {
  let order = 0;
  let span = PAGE_SIZE;
  while (span < size) {
    span *= 2;
    order++;
  }
  return order;
}

/** True for powers of two (including 1). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/**
 * Prints an address the way the kernel's `%llx`/`%pad` do: lowercase hex
 * with `0x`, and the all-ones sentinel as sixteen f's.
 */
export function formatHex(n: number, width = 0): string {
  if (n === ALL_ONES) return '0xffffffffffffffff';
  if (n < 0) return `-0x${(-n).toString(16)}`;
  return `0x${n.toString(16).padStart(width, '0')}`;
}

/** `%016llx`-style formatting used by dma-debug messages. */
export function formatHex16(n: number): string {
  return formatHex(n, 16);
}
