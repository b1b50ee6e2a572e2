import { describe, expect, it } from 'vitest';
import { findings, machine } from '../../test/mm-kit.js';
import {
  addDevice,
  allocPages,
  cacheDirtyLines,
  cpuRead,
  GFP_KERNEL,
  IOREMAP_START,
  isVmallocAddr,
  type MachineEvent,
  PAGE_OFFSET,
  type Page,
  pageAddress,
  pageIsAllocated,
  pageToPhys,
  VMALLOC_START,
} from '../machine/index.js';
import { kernelRead, kernelWrite } from './kaccess.js';
import { PAGE_KERNEL, pgprotWritecombine } from './pgprot.js';
import { kernelPteLookup } from './query.js';
import {
  ioremap,
  ioremapCache,
  ioremapWc,
  iounmap,
  vfree,
  vmalloc,
  vmallocToPage,
  vmallocToPfn,
  vmap,
  vmapAligned,
  vunmap,
  vzalloc,
} from './vmalloc.js';

describe('vmalloc', () => {
  it('maps single pages at a vmalloc address, followed by a guard page, and frees them with vfree', () => {
    const m = machine();
    const a = vmalloc(m, 3 * 4096 + 1)!;
    expect(a).toBe(VMALLOC_START);
    const pages = [0, 1, 2, 3].map((i) => vmallocToPage(m, a + i * 4096));
    expect(pages.every((p) => p !== null && pageIsAllocated(m, p))).toBe(true);
    expect(vmallocToPage(m, a + 4 * 4096)).toBeNull();
    // The next area starts after the guard page.
    const b = vzalloc(m, 4096)!;
    expect(b).toBe(VMALLOC_START + 5 * 4096);
    const bytes = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
    expect(kernelWrite(m, a + 3000, bytes)).toBe(true);
    expect(kernelRead(m, a + 3000, 5000)).toEqual(bytes);
    vfree(m, a);
    expect(pages.map((p) => pageIsAllocated(m, p!))).toEqual([false, false, false, false]);
    expect(vmallocToPfn(m, a)).toBe(0);
    // The area is gone: a kernel access there oopses.
    expect(kernelRead(m, a, 4)).toBeNull();
    expect(findings(m)).toEqual([
      `OOPS: BUG: unable to handle page fault for address: 0x${a.toString(16)} (supervisor read access in kernel mode: not-present page)`,
    ]);
  });

  it('warns on vfree of an address that is no vmalloc area', () => {
    const m = machine();
    vfree(m, VMALLOC_START + 4096);
    vfree(m, 0);
    expect(findings(m)).toEqual([
      `WARN: Trying to vfree() nonexistent vm area (0x${(VMALLOC_START + 4096).toString(16)})`,
    ]);
  });
});

describe('vmap', () => {
  it('maps the caller’s pages with the protection’s attribute, and vunmap leaves the pages allocated', () => {
    const m = machine('arm64-noncoherent');
    const p0 = allocPages(m, GFP_KERNEL, 0)!;
    const p1 = allocPages(m, GFP_KERNEL, 0)!;
    const va = vmap(m, [p1, p0], 2, 0, pgprotWritecombine(m, PAGE_KERNEL))!;
    expect(kernelPteLookup(m, va)).toEqual({
      pfn: p1,
      attr: 'write-combine',
      write: true,
      special: true,
      anon: false,
    });
    expect(kernelPteLookup(m, va + 4096)!.pfn).toBe(p0);
    kernelWrite(m, va + 4096, new Uint8Array([7, 7, 7, 7]));
    // Write-combined stores go to memory: the cached linear alias has nothing dirty.
    expect(cacheDirtyLines(m, pageToPhys(p0), 4096)).toBe(0);
    const out = new Uint8Array(4);
    cpuRead(m, pageToPhys(p0), pageAddress(p0), 'uncached', out, 0, 4);
    expect([...out]).toEqual([7, 7, 7, 7]);
    vunmap(m, va);
    expect(kernelPteLookup(m, va)).toBeNull();
    expect(pageIsAllocated(m, p0) && pageIsAllocated(m, p1)).toBe(true);
    expect(vmap(m, [p0], 0, 0, PAGE_KERNEL)).toBeNull();
    expect(vmap(m, [0 as Page], 1, 0, PAGE_KERNEL)).toBeNull();
    expect(findings(m)).toEqual(['WARN: vmap: page 0 (pfn 0x0) has no struct page']);
  });

  it('vmapAligned places the alias congruent with a given address modulo the cache congruence', () => {
    const m = machine('parisc');
    const page = allocPages(m, GFP_KERNEL, 0)!;
    const want = 0x7fff_1234_5000;
    const va = vmapAligned(m, [page], 1, PAGE_KERNEL, want)!;
    const C = m.profile.cache.congruence;
    expect((va - want) % C).toBe(0);
    expect(va).toBeGreaterThanOrEqual(VMALLOC_START);
    // On a PIPT profile any page-aligned address is congruent.
    const x = machine('x86_64');
    const xp = allocPages(x, GFP_KERNEL, 0)!;
    expect(vmapAligned(x, [xp], 1, PAGE_KERNEL, want)).toBe(VMALLOC_START);
  });
});

