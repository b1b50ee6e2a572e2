import { describe, expect, it } from 'vitest';
import { findings, machine } from '../../test/mm-kit.js';
import {
  allocPages,
  GFP_KERNEL,
  type Machine,
  type Page,
  pageAddress,
  pageToPhys,
} from '../machine/index.js';
import { flushDcachePage, flushKernelVmapRange, invalidateKernelVmapRange } from './cacheflush.js';
import {
  FOLL_WRITE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from './consts.js';
import { getUserPages } from './gup.js';
import type { Process } from './handles.js';
import { kernelRead, kernelWrite } from './kaccess.js';
import { vmInsertPage } from './pfnmap.js';
import { PAGE_KERNEL } from './pgprot.js';
import { spawnProcess } from './process.js';
import { pteLookup } from './query.js';
import { userRead, userWrite } from './uaccess.js';
import { registerChrdev, sysMmap, sysOpen } from './vfs.js';
import { vmap, vmapAligned } from './vmalloc.js';

const C = 4 * 1024 * 1024;
const mod = (x: number) => ((x % C) + C) % C;

/** A device whose every mapping shows one RAM page (inserted at mmap, whatever the offset). */
function onePageDevice(m: Machine): { page: Page; proc: Process; fd: number } {
  const page = allocPages(m, GFP_KERNEL, 0)!;
  registerChrdev(m, '/dev/one', { mmap: (_f, vma) => vmInsertPage(vma, vma.vmStart, page) });
  const proc = spawnProcess(m, 'app');
  return { page, proc, fd: sysOpen(proc, '/dev/one') };
}

describe('VIPT aliases (PA-RISC, 4 MiB congruence)', () => {
  it('a user mapping and the kernel linear map of one page diverge unless congruent', () => {
    const m = machine('parisc', { check: false }); // raw aliasing: the checker's view of it is tested in src/debug
    const { page, proc, fd } = onePageDevice(m);
    const pa = pageToPhys(page);
    const va = sysMmap(proc, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    expect(mod(va - pa)).not.toBe(0);
    expect(userWrite(proc, va, new Uint8Array([0xab, 0xcd]))).toBe(true);
    // The kernel alias has its own lines: it still sees memory's old bytes.
    expect(kernelRead(m, pageAddress(page), 2)).toEqual(new Uint8Array([0, 0]));
    // (A different line: two dirty aliases of one line would overwrite each other at write-back.)
    kernelWrite(m, pageAddress(page) + 64, new Uint8Array([0x11]));
    expect(userRead(proc, va + 64, 1)).toEqual(new Uint8Array([0]));
    // flush_dcache_page writes back and drops every alias: both now agree with memory.
    flushDcachePage(m, page);
    expect(kernelRead(m, pageAddress(page), 2)).toEqual(new Uint8Array([0xab, 0xcd]));
    expect(userRead(proc, va + 64, 1)).toEqual(new Uint8Array([0x11]));

    // A mapping at an offset chosen to land congruent with the kernel alias shares its lines.
    const filp = mod(va) / 4096;
    const pgoff = (((pa / 4096 - filp) % 1024) + 1024) % 1024;
    const vc = sysMmap(proc, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, pgoff * 4096);
    expect(mod(vc - pa)).toBe(0);
    expect(userWrite(proc, vc + 16, new Uint8Array([0x5a]))).toBe(true);
    expect(kernelRead(m, pageAddress(page) + 16, 1)).toEqual(new Uint8Array([0x5a]));
    expect(findings(m)).toEqual([]);
  });

  it('coherent on PIPT profiles whatever the addresses', () => {
    for (const profile of ['x86_64', 'arm64-noncoherent']) {
      const m = machine(profile);
      const { page, proc, fd } = onePageDevice(m);
      const va = sysMmap(proc, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      userWrite(proc, va, new Uint8Array([0xab]));
      expect(kernelRead(m, pageAddress(page), 1)).toEqual(new Uint8Array([0xab]));
    }
  });

  it('gives shared mappings of one file offset congruent addresses, in one process and across processes', () => {
    const m = machine('parisc');
    const { proc, fd } = onePageDevice(m);
    const a = sysMmap(proc, 0, 4096, PROT_READ, MAP_SHARED, fd, 0);
    const b = sysMmap(proc, 0, 4096, PROT_READ, MAP_SHARED, fd, 0);
    const c = sysMmap(proc, 0, 4096, PROT_READ, MAP_SHARED, fd, 3 * 4096);
    const other = spawnProcess(m, 'other');
    const d = sysMmap(other, 0x1000_0000, 4096, PROT_READ, MAP_SHARED, sysOpen(other, '/dev/one'), 0);
    expect(a).not.toBe(b);
    expect([mod(a - b), mod(a - d), mod(c - a)]).toEqual([0, 0, 3 * 4096]);
    // The hint was moved to the file's colour.
    expect(d).toBeGreaterThanOrEqual(0x1000_0000);
    // The two aliases of the page share lines: one's write is the other's read.
    const { page } = { page: pteLookup(proc, a)!.pfn };
    expect(pteLookup(proc, b)!.pfn).toBe(page);
    // On x86 nothing is coloured: the next mapping goes right below the previous one.
    const x = machine('x86_64');
    const xd = onePageDevice(x);
    const xa = sysMmap(xd.proc, 0, 4096, PROT_READ, MAP_SHARED, xd.fd, 0);
    const xb = sysMmap(xd.proc, 0, 4096, PROT_READ, MAP_SHARED, xd.fd, 0);
    expect(xa - xb).toBe(4096);
  });

  it('refuses an off-colour MAP_FIXED|MAP_SHARED file mapping with -EINVAL (only on VIPT)', () => {
    const m = machine('parisc');
    const { proc, fd } = onePageDevice(m);
    const a = sysMmap(proc, 0, 4096, PROT_READ, MAP_SHARED, fd, 0);
    const base = 0x2000_0000 + mod(a);
    expect(sysMmap(proc, base + 4096, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0)).toBe(-22);
    expect(sysMmap(proc, base, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0)).toBe(base);
    // Private and anonymous fixed mappings have no colour to keep.
    expect(sysMmap(proc, 0x3000_1000, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0)).toBe(0x3000_1000);
    const x = machine('x86_64');
    const xd = onePageDevice(x);
    expect(sysMmap(xd.proc, 0x2000_1000, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, xd.fd, 0)).toBe(
      0x2000_1000,
    );
  });

  it('get_user_pages flushes the user alias, so the kernel alias sees the process’s data (seed 001)', () => {
    const m = machine('parisc');
    const p = spawnProcess(m, 'rdma');
    const va = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    userWrite(p, va, new Uint8Array([1, 2, 3, 4]));
    const page = pteLookup(p, va)!.pfn as Page;
    expect(kernelRead(m, pageAddress(page), 4)).toEqual(new Uint8Array(4));
    const pages: (Page | null)[] = [];
    expect(getUserPages(p, va, 1, FOLL_WRITE, pages)).toBe(1);
    expect(kernelRead(m, pageAddress(page), 4)).toEqual(new Uint8Array([1, 2, 3, 4]));
  });

  it('a vmap congruent with the user address shares its lines; an ordinary vmap needs flush/invalidate', () => {
    const m = machine('parisc');
    const p = spawnProcess(m, 'app');
    const va = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    userWrite(p, va, new Uint8Array([9]));
    const page = pteLookup(p, va)!.pfn as Page;
    const same = vmapAligned(m, [page], 1, PAGE_KERNEL, va)!;
    const other = vmap(m, [page], 1, 0, PAGE_KERNEL)!;
    expect(mod(same - va)).toBe(0);
    expect(mod(other - va)).not.toBe(0);
    expect(kernelRead(m, same, 1)).toEqual(new Uint8Array([9]));
    expect(kernelRead(m, other, 1)).toEqual(new Uint8Array([0]));
    // The other alias now holds a stale line: invalidate it, make the user's bytes reach memory, read again.
    invalidateKernelVmapRange(m, other, 4096);
    flushKernelVmapRange(m, same, 4096);
    expect(kernelRead(m, other, 1)).toEqual(new Uint8Array([9]));
  });
});
