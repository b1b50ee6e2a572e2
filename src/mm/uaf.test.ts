import { describe, expect, it } from 'vitest';
import { findings, machine } from '../../test/mm-kit.js';
import {
  __freePages,
  allocPages,
  GFP_KERNEL,
  type MachineEvent,
  type Page,
  pageIsAllocated,
  pageRefCount,
  physToPfn,
  virtToPage,
} from '../machine/index.js';
import { MAP_SHARED, PROT_READ, PROT_WRITE } from './consts.js';
import { kernelRead, virtToPhys } from './kaccess.js';
import { kfree, kmalloc } from './kmalloc.js';
import { remapPfnRange, vmInsertPage } from './pfnmap.js';
import { PAGE_KERNEL } from './pgprot.js';
import { spawnProcess } from './process.js';
import { userRead, userWrite } from './uaccess.js';
import { registerChrdev, sysIoctl, sysMmap, sysMunmap, sysOpen } from './vfs.js';
import { vmap } from './vmalloc.js';

describe('stale PTEs after free', () => {
  it('reports a user access through a remap_pfn_range PTE to a page the driver already freed', () => {
    const m = machine();
    let page = 0 as Page;
    registerChrdev(m, '/dev/leaky', {
      mmap(_f, vma) {
        page = allocPages(m, GFP_KERNEL, 0)!;
        return remapPfnRange(vma, vma.vmStart, page, 4096, vma.vmPageProt);
      },
      // The bug: the buffer is freed while the mapping lives on.
      unlockedIoctl() {
        __freePages(m, page, 0);
        return 0;
      },
    });
    const p = spawnProcess(m, 'victim');
    const fd = sysOpen(p, '/dev/leaky');
    const va = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    expect(userWrite(p, va, new Uint8Array([1]))).toBe(true);
    expect(findings(m)).toEqual([]);
    expect(sysIoctl(p, fd, 0, 0)).toBe(0);
    expect(pageIsAllocated(m, page)).toBe(false);
    // The hardware does not know: the access goes through, and is reported.
    expect(userRead(p, va + 2, 1)).toEqual(new Uint8Array([0]));
    expect(findings(m)).toEqual([
      `USE_AFTER_FREE: use-after-free: victim[1] read 0x${(va + 2).toString(16)} through a stale PTE to frame 0x${page.toString(16)}, which was freed while still mapped`,
    ]);
    expect(p.alive).toBe(true);
  });

  it('catches a kfree of a kmalloc buffer mapped to user space (its slab page goes back at once)', () => {
    const m = machine();
    const buf = kmalloc(m, 4096, GFP_KERNEL)!;
    registerChrdev(m, '/dev/kbuf', {
      mmap: (_f, vma) => remapPfnRange(vma, vma.vmStart, physToPfn(virtToPhys(m, buf)), 4096, vma.vmPageProt),
    });
    const p = spawnProcess(m, 'app');
    const va = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(p, '/dev/kbuf'), 0);
    kfree(m, buf);
    userWrite(p, va, new Uint8Array([7]));
    expect(findings(m).map((f) => f.split(':')[0])).toEqual(['USE_AFTER_FREE']);
    expect(findings(m)[0]).toContain(`frame 0x${virtToPage(buf).toString(16)}`);
  });

  it('keeps a vm_insert_page page alive through its PTE reference: no stale access, freed at munmap', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 0)!;
    registerChrdev(m, '/dev/safe', { mmap: (_f, vma) => vmInsertPage(vma, vma.vmStart, page) });
    const p = spawnProcess(m, 'app');
    const va = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(p, '/dev/safe'), 0);
    const events: string[] = [];
    m.bus.on('*', (e: MachineEvent) => {
      if (e.type === 'pte-remove' || e.type === 'page-free') events.push(e.type);
    });
    __freePages(m, page, 0);
    expect(pageRefCount(m, page)).toBe(1);
    expect(userWrite(p, va, new Uint8Array([3]))).toBe(true);
    expect(sysMunmap(p, va, 4096)).toBe(0);
    expect(pageIsAllocated(m, page)).toBe(false);
    // The PTE goes before the page does.
    expect(events).toEqual(['pte-remove', 'page-free']);
    expect(findings(m)).toEqual([]);
  });

  it('reports a kernel access through a vmap of a freed page', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 0)!;
    const va = vmap(m, [page], 1, 0, PAGE_KERNEL)!;
    __freePages(m, page, 0);
    expect(kernelRead(m, va, 1)).not.toBeNull();
    expect(findings(m)).toEqual([
      `USE_AFTER_FREE: use-after-free: kernel read 0x${va.toString(16)} through a stale PTE to frame 0x${page.toString(16)}, which was freed while still mapped`,
    ]);
  });
});
