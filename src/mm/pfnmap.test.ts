import { describe, expect, it } from 'vitest';
import { findings, machine, mmInvariants } from '../../test/mm-kit.js';
import {
  addDevice,
  allocPages,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  type Machine,
  type MachineEvent,
  type Page,
  pageAddress,
  pageRefCount,
  pfnValid,
  physToPfn,
} from '../machine/index.js';
import {
  FOLL_LONGTERM,
  FOLL_WRITE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  VM_DONTDUMP,
  VM_DONTEXPAND,
  VM_IO,
  VM_MIXEDMAP,
  VM_PFNMAP,
} from './consts.js';
import { getUserPages, pagePinCount, pinnedPageCount, pinUserPages, unpinUserPages } from './gup.js';
import type { FileOperations, Vma } from './handles.js';
import { kernelRead, kernelWrite } from './kaccess.js';
import {
  ioRemapPfnRange,
  remapPfnRange,
  remapVmallocRange,
  unmapMappingRange,
  vmfInsertMixed,
  vmIomapMemory,
  vmMapPages,
  zapVmaPtes,
} from './pfnmap.js';
import { pgprotNoncached } from './pgprot.js';
import { spawnProcess } from './process.js';
import { processPteCount, processVmas, pteLookup } from './query.js';
import { userRead, userWrite } from './uaccess.js';
import { registerChrdev, sysMmap, sysOpen } from './vfs.js';
import { vmallocToPage, vmallocUser } from './vmalloc.js';

function withMmap(m: Machine, path: string, mmap: (vma: Vma) => number): void {
  const fops: FileOperations = { mmap: (_f, vma) => mmap(vma) };
  expect(registerChrdev(m, path, fops)).toBe(0);
}

describe('remap_pfn_range', () => {
  it('maps device memory without struct page at mmap time, uncached; GUP on it fails, GUP on anonymous RAM pins', () => {
    const m = machine('arm64-noncoherent');
    const dev = addDevice(m, { name: 'snd', deviceMemoryBytes: 1 << 20 });
    const pfn = physToPfn(dev.deviceMemory!.phys);
    expect(pfnValid(m, pfn)).toBe(false);
    const installs: MachineEvent[] = [];
    m.bus.on('pte-install', (e) => installs.push(e));
    withMmap(m, '/dev/snd', (vma) =>
      remapPfnRange(
        vma,
        vma.vmStart,
        pfn + vma.vmPgoff,
        vma.vmEnd - vma.vmStart,
        pgprotNoncached(m, vma.vmPageProt),
      ),
    );
    const p = spawnProcess(m, 'player');
    const va = sysMmap(p, 0, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(p, '/dev/snd'), 4096);
    const vma = processVmas(p)[0]!;
    expect(vma.vmFlags & (VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP)).toBe(
      VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP,
    );
    // Every PTE exists straight after mmap: no fault on access.
    expect(processPteCount(p)).toBe(4);
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatchObject({
      pfn: pfn + 1,
      pages: 4,
      attr: 'uncached',
      special: true,
      reason: 'remap',
    });
    // User and device see each other's bytes at once through the uncached mapping.
    expect(userWrite(p, va, new Uint8Array([1, 2, 3]))).toBe(true);
    expect(deviceDmaRead(dev, dev.deviceMemory!.phys + 4096, 3)).toEqual(new Uint8Array([1, 2, 3]));
    deviceDmaWrite(dev, dev.deviceMemory!.phys + 8192, new Uint8Array([7, 8]));
    expect(userRead(p, va + 4096, 2)).toEqual(new Uint8Array([7, 8]));
    // get_user_pages refuses the PFN map.
    const pages: (Page | null)[] = [];
    expect(getUserPages(p, va, 2, FOLL_WRITE, pages)).toBe(-14);
    expect(pinUserPages(p, va, 1, FOLL_WRITE | FOLL_LONGTERM, pages)).toBe(-14);
    expect(pages).toEqual([]);
    // ...while anonymous memory pins.
    const anon = sysMmap(p, 0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect(pinUserPages(p, anon, 2, FOLL_WRITE | FOLL_LONGTERM, pages)).toBe(2);
    expect(pages.map((pg) => pagePinCount(m, pg!))).toEqual([1, 1]);
    expect(pages.map((pg) => pageRefCount(m, pg!))).toEqual([2, 2]);
    expect(pinnedPageCount(m)).toBe(2);
    unpinUserPages(m, pages, 2);
    expect(pinnedPageCount(m)).toBe(0);
    expect(mmInvariants(p)).toEqual([]);
    expect(findings(m)).toEqual([]);
  });

  it('is a kernel BUG over a PTE that is already present, and -EINVAL on a partial copy-on-write remap', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 1)!;
    const results: number[] = [];
    withMmap(m, '/dev/twice', (vma) => {
      results.push(remapPfnRange(vma, vma.vmStart, page, 4096, vma.vmPageProt));
      results.push(remapPfnRange(vma, vma.vmStart, page + 1, 8192, vma.vmPageProt));
      results.push(remapPfnRange(vma, vma.vmStart + 1, page, 4096, vma.vmPageProt));
      return 0;
    });
    withMmap(m, '/dev/cow', (vma) => {
      results.push(remapPfnRange(vma, vma.vmStart, page, 4096, vma.vmPageProt));
      results.push(remapPfnRange(vma, vma.vmStart, page, 8192, vma.vmPageProt));
      return 0;
    });
    const p = spawnProcess(m, 'p');
    const va = sysMmap(p, 0, 8192, PROT_READ, MAP_SHARED, sysOpen(p, '/dev/twice'), 0);
    sysMmap(p, 0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, sysOpen(p, '/dev/cow'), 0);
    expect(results).toEqual([0, -22, -22, -22, 0]);
    // The copy-on-write remap overwrote vm_pgoff with the pfn.
    expect(processVmas(p).map((v) => v.vmPgoff)).toEqual([page, 0]);
    expect(pteLookup(p, va)!.pfn).toBe(page);
    expect(pteLookup(p, va + 4096)).toBeNull();
    expect(findings(m)).toEqual([
      `BUG: kernel BUG at mm/memory.c: remap_pte_range: a PTE is already present at 0x${va.toString(16)} [pfn=0x${page.toString(16)}]`,
      `WARN: remap_pfn_range: unaligned address 0x${(va + 1).toString(16)}`,
    ]);
  });

  it('vm_iomap_memory maps a region using vm_pgoff as the page offset, refusing VMAs it cannot fill', () => {
    const m = machine();
    const dev = addDevice(m, { name: 'bar', deviceMemoryBytes: 1 << 20 });
    const phys = dev.deviceMemory!.phys;
    withMmap(m, '/dev/bar', (vma) => vmIomapMemory(vma, phys, 16384));
    const p = spawnProcess(m, 'p');
    const fd = sysOpen(p, '/dev/bar');
    const va = sysMmap(p, 0, 8192, PROT_READ, MAP_SHARED, fd, 8192);
    expect(pteLookup(p, va)!.pfn).toBe(physToPfn(phys) + 2);
    expect(sysMmap(p, 0, 8192, PROT_READ, MAP_SHARED, fd, 12288)).toBe(-22);
    // io_remap_pfn_range is remap_pfn_range with the (unmodelled) decryption bit cleared.
    withMmap(m, '/dev/io', (vma) =>
      ioRemapPfnRange(vma, vma.vmStart, physToPfn(phys), 4096, pgprotNoncached(m, vma.vmPageProt)),
    );
    const vio = sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, sysOpen(p, '/dev/io'), 0);
    expect(pteLookup(p, vio)).toEqual({
      pfn: physToPfn(phys),
      attr: 'uncached',
      write: false,
      special: true,
      anon: false,
    });
  });
});

