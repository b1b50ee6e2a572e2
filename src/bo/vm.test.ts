import { describe, expect, it } from 'vitest';
import { gpuRig, mapBo, newBo, pattern } from '../../test/bo-kit.js';
import {
  advanceTime,
  copyToUser,
  EFAULT,
  FOLL_WRITE,
  GFP_KERNEL,
  GPU_GEM_DOMAIN_CPU,
  GPU_GEM_DOMAIN_GTT,
  GPU_GEM_DOMAIN_VRAM,
  getUserPages,
  kfree,
  kmalloc,
  machineFindings,
  PAGE_SIZE,
  type Page,
  PROFILE_NAMES,
  pendingJobs,
  pfnIsRam,
  pteLookup,
  spawnProcess,
  sysOpen,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
  ttmBoEvictFirst,
  ttmBoReserve,
  ttmBoSwapout,
  ttmBoUnreserve,
  ttmBoVmFault,
  ttmOperationCtx,
  type UserVa,
  userRead,
  userWrite,
  VM_DONTDUMP,
  VM_DONTEXPAND,
  VM_FAULT_NOPAGE,
  VM_FAULT_RETRY,
  VM_IO,
  VM_PFNMAP,
  vmaLookup,
} from '../index.js';

const P = PAGE_SIZE;

function ptesIn(rig: ReturnType<typeof gpuRig>, va: number, pages: number): boolean[] {
  return Array.from({ length: pages }, (_, i) => pteLookup(rig.app, va + i * P) !== null);
}

