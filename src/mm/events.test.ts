import { describe, expect, it } from 'vitest';
import { machine } from '../../test/mm-kit.js';
import { addDevice, allocPages, GFP_KERNEL, type MachineEvent, TASK_SIZE } from '../machine/index.js';
import { FOLL_WRITE, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from './consts.js';
import { bindDriver, registerDriver, unbindDriver } from './driver.js';
import { pinUserPages, unpinUserPages } from './gup.js';
import { kernelWrite } from './kaccess.js';
import { kfree, kmalloc } from './kmalloc.js';
import { remapPfnRange } from './pfnmap.js';
import { spawnProcess } from './process.js';
import { copyFromUser, copyToUser, userRead, userWrite } from './uaccess.js';
import { registerChrdev, sysMmap, sysMunmap, sysOpen } from './vfs.js';

/** The event without its step, time and byte payload. */
function brief(e: MachineEvent): Record<string, unknown> {
  const { step: _s, time: _t, ...rest } = e as MachineEvent & { data?: unknown };
  delete (rest as { data?: unknown }).data;
  return rest;
}

describe('mm events', () => {
  it('reports mappings, PTE runs, accesses, pins, signals, kernel memory, processes and drivers', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 2)!;
    registerChrdev(m, '/dev/e', {
      mmap: (_f, vma) => remapPfnRange(vma, vma.vmStart, page, 16384, vma.vmPageProt),
    });
    const dev = addDevice(m, { name: 'e0' });
    const drv = registerDriver(m, { name: 'edrv', probe: () => 0 });
    const seen: Record<string, unknown>[] = [];
    m.bus.on('*', (e) => {
      if (!e.type.startsWith('cache') && e.type !== 'page-alloc' && e.type !== 'page-free')
        seen.push(brief(e));
    });
    const p = spawnProcess(m, 'ev');
    const va = sysMmap(p, 0, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(p, '/dev/e'), 0);
    userWrite(p, va + 4096, new Uint8Array([1]));
    sysMunmap(p, va, 16384);
    const anon = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const pages: (number | null)[] = [];
    pinUserPages(p, anon, 1, FOLL_WRITE, pages as never);
    unpinUserPages(m, pages as never, 1);
    const k = kmalloc(m, 40, GFP_KERNEL)!;
    kernelWrite(m, k, new Uint8Array([2]));
    kfree(m, k);
    bindDriver(dev, drv);
    unbindDriver(dev);
    userRead(p, 0x1000, 1);
    const pfn = pages[0]!;
    expect(seen).toEqual([
      { type: 'process', pid: 1, name: 'ev', action: 'spawn', reason: '' },
      {
        type: 'pte-install',
        mm: 1,
        owner: 'ev',
        va,
        pfn: page,
        pages: 4,
        attr: 'cached',
        write: true,
        special: true,
        reason: 'remap',
      },
      // The mapping is announced once the driver's mmap has run, with VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP.
      {
        type: 'vma-map',
        pid: 1,
        owner: 'ev',
        start: va,
        end: va + 16384,
        flags: 0x40444fb,
        pgoff: 0,
        file: '/dev/e',
        reason: 'mmap',
      },
      {
        type: 'cpu-access',
        write: true,
        pa: (page + 1) * 4096,
        va: va + 4096,
        len: 1,
        attr: 'cached',
        agent: 'ev',
        mm: 1, // the process's own store, through its page tables
      },
      {
        type: 'pte-remove',
        mm: 1,
        owner: 'ev',
        va,
        pfn: page,
        pages: 4,
        attr: 'cached',
        special: true,
        reason: 'munmap',
      },
      { type: 'vma-unmap', pid: 1, owner: 'ev', start: va, end: va + 16384, reason: 'munmap' },
      {
        type: 'vma-map',
        pid: 1,
        owner: 'ev',
        start: anon,
        end: anon + 4096,
        flags: 0x73,
        pgoff: anon / 4096,
        file: null,
        reason: 'mmap',
      },
      // The fault path zeroes the new page through the kernel alias.
      {
        type: 'cpu-access',
        write: true,
        pa: pfn * 4096,
        va: 0x10_0000_0000_0000 + pfn * 4096,
        len: 4096,
        attr: 'cached',
        agent: 'kernel',
        mm: 0,
      },
      {
        type: 'pte-install',
        mm: 1,
        owner: 'ev',
        va: anon,
        pfn,
        pages: 1,
        attr: 'cached',
        write: true,
        special: false,
        reason: 'fault',
      },
      { type: 'page-fault', pid: 1, owner: 'ev', va: anon, write: true, context: 'gup', result: 0 },
      { type: 'page-pin', pid: 1, owner: 'ev', pfn, pages: 1, longterm: false, write: true },
      { type: 'page-unpin', pfn, pages: 1 },
      { type: 'kmem-alloc', kind: 'kmalloc', va: k, size: 40, objSize: 64, pa: k - 2 ** 52 },
      {
        type: 'cpu-access',
        write: true,
        pa: k - 2 ** 52,
        va: k,
        len: 1,
        attr: 'cached',
        agent: 'kernel',
        mm: 0,
      },
      { type: 'kmem-free', kind: 'kmalloc', va: k, size: 64 },
      { type: 'driver-bind', device: 'e0', driver: 'edrv', result: 0 },
      { type: 'driver-unbind', device: 'e0', driver: 'edrv' },
      { type: 'signal', pid: 1, owner: 'ev', signal: 'SIGSEGV', va: 0x1000, code: 'SEGV_MAPERR' },
      {
        type: 'finding',
        code: 'SIGSEGV',
        verdict: 'broken',
        message: 'ev[1]: segfault at 0x1000 (read: SEGV_MAPERR, no mapping at the address)',
      },
      {
        type: 'pte-remove',
        mm: 1,
        owner: 'ev',
        va: anon,
        pfn,
        pages: 1,
        attr: 'cached',
        special: false,
        reason: 'exit',
      },
      { type: 'vma-unmap', pid: 1, owner: 'ev', start: anon, end: anon + 4096, reason: 'exit' },
      { type: 'process', pid: 1, name: 'ev', action: 'exit', reason: 'SIGSEGV' },
    ]);
  });

  it('cpu-access names the address space it went through: 0 for the kernel, the pid for a process, whatever the names', () => {
    const m = machine();
    const a = spawnProcess(m, 'twin');
    const b = spawnProcess(m, 'twin');
    const anon = (p: typeof a) =>
      sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const va = anon(a);
    expect(anon(b)).toBe(va);
    const k = kmalloc(m, 64, GFP_KERNEL)!;
    const seen: string[] = [];
    m.bus.on('cpu-access', (e) =>
      seen.push(`${e.agent} ${e.write ? 'W' : 'R'} ${e.va < TASK_SIZE ? 'user' : 'kernel'} mm=${e.mm}`),
    );
    userWrite(a, va, new Uint8Array([1]));
    userWrite(b, va, new Uint8Array([1]));
    userRead(a, va, 1);
    expect(copyToUser(b, va + 8, k, 4)).toBe(0);
    expect(copyFromUser(a, k, va, 4)).toBe(0);
    kernelWrite(m, k, new Uint8Array([2]));
    expect(seen).toEqual([
      // Each first store faults: the new page is zeroed through the kernel's linear map, then stored to.
      'twin W kernel mm=0',
      `twin W user mm=${a.pid}`,
      'twin W kernel mm=0',
      `twin W user mm=${b.pid}`,
      `twin R user mm=${a.pid}`,
      // copy_to_user: read from the kernel buffer, written through b's page tables.
      'kernel R kernel mm=0',
      `kernel W user mm=${b.pid}`,
      // copy_from_user: read through a's page tables, written to the kernel buffer.
      `kernel R user mm=${a.pid}`,
      'kernel W kernel mm=0',
      'kernel W kernel mm=0',
    ]);
    expect(a.pid).not.toBe(b.pid);
  });
});