describe('PAT on x86', () => {
  it('keeps RAM write-back in PFN maps whatever the driver asks; device memory and other architectures keep the request', () => {
    const rows = ['x86_64', 'arm64-noncoherent', 'parisc'].map((profile) => {
      const m = machine(profile);
      const ram = allocPages(m, GFP_KERNEL, 0)!;
      const dev = addDevice(m, { name: 'bar', deviceMemoryBytes: 1 << 20 });
      const io = physToPfn(dev.deviceMemory!.phys);
      withMmap(m, '/dev/uc', (vma) =>
        remapPfnRange(
          vma,
          vma.vmStart,
          vma.vmPgoff === 0 ? ram : io,
          4096,
          pgprotNoncached(m, vma.vmPageProt),
        ),
      );
      const p = spawnProcess(m, 'p');
      const fd = sysOpen(p, '/dev/uc');
      const a = sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, fd, 0);
      const b = sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, fd, 4096);
      return [profile, pteLookup(p, a)!.attr, pteLookup(p, b)!.attr];
    });
    expect(rows).toEqual([
      ['x86_64', 'cached', 'uncached'],
      ['arm64-noncoherent', 'uncached', 'uncached'],
      ['parisc', 'uncached', 'uncached'],
    ]);
  });
});

describe('shooting PTEs down', () => {
  it('zap_vma_ptes zaps only inside a VM_PFNMAP VMA', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 2)!;
    withMmap(m, '/dev/z', (vma) => remapPfnRange(vma, vma.vmStart, page, 16384, vma.vmPageProt));
    const p = spawnProcess(m, 'p');
    const va = sysMmap(p, 0, 16384, PROT_READ, MAP_SHARED, sysOpen(p, '/dev/z'), 0);
    const vma = processVmas(p)[0]!;
    zapVmaPtes(vma, va + 4096, 8192);
    expect([0, 1, 2, 3].map((i) => pteLookup(p, va + i * 4096) !== null)).toEqual([true, false, false, true]);
    zapVmaPtes(vma, va + 8192, 16384);
    expect(processPteCount(p)).toBe(2);
    // A non-PFNMAP VMA is left alone.
    const anon = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    userWrite(p, anon, new Uint8Array(1));
    zapVmaPtes(processVmas(p)[0]!, anon, 4096);
    expect(pteLookup(p, anon)).not.toBeNull();
  });

  it('unmap_mapping_range reaches every process by vm_pgoff, and keeps private COW copies unless even_cows', () => {
    const m = machine();
    const backing = allocPages(m, GFP_KERNEL, 3)!;
    withMmap(m, '/dev/obj', (vma) => {
      vma.vmOps = {
        fault: (vmf) => vmfInsertMixed(vmf.vma, vmf.address, backing + vmf.pgoff),
      };
      vma.vmFlags |= VM_MIXEDMAP;
      return 0;
    });
    const a = spawnProcess(m, 'a');
    const b = spawnProcess(m, 'b');
    // a maps object pages 0..3; b maps pages 2..5, privately.
    const va = sysMmap(a, 0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(a, '/dev/obj'), 0);
    const vb = sysMmap(b, 0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, sysOpen(b, '/dev/obj'), 2 * 4096);
    for (let i = 0; i < 4; i++) {
      userRead(a, va + i * 4096, 1);
      userRead(b, vb + i * 4096, 1);
    }
    userWrite(b, vb, new Uint8Array([5])); // object page 2, now a private copy in b
    expect(processPteCount(a) + processPteCount(b)).toBe(8);
    const mapping = processVmas(a)[0]!.vmFile!.fMapping;
    // Object pages 2..3 (bytes 8192..16383), not even COWs.
    unmapMappingRange(mapping, 8192, 8192, 0);
    expect([0, 1, 2, 3].map((i) => pteLookup(a, va + i * 4096) !== null)).toEqual([true, true, false, false]);
    expect([0, 1, 2, 3].map((i) => pteLookup(b, vb + i * 4096) !== null)).toEqual([true, false, true, true]);
    expect(userRead(b, vb, 1)).toEqual(new Uint8Array([5]));
    // Everything, COWs included (truncate semantics).
    unmapMappingRange(mapping, 0, 0, 1);
    expect(processPteCount(a) + processPteCount(b)).toBe(0);
    expect(mmInvariants(a).concat(mmInvariants(b))).toEqual([]);
  });
});

