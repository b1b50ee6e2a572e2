/**
 * Model-based property tests: random sequences of mmap, munmap, touches
 * (reads and writes), shoot-downs, pins and mlock against a deliberately
 * simple model of what every byte should read back as. After each step the
 * page tables must agree with the VMAs; at the end every byte must match
 * the model, and exiting must leave no PTE, no pin and no leaked page.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findings, machine, mmInvariants } from '../../test/mm-kit.js';
import {
  __GFP_ZERO,
  allocPages,
  GFP_KERNEL,
  type Machine,
  type Page,
  zoneFreePages,
} from '../machine/index.js';
import {
  FOLL_LONGTERM,
  FOLL_WRITE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  VM_MIXEDMAP,
} from './consts.js';
import { mlock, pinnedPageCount, pinUserPages, unpinUserPages } from './gup.js';
import type { AddressSpace, FileOperations, Vma } from './handles.js';
import { remapPfnRange, unmapMappingRange, vmfInsertMixed, vmfInsertPfn, zapVmaPtes } from './pfnmap.js';
import { exitProcess, spawnProcess } from './process.js';
import { processPteCount, processVmas } from './query.js';
import { userRead, userWrite } from './uaccess.js';
import { registerChrdev, sysIoctl, sysMmap, sysMunmap, sysOpen } from './vfs.js';

const OBJ_PAGES = 16;

type Op =
  | { k: 'anon'; pages: number; shared: boolean }
  | { k: 'dev'; dev: 0 | 1; pages: number; pgoff: number; priv: boolean }
  | { k: 'munmap'; which: number; off: number; pages: number }
  | { k: 'touch'; which: number; page: number; byte: number; write: boolean; value: number }
  | { k: 'zapMapping'; dev: 0 | 1; first: number; n: number; evenCows: boolean }
  | { k: 'zapVma'; which: number; page: number }
  | { k: 'pin'; which: number; page: number }
  | { k: 'mlock'; which: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('anon' as const), pages: fc.integer({ min: 1, max: 4 }), shared: fc.boolean() }),
  fc.record({
    k: fc.constant('dev' as const),
    dev: fc.constantFrom(0 as const, 1 as const),
    pages: fc.integer({ min: 1, max: 4 }),
    pgoff: fc.integer({ min: 0, max: OBJ_PAGES - 4 }),
    priv: fc.boolean(),
  }),
  fc.record({
    k: fc.constant('munmap' as const),
    which: fc.nat(),
    off: fc.integer({ min: 0, max: 3 }),
    pages: fc.integer({ min: 1, max: 3 }),
  }),
  fc.record({
    k: fc.constant('touch' as const),
    which: fc.nat(),
    page: fc.nat(),
    byte: fc.integer({ min: 0, max: 4095 }),
    write: fc.boolean(),
    value: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({
    k: fc.constant('zapMapping' as const),
    dev: fc.constantFrom(0 as const, 1 as const),
    first: fc.integer({ min: 0, max: OBJ_PAGES - 1 }),
    n: fc.integer({ min: 0, max: 4 }),
    evenCows: fc.boolean(),
  }),
  fc.record({ k: fc.constant('zapVma' as const), which: fc.nat(), page: fc.nat() }),
  fc.record({ k: fc.constant('pin' as const), which: fc.nat(), page: fc.nat() }),
  fc.record({ k: fc.constant('mlock' as const), which: fc.nat() }),
);

/** The reference model: what each byte should read as. */
interface Model {
  /** Per device: object byte offset → value. */
  obj: [Map<number, number>, Map<number, number>];
  /** Anonymous memory and private copies: user address → value (absent = 0 / object byte). */
  mem: Map<number, number>;
  /** Pages of private device mappings that were copied (user page address → true). */
  cow: Set<number>;
}

interface World {
  m: Machine;
  fds: [number, number];
  mappings: [AddressSpace | null, AddressSpace | null];
}

