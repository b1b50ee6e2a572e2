import { describe, expect, it } from 'vitest';
import { machine } from '../../test/mm-kit.js';
import {
  allocPages,
  GFP_KERNEL,
  type Machine,
  machineHash,
  PROFILE_NAMES,
  restoreMachine,
  snapshotMachine,
} from '../machine/index.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, VM_PFNMAP } from './consts.js';
import type { Process } from './handles.js';
import { kernelRead } from './kaccess.js';
import { kfree, kmalloc } from './kmalloc.js';
import { vmfInsertPfn } from './pfnmap.js';
import {
  PAGE_KERNEL,
  PAGE_SHARED,
  pgprotDmacoherent,
  pgprotNoncached,
  pgprotWritecombine,
  vmGetPageProt,
} from './pgprot.js';
import { exitProcess, spawnProcess } from './process.js';
import { processVmas } from './query.js';
import { userRead, userWrite } from './uaccess.js';
import { registerChrdev, sysMmap, sysMunmap, sysOpen } from './vfs.js';

function scene(m: Machine): { p: Process; anon: number; dev: number } {
  const page = allocPages(m, GFP_KERNEL, 2)!;
  registerChrdev(m, '/dev/s', {
    mmap(file, vma) {
      vma.vmFlags |= VM_PFNMAP;
      vma.vmOps = { fault: (vmf) => vmfInsertPfn(vmf.vma, vmf.address, page + vmf.pgoff) };
      vma.vmPrivateData = { id: 7 };
      file.privateData = { opened: true };
      return 0;
    },
  });
  const p = spawnProcess(m, 'app');
  const anon = sysMmap(p, 0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const dev = sysMmap(p, 0, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(p, '/dev/s'), 0);
  userWrite(p, anon, new Uint8Array([1, 2]));
  userWrite(p, dev + 4096, new Uint8Array([3]));
  return { p, anon, dev };
}

describe('the mm slot: snapshot, restore in place, hash', () => {
  it('restores processes, VMAs, page tables and kernel memory in place, with the same handles', () => {
    const m = machine('arm64-noncoherent');
    const { p, anon, dev } = scene(m);
    const k = kmalloc(m, 64, GFP_KERNEL)!;
    const vma = processVmas(p).find((v) => v.vmStart === dev)!;
    const hash = machineHash(m);
    const snap = snapshotMachine(m);
    userWrite(p, anon, new Uint8Array([9]));
    sysMunmap(p, dev, 16384);
    kfree(m, k);
    exitProcess(p);
    expect(machineHash(m)).not.toBe(hash);
    expect(() => vma.vmStart).toThrow(/no longer exists/);
    restoreMachine(m, snap);
    expect(machineHash(m)).toBe(hash);
    expect(p.alive).toBe(true);
    expect(vma.vmStart).toBe(dev);
    expect(vma.vmPrivateData).toEqual({ id: 7 });
    expect(vma.vmFile!.privateData).toEqual({ opened: true });
    expect(userRead(p, anon, 2)).toEqual(new Uint8Array([1, 2]));
    expect(userRead(p, dev + 4096, 1)).toEqual(new Uint8Array([3]));
    expect(kernelRead(m, k, 1)).not.toBeNull();
    // The same operations from the restored state land on the same state again.
    restoreMachine(m, snap);
    userWrite(p, anon, new Uint8Array([9]));
    const after = machineHash(m);
    restoreMachine(m, snap);
    userWrite(p, anon, new Uint8Array([9]));
    expect(machineHash(m)).toBe(after);
  });

  it('hashes equal runs equally', () => {
    const a = machine();
    const b = machine();
    scene(a);
    scene(b);
    expect(machineHash(a)).toBe(machineHash(b));
    userWrite(spawnProcess(a, 'x'), 0, new Uint8Array(1));
    expect(machineHash(a)).not.toBe(machineHash(b));
  });
});

describe('pgprot', () => {
  it('follows the architecture for noncached, write-combine and DMA-coherent attributes', () => {
    const rows = PROFILE_NAMES.map((p) => {
      const m = machine(p);
      return [
        p,
        pgprotNoncached(m, PAGE_KERNEL).attr,
        pgprotWritecombine(m, PAGE_KERNEL).attr,
        pgprotDmacoherent(m, PAGE_KERNEL).attr,
      ];
    });
    expect(rows).toEqual([
      ['x86_64', 'uncached', 'write-combine', 'uncached'],
      ['arm64-coherent', 'uncached', 'write-combine', 'write-combine'],
      ['arm64-noncoherent', 'uncached', 'write-combine', 'write-combine'],
      ['parisc', 'uncached', 'uncached', 'uncached'],
      ['parisc-pcxl', 'uncached', 'uncached', 'uncached'],
      ['swiotlb-force', 'uncached', 'write-combine', 'uncached'],
    ]);
    expect(pgprotNoncached(machine(), PAGE_SHARED)).toEqual({
      attr: 'uncached',
      read: true,
      write: true,
      exec: false,
    });
  });

  it('gives private writable mappings a read-only protection until copy-on-write', () => {
    expect(vmGetPageProt(0x1 | 0x2)).toEqual({ attr: 'cached', read: true, write: false, exec: false });
    expect(vmGetPageProt(0x1 | 0x2 | 0x8)).toEqual({ attr: 'cached', read: true, write: true, exec: false });
    expect(vmGetPageProt(0)).toEqual({ attr: 'cached', read: false, write: false, exec: false });
    expect(() => pgprotNoncached(machine(), { attr: 'magic' } as never)).toThrow(/must be a pgprot/);
  });
});