describe('ioremap', () => {
  it('maps device memory uncached, write-combined or cached, at page granularity plus the offset', () => {
    const m = machine('x86_64', { check: false }); // raw attributes: the checker's alias rule is tested in src/debug
    const dev = addDevice(m, { name: 'bar', deviceMemoryBytes: 1 << 20 });
    const phys = dev.deviceMemory!.phys;
    const events: MachineEvent[] = [];
    m.bus.on('pte-install', (e) => events.push(e));
    const uc = ioremap(m, phys + 0x10, 0x2000)!;
    expect(uc).toBe(IOREMAP_START + 0x10);
    expect(kernelPteLookup(m, uc)!.attr).toBe('uncached');
    expect(kernelPteLookup(m, uc + 0x2000)!.pfn).toBe(phys / 4096 + 2);
    expect(kernelPteLookup(m, ioremapWc(m, phys, 4096)!)!.attr).toBe('write-combine');
    expect(kernelPteLookup(m, ioremapCache(m, phys, 4096)!)!.attr).toBe('cached');
    expect(events.map((e) => (e.type === 'pte-install' ? [e.pages, e.attr, e.reason] : []))).toEqual([
      [3, 'uncached', 'ioremap'],
      [1, 'write-combine', 'ioremap'],
      [1, 'cached', 'ioremap'],
    ]);
    kernelWrite(m, uc, new Uint8Array([1, 2, 3]));
    expect(kernelRead(m, uc, 3)).toEqual(new Uint8Array([1, 2, 3]));
    iounmap(m, uc);
    expect(kernelPteLookup(m, uc)).toBeNull();
    iounmap(m, uc);
    expect(findings(m)).toEqual([`WARN: iounmap: bad address 0x${uc.toString(16)}`]);
  });

  it('refuses RAM with the kernel warning, except arm64 ioremap_cache which returns the linear map', () => {
    const x = machine('x86_64');
    expect(ioremap(x, 0x20_0000, 4096)).toBeNull();
    expect(findings(x)).toEqual(['WARN: ioremap on RAM at 0x200000 - 0x200fff']);
    const a = machine('arm64-noncoherent');
    expect(ioremapCache(a, 0x20_0000, 4096)).toBe(PAGE_OFFSET + 0x20_0000);
    iounmap(a, PAGE_OFFSET + 0x20_0000);
    expect(findings(a)).toEqual([]);
    // PA-RISC has no write-combining: ioremap_wc is uncached.
    const p = machine('parisc');
    const dev = addDevice(p, { name: 'gsc', deviceMemoryBytes: 1 << 20 });
    expect(kernelPteLookup(p, ioremapWc(p, dev.deviceMemory!.phys, 4096)!)!.attr).toBe('uncached');
    expect(isVmallocAddr(IOREMAP_START)).toBe(false);
  });
});