describe('a buffer object under one user pointer', () => {
  for (const profile of PROFILE_NAMES) {
    it(`${profile}: data written in VRAM is read back through the same pointer after eviction to system memory`, () => {
      const rig = gpuRig(profile);
      const a = newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
      const va = mapBo(rig, a);
      expect(a.memType).toBe(TTM_PL_VRAM);
      expect(pteLookup(rig.app, va)).toBeNull(); // mmap populates nothing
      userWrite(rig.app, va, pattern(1, 8));
      const vramPte = pteLookup(rig.app, va)!;
      expect(pfnIsRam(rig.m, vramPte.pfn)).toBe(false);
      expect(vramPte.attr).toBe(profile.startsWith('parisc') ? 'uncached' : 'write-combine');
      // Pressure: two more VRAM objects; the least recently used (a) is evicted.
      const b = newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
      const c = newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
      expect([a.memType, b.memType, c.memType]).toEqual([TTM_PL_SYSTEM, TTM_PL_VRAM, TTM_PL_VRAM]);
      expect(pteLookup(rig.app, va)).toBeNull(); // shot down by the move
      expect(userRead(rig.app, va, 8 * P)).toEqual(pattern(1, 8));
      const sysPte = pteLookup(rig.app, va)!;
      expect(pfnIsRam(rig.m, sysPte.pfn)).toBe(true);
      expect(sysPte.pfn).toBe(a.pfns[0]);
      expect(machineFindings(rig.m)).toEqual([]);
    });
  }

  it('one fault maps up to 16 pages forward, bounded by the VMA; a concurrent fault on a mapped page succeeds', () => {
    const rig = gpuRig('x86_64', { vramBytes: 64 * P });
    const bo = newBo(rig, 40, GPU_GEM_DOMAIN_VRAM);
    const va = mapBo(rig, bo);
    userRead(rig.app, va + 2 * P + 5, 1);
    const present = ptesIn(rig, va, 40);
    expect(present.filter(Boolean).length).toBe(16);
    expect(present.indexOf(true)).toBe(2);
    expect(present.lastIndexOf(true)).toBe(17);
    // Near the end the window stops at the VMA's end.
    userRead(rig.app, va + 35 * P, 1);
    expect(ptesIn(rig, va, 40).slice(35)).toEqual([true, true, true, true, true]);
    // The fault that lost the race: its PTE is already there, it is left alone and the fault succeeds.
    const vma = vmaLookup(rig.app, va)!;
    const before = pteLookup(rig.app, va + 5 * P);
    const ret = ttmBoVmFault({
      vma,
      address: (va + 5 * P) as UserVa,
      realAddress: (va + 5 * P) as UserVa,
      pgoff: vma.vmPgoff + 5,
      flags: 0,
      page: null,
    });
    expect(ret).toBe(VM_FAULT_NOPAGE);
    expect(pteLookup(rig.app, va + 5 * P)).toEqual(before);
    // …and, like the kernel's loop, it keeps prefaulting forward past present PTEs: pages 18–20 are new.
    expect(ptesIn(rig, va, 40).filter(Boolean).length).toBe(24);
    expect(ptesIn(rig, va, 40).slice(18, 22)).toEqual([true, true, true, false]);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('mmap makes one VM_PFNMAP|VM_IO VMA whose vm_pgoff names the object', () => {
    const rig = gpuRig();
    const bo = newBo(rig, 4, GPU_GEM_DOMAIN_VRAM);
    const va = mapBo(rig, bo);
    const vma = vmaLookup(rig.app, va)!;
    const want = VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP;
    expect(vma.vmFlags & want).toBe(want);
    expect(vma.vmPgoff).toBe(bo.vmaNode.start);
    expect(vma.vmPgoff * P).toBe(2 ** 32);
  });

  it('a fault during a move waits for the move’s fence (RETRY first) and then maps the new placement', () => {
    const rig = gpuRig('arm64-noncoherent', { copyNsPerPage: 5000 });
    const a = newBo(rig, 4, GPU_GEM_DOMAIN_VRAM);
    const va = mapBo(rig, a);
    userWrite(rig.app, va, pattern(7, 4));
    expect(ttmBoEvictFirst(rig.gpu, TTM_PL_VRAM, ttmOperationCtx())).toBe(0);
    expect(a.memType).toBe(TTM_PL_SYSTEM);
    const jobs = pendingJobs(rig.m);
    expect(jobs.length).toBe(1);
    const due = jobs[0]!.due;
    expect(due - rig.m.clock.time).toBe(20000);
    const results: number[] = [];
    rig.m.bus.on('page-fault', (ev) => results.push(ev.result));
    expect(userRead(rig.app, va, 4 * P)).toEqual(pattern(7, 4));
    expect(rig.m.clock.time).toBe(due);
    expect(results[0]! & VM_FAULT_RETRY).toBe(VM_FAULT_RETRY);
    expect(results[1]).toBe(VM_FAULT_NOPAGE);
    expect(results.length).toBe(2);
    expect(pteLookup(rig.app, va)!.pfn).toBe(a.pfns[0]);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('a fault with the reservation held by the faulting thread: RETRY on the first attempt, NOPAGE on the retried one', () => {
    const rig = gpuRig('x86_64');
    const a = newBo(rig, 2, GPU_GEM_DOMAIN_VRAM);
    const va = mapBo(rig, a);
    const results: number[] = [];
    rig.m.bus.on('page-fault', (ev) => results.push(ev.result));
    expect(ttmBoReserve(a, true, false)).toBe(0);
    userRead(rig.app, va, 1);
    expect(results.slice(0, 2)).toEqual([VM_FAULT_RETRY, VM_FAULT_NOPAGE]);
    expect(machineFindings(rig.m).map((f) => f.code)).toEqual(['FAULT_LIVELOCK']);
    ttmBoUnreserve(a);
  });

  it('a move without the shoot-down leaves the user writing to the old placement: the checker reports the lost write', () => {
    const rig = gpuRig('x86_64', { bugs: ['no-unmap-on-move'] });
    const a = newBo(rig, 4, GPU_GEM_DOMAIN_VRAM);
    const va = mapBo(rig, a);
    userWrite(rig.app, va, pattern(1, 4));
    const oldPfn = pteLookup(rig.app, va)!.pfn;
    expect(ttmBoEvictFirst(rig.gpu, TTM_PL_VRAM, ttmOperationCtx())).toBe(0);
    expect(pteLookup(rig.app, va)!.pfn).toBe(oldPfn); // the stale PTE survived
    advanceTime(rig.m, 100_000); // the copy has completed
    userWrite(rig.app, va, new Uint8Array([0xee, 0xee]));
    const f = machineFindings(rig.m);
    expect(f.map((x) => x.code)).toEqual(['BO_STALE_PTE']);
    expect(f[0]!.verdict).toBe('broken');
    expect(f[0]!.message).toContain('write lost: app wrote 2 bytes of buffer object');
    expect(f[0]!.message).toContain('did not shoot down the user PTEs first');
    // The object's bytes (read by a second process mapping it afresh) never got the write.
    const other = mapBo(rig, a);
    expect(userRead(rig.app, other, 2)).toEqual(pattern(1, 4).subarray(0, 2));
  });

  it('two processes of one name, each with its own object at the same address: the stale PTE is charged to the one that has it', () => {
    const rig = gpuRig('x86_64', { bugs: ['no-unmap-on-move'] });
    // A second instance of the same binary (same name, another pid and mm) opens the device too.
    const twin = spawnProcess(rig.m, 'app');
    const twinFd = sysOpen(twin, rig.gpu.path);
    expect(twin.pid).not.toBe(rig.app.pid);
    const a = newBo(rig, 4, GPU_GEM_DOMAIN_VRAM);
    const b = newBo(rig, 4, GPU_GEM_DOMAIN_GTT, twin, twinFd);
    const va = mapBo(rig, a);
    expect(mapBo(rig, b, twin, twinFd)).toBe(va);
    userWrite(rig.app, va, pattern(1, 4));
    userWrite(twin, va, pattern(2, 4));
    // a leaves VRAM; the bug leaves app's PTEs on its old frames. b never moved.
    expect(ttmBoEvictFirst(rig.gpu, TTM_PL_VRAM, ttmOperationCtx())).toBe(0);
    expect(a.memType).toBe(TTM_PL_SYSTEM);
    expect(b.memType).toBe(TTM_PL_TT);
    advanceTime(rig.m, 100_000);
    // The twin's accesses reach b's current frames: correct, whatever app's mapping at the same address says.
    expect(userRead(twin, va, 2)).toEqual(pattern(2, 4).subarray(0, 2));
    userWrite(twin, va, new Uint8Array([0xdd]));
    expect(machineFindings(rig.m)).toEqual([]);
    // app's store goes through its stale PTE: reported once, against app's pid.
    userWrite(rig.app, va, new Uint8Array([0xee, 0xee]));
    userWrite(rig.app, va + 2, new Uint8Array([0xee]));
    const f = machineFindings(rig.m);
    expect(f.map((x) => x.code)).toEqual(['BO_STALE_PTE']);
    expect(f[0]!.message).toContain(`write lost: app wrote 2 bytes of buffer object ${a.id}`);
    expect(f[0]!.details).toMatchObject({ bo: a.id, pid: rig.app.pid, va });
  });

  it('copy_to_user through a stale PTE of a buffer object is reported against the process it ran for', () => {
    const rig = gpuRig('x86_64', { bugs: ['no-unmap-on-move'] });
    const a = newBo(rig, 4, GPU_GEM_DOMAIN_VRAM);
    const va = mapBo(rig, a);
    userWrite(rig.app, va, pattern(1, 4));
    expect(ttmBoEvictFirst(rig.gpu, TTM_PL_VRAM, ttmOperationCtx())).toBe(0);
    advanceTime(rig.m, 100_000);
    const k = kmalloc(rig.m, 8, GFP_KERNEL)!;
    expect(copyToUser(rig.app, va, k, 8)).toBe(0);
    const f = machineFindings(rig.m);
    expect(f.map((x) => x.code)).toEqual(['BO_STALE_PTE']);
    expect(f[0]!.message).toContain(
      `write lost: kernel (for app[${rig.app.pid}]) wrote 8 bytes of buffer object`,
    );
    expect(f[0]!.details).toMatchObject({ pid: rig.app.pid, va });
    kfree(rig.m, k);
  });

  for (const profile of PROFILE_NAMES) {
    it(`${profile}: get_user_pages on a buffer-object mapping is refused in every placement`, () => {
      const rig = gpuRig(profile);
      const vram = newBo(rig, 2, GPU_GEM_DOMAIN_VRAM);
      const gtt = newBo(rig, 2, GPU_GEM_DOMAIN_GTT);
      const swapped = newBo(rig, 2, GPU_GEM_DOMAIN_CPU);
      const sys = newBo(rig, 2, GPU_GEM_DOMAIN_CPU);
      const vas = [vram, gtt, swapped, sys].map((bo) => mapBo(rig, bo));
      for (const va of vas) userWrite(rig.app, va, new Uint8Array([1]));
      expect(ttmBoSwapout(rig.gpu, ttmOperationCtx(), TTM_PL_SYSTEM, 0, 2 * P)).toBe(2 * P);
      expect([vram, gtt, sys, swapped].map((b) => b.placementName)).toEqual([
        'vram',
        'tt',
        'system',
        'swapped',
      ]);
      expect(gtt.memType).toBe(TTM_PL_TT);
      for (const va of vas) {
        const pages: (Page | null)[] = [null];
        expect(getUserPages(rig.app, va, 1, FOLL_WRITE, pages)).toBe(-EFAULT);
        expect(pages[0]).toBeNull();
      }
      // The swapped object comes back on the next access, bytes intact.
      expect(userRead(rig.app, vas[2]!, 1)).toEqual(new Uint8Array([1]));
      expect(swapped.placementName).toBe('system');
      expect(machineFindings(rig.m)).toEqual([]);
    });
  }
});