/** Device 0: VM_MIXEDMAP, fault-inserted (maps shared or private). Device 1: remapped at mmap, VM_PFNMAP, re-faulted after a shoot-down. */
function devices(m: Machine): { backing: [Page, Page]; pins: Page[] } {
  const backing: [Page, Page] = [
    allocPages(m, GFP_KERNEL | __GFP_ZERO, 4)!,
    allocPages(m, GFP_KERNEL | __GFP_ZERO, 4)!,
  ];
  const pins: Page[] = [];
  const common: FileOperations = {
    unlockedIoctl(_f, _cmd, arg, current) {
      const got: (Page | null)[] = [];
      const r = pinUserPages(current, arg, 1, FOLL_WRITE | FOLL_LONGTERM, got);
      if (r === 1) pins.push(got[0]!);
      return r;
    },
    release() {
      unpinUserPages(m, pins, pins.length);
      pins.length = 0;
      return 0;
    },
  };
  registerChrdev(m, '/dev/obj0', {
    ...common,
    mmap(_f, vma: Vma) {
      vma.vmFlags |= VM_MIXEDMAP;
      vma.vmOps = { fault: (vmf) => vmfInsertMixed(vmf.vma, vmf.address, backing[0] + vmf.pgoff) };
      return 0;
    },
  });
  registerChrdev(m, '/dev/obj1', {
    ...common,
    mmap(_f, vma: Vma) {
      vma.vmOps = { fault: (vmf) => vmfInsertPfn(vmf.vma, vmf.address, backing[1] + vmf.pgoff) };
      return remapPfnRange(
        vma,
        vma.vmStart,
        backing[1] + vma.vmPgoff,
        vma.vmEnd - vma.vmStart,
        vma.vmPageProt,
      );
    },
  });
  return { backing, pins };
}

function expected(model: Model, vma: Vma, va: number): number {
  const page = va - (va % 4096);
  const f = vma.vmFile;
  if (f === null || model.cow.has(page)) return model.mem.get(va) ?? 0;
  const dev = f.path === '/dev/obj0' ? 0 : 1;
  return model.obj[dev].get(vma.vmPgoff * 4096 + (va - vma.vmStart)) ?? 0;
}

function dropRange(model: Model, start: number, end: number): void {
  for (const k of [...model.mem.keys()]) if (k >= start && k < end) model.mem.delete(k);
  for (const k of [...model.cow]) if (k >= start && k < end) model.cow.delete(k);
}

