/**
 * `pgprot_t`: the protection and memory attribute a PTE is written with,
 * as a small plain value. The attribute is what the CPU's access uses
 * (machine/cpu.ts): `cached`, `write-combine` (x86 WC, arm64 Normal
 * non-cacheable) or `uncached` (x86 UC-, arm64 Device, PA-RISC no-cache).
 *
 * The arch helpers take the machine first because their result depends on
 * the profile (the kernel's are per-architecture macros): PA-RISC has no
 * write-combining, and only arm64 maps coherent DMA memory Normal-NC.
 */

import { DmalabError, type Machine, type MemAttr } from '../machine/index.js';
import { VM_EXEC, VM_READ, VM_SHARED, VM_WRITE } from './consts.js';

/** `pgprot_t`. */
export interface Pgprot {
  readonly attr: MemAttr;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
}

function prot(attr: MemAttr, read: boolean, write: boolean, exec: boolean): Pgprot {
  return Object.freeze({ attr, read, write, exec });
}

/** `PAGE_NONE`: no access (a PROT_NONE mapping). */
export const PAGE_NONE = prot('cached', false, false, false);
/** `PAGE_READONLY`. */
export const PAGE_READONLY = prot('cached', true, false, false);
/** `PAGE_COPY`: a private writable mapping before copy-on-write: read-only. */
export const PAGE_COPY = PAGE_READONLY;
/** `PAGE_SHARED`: a shared writable user mapping. */
export const PAGE_SHARED = prot('cached', true, true, false);
/** `PAGE_KERNEL`: the kernel's read-write cached mappings. */
export const PAGE_KERNEL = prot('cached', true, true, false);
/** `PAGE_KERNEL_RO`. */
export const PAGE_KERNEL_RO = prot('cached', true, false, false);
/** `PAGE_KERNEL_EXEC`. */
export const PAGE_KERNEL_EXEC = prot('cached', true, true, true);
/** `PAGE_KERNEL_NOCACHE` (x86's name): uncached kernel mappings, as `ioremap` makes them. */
export const PAGE_KERNEL_NOCACHE = prot('uncached', true, true, false);

const ATTRS: readonly MemAttr[] = ['cached', 'write-combine', 'uncached'];

/** Checks that a value is a `Pgprot` (a misuse of dmalab otherwise). */
export function assertPgprot(p: unknown, field = 'prot'): asserts p is Pgprot {
  const q = p as Pgprot;
  if (
    typeof p !== 'object' ||
    p === null ||
    !ATTRS.includes(q.attr) ||
    typeof q.read !== 'boolean' ||
    typeof q.write !== 'boolean' ||
    typeof q.exec !== 'boolean'
  ) {
    throw new DmalabError(
      `must be a pgprot ({ attr: 'cached' | 'write-combine' | 'uncached', read, write, exec }), got ${JSON.stringify(p)}`,
      { field },
    );
  }
}

function withAttr(p: Pgprot, attr: MemAttr): Pgprot {
  assertPgprot(p);
  return prot(attr, p.read, p.write, p.exec);
}

/** `pgprot_noncached()` (kernel: x86 UC-, arm64 Device-nGnRnE, parisc _PAGE_NO_CACHE). */
export function pgprotNoncached(_m: Machine, p: Pgprot): Pgprot {
  return withAttr(p, 'uncached');
}

/**
 * `pgprot_writecombine()`: write-combining on x86 (PAT WC) and arm64
 * (Normal non-cacheable); PA-RISC has none, and the generic fallback is
 * `pgprot_noncached`.
 */
export function pgprotWritecombine(m: Machine, p: Pgprot): Pgprot {
  return withAttr(p, m.profile.arch === 'parisc' ? 'uncached' : 'write-combine');
}

/**
 * `pgprot_dmacoherent()`: how coherent DMA memory is mapped for a
 * non-coherent device. arm64 defines it as Normal non-cacheable
 * (`write-combine` here); elsewhere the generic definition is
 * `pgprot_noncached`.
 */
export function pgprotDmacoherent(m: Machine, p: Pgprot): Pgprot {
  return withAttr(p, m.profile.arch === 'arm64' ? 'write-combine' : 'uncached');
}

/** `pgprot_decrypted()`: memory encryption is not modelled, so the protection is unchanged. */
export function pgprotDecrypted(p: Pgprot): Pgprot {
  assertPgprot(p);
  return p;
}

/**
 * `vm_get_page_prot()`: the protection of a user mapping from its flags
 * (the kernel's `protection_map`): a private writable mapping is read-only
 * until copy-on-write, a shared one is writable.
 */
export function vmGetPageProt(vmFlags: number): Pgprot {
  const read = (vmFlags & (VM_READ | VM_WRITE | VM_EXEC)) !== 0;
  const write = (vmFlags & VM_WRITE) !== 0 && (vmFlags & VM_SHARED) !== 0;
  const exec = (vmFlags & VM_EXEC) !== 0;
  if (!read) return PAGE_NONE;
  return prot('cached', true, write, exec);
}