describe('vm_map_pages and remap_vmalloc_range', () => {
  it('insert refcounted pages for the whole VMA, honouring vm_pgoff, or fail with -ENXIO', () => {
    const m = machine();
    const pages = [0, 1, 2].map(() => allocPages(m, GFP_KERNEL, 0)!);
    const ret: number[] = [];
    withMmap(m, '/dev/pages', (vma) => {
      const r = vmMapPages(vma, pages, 3);
      ret.push(r);
      return r;
    });
    const p = spawnProcess(m, 'p');
    const fd = sysOpen(p, '/dev/pages');
    const va = sysMmap(p, 0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4096);
    expect([pteLookup(p, va)!.pfn, pteLookup(p, va + 4096)!.pfn]).toEqual([pages[1], pages[2]]);
    expect(pages.map((pg) => pageRefCount(m, pg))).toEqual([1, 2, 2]);
    expect(processVmas(p)[0]!.vmFlags & VM_MIXEDMAP).toBe(VM_MIXEDMAP);
    expect(sysMmap(p, 0, 12288, PROT_READ, MAP_SHARED, fd, 4096)).toBe(-6);
    expect(ret).toEqual([0, -6]);
  });

  it('map a vmalloc_user buffer page by page; a plain vmalloc buffer is refused', () => {
    const m = machine();
    const buf = vmallocUser(m, 8192)!;
    kernelWrite(m, buf + 4096, new Uint8Array([42]));
    withMmap(m, '/dev/ring', (vma) => remapVmallocRange(vma, buf, vma.vmPgoff));
    const p = spawnProcess(m, 'p');
    const va = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(p, '/dev/ring'), 4096);
    expect(pteLookup(p, va)!.pfn).toBe(vmallocToPage(m, buf + 4096));
    expect(userRead(p, va, 1)).toEqual(new Uint8Array([42]));
    userWrite(p, va + 1, new Uint8Array([43]));
    expect(kernelRead(m, buf + 4097, 1)).toEqual(new Uint8Array([43]));
    expect(kernelRead(m, pageAddress(vmallocToPage(m, buf)!), 1)).toEqual(new Uint8Array([0]));
  });
});