function step(w: World, proc: ReturnType<typeof spawnProcess>, model: Model, o: Op): void {
  const vmas = processVmas(proc);
  const pick = (which: number): Vma | undefined =>
    vmas.length === 0 ? undefined : vmas[which % vmas.length];
  switch (o.k) {
    case 'anon': {
      const va = sysMmap(
        proc,
        0,
        o.pages * 4096,
        PROT_READ | PROT_WRITE,
        (o.shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS,
        -1,
        0,
      );
      expect(va).toBeGreaterThan(0);
      return;
    }
    case 'dev': {
      const priv = o.priv && o.dev === 0;
      const va = sysMmap(
        proc,
        0,
        o.pages * 4096,
        PROT_READ | PROT_WRITE,
        priv ? MAP_PRIVATE : MAP_SHARED,
        w.fds[o.dev],
        o.pgoff * 4096,
      );
      expect(va).toBeGreaterThan(0);
      w.mappings[o.dev] ??= processVmas(proc).find((v) => v.vmStart === va)!.vmFile!.fMapping;
      return;
    }
    case 'munmap': {
      const v = pick(o.which);
      if (v === undefined) return;
      const start = Math.min(v.vmStart + o.off * 4096, v.vmEnd - 4096);
      const end = Math.min(start + o.pages * 4096, v.vmEnd);
      expect(sysMunmap(proc, start, end - start)).toBe(0);
      dropRange(model, start, end);
      return;
    }
    case 'touch': {
      const v = pick(o.which);
      if (v === undefined) return;
      const pages = (v.vmEnd - v.vmStart) / 4096;
      const va = v.vmStart + (o.page % pages) * 4096 + o.byte;
      if (!o.write) {
        expect(userRead(proc, va, 1)).toEqual(Uint8Array.of(expected(model, v, va)));
        return;
      }
      expect(userWrite(proc, va, Uint8Array.of(o.value))).toBe(true);
      const page = va - (va % 4096);
      const f = v.vmFile;
      if (f !== null && (v.vmFlags & 8) === 0 && !model.cow.has(page)) {
        // First write to a private device page: it becomes a copy of the object page.
        for (let i = 0; i < 4096; i++) model.mem.set(page + i, expected(model, v, page + i));
        model.cow.add(page);
      }
      if (f === null || model.cow.has(page)) model.mem.set(va, o.value);
      else model.obj[f.path === '/dev/obj0' ? 0 : 1].set(v.vmPgoff * 4096 + (va - v.vmStart), o.value);
      return;
    }
    case 'zapMapping': {
      const mp = w.mappings[o.dev];
      if (mp === null) return;
      unmapMappingRange(mp, o.first * 4096, o.n * 4096, o.evenCows);
      if (!o.evenCows) return;
      const last = o.n === 0 ? Number.MAX_SAFE_INTEGER : o.first + o.n - 1;
      for (const v of vmas) {
        if (v.vmFile?.path !== `/dev/obj${o.dev}` || (v.vmFlags & 8) !== 0) continue;
        for (let a: number = v.vmStart; a < v.vmEnd; a += 4096) {
          const pg = v.vmPgoff + (a - v.vmStart) / 4096;
          if (pg >= o.first && pg <= last) dropRange(model, a, a + 4096);
        }
      }
      return;
    }
    case 'zapVma': {
      const v = pick(o.which);
      if (v === undefined) return;
      const pages = (v.vmEnd - v.vmStart) / 4096;
      zapVmaPtes(v, v.vmStart + (o.page % pages) * 4096, 4096);
      return;
    }
    case 'pin': {
      const v = pick(o.which);
      if (v === undefined) return;
      const pages = (v.vmEnd - v.vmStart) / 4096;
      const va = v.vmStart + (o.page % pages) * 4096;
      const r = sysIoctl(proc, w.fds[0], 0, va);
      const f = v.vmFile;
      const priv = f !== null && (v.vmFlags & 8) === 0;
      // Anonymous memory pins; a write pin of a private device page copies it first (breaking COW),
      // and PFN-backed shared device pages cannot be pinned (-EEXIST for PFNs in VM_MIXEDMAP, -EFAULT for VM_PFNMAP).
      expect(r).toBe(f === null || priv ? 1 : f.path === '/dev/obj0' ? -17 : -14);
      if (priv && !model.cow.has(va)) {
        for (let i = 0; i < 4096; i++) model.mem.set(va + i, expected(model, v, va + i));
        model.cow.add(va);
      }
      return;
    }
    case 'mlock': {
      const v = pick(o.which);
      if (v === undefined) return;
      expect(mlock(proc, v.vmStart, v.vmEnd - v.vmStart)).toBe(0);
      return;
    }
  }
}

function freePages(m: Machine): number {
  return zoneFreePages(m, 'DMA') + zoneFreePages(m, 'DMA32') + zoneFreePages(m, 'Normal');
}

function run(profile: string, ops: Op[]): void {
  const m = machine(profile);
  const { backing } = devices(m);
  const baseline = freePages(m);
  const proc = spawnProcess(m, 'fuzz');
  const w: World = {
    m,
    fds: [sysOpen(proc, '/dev/obj0'), sysOpen(proc, '/dev/obj1')],
    mappings: [null, null],
  };
  const model: Model = { obj: [new Map(), new Map()], mem: new Map(), cow: new Set() };
  for (const o of ops) {
    step(w, proc, model, o);
    expect(mmInvariants(proc)).toEqual([]);
  }
  // Every byte written reads back as the model says, through whatever mapping holds it now.
  for (const v of processVmas(proc)) {
    for (let a: number = v.vmStart; a < v.vmEnd; a += 4096) {
      const got = userRead(proc, a, 4096)!;
      for (let i = 0; i < 4096; i++) {
        if (got[i] !== expected(model, v, a + i)) {
          throw new Error(
            `byte at ${(a + i).toString(16)}: read ${got[i]}, model says ${expected(model, v, a + i)}`,
          );
        }
      }
    }
  }
  exitProcess(proc);
  expect(processPteCount(proc)).toBe(0);
  expect(pinnedPageCount(m)).toBe(0);
  // Every anonymous page and private copy went back to the allocator (the zero page stays).
  const zero = m.layers.mm as { zeroPfn: number };
  expect(freePages(m)).toBe(baseline - (zero.zeroPfn >= 0 ? 1 : 0));
  expect(findings(m)).toEqual([]);
  void backing;
}

describe('mm properties', () => {
  for (const profile of ['x86_64', 'parisc']) {
    it(`random map/unmap/fault/zap/pin sequences keep page tables consistent and bytes intact; exit leaves nothing (${profile})`, () => {
      fc.assert(
        fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => run(profile, ops)),
        { numRuns: 60, seed: profile === 'x86_64' ? 1 : 2 },
      );
    });
  }
});
