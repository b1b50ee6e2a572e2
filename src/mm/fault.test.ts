import { describe, expect, it } from 'vitest';
import { findings, machine, mmInvariants } from '../../test/mm-kit.js';
import {
  addDevice,
  allocPages,
  GFP_KERNEL,
  getPage,
  type Machine,
  type MachineEvent,
  type Page,
  pageAddress,
  pageRefCount,
  physToPfn,
} from '../machine/index.js';
import { flushDcachePage } from './cacheflush.js';
import {
  FOLL_WRITE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  VM_FAULT_NOPAGE,
  VM_FAULT_SIGBUS,
  VM_MIXEDMAP,
  VM_PFNMAP,
  type VmFaultT,
} from './consts.js';
import { getUserPages, pinUserPages } from './gup.js';
import {
  type FileOperations,
  type Process,
  type VmFault,
  type VmOperationsStruct,
  vmFlagsSet,
} from './handles.js';
import { kernelRead, kernelWrite } from './kaccess.js';
import { unmapMappingRange, vmfInsertMixed, vmfInsertPfn, vmfInsertPfnProt, vmInsertPage } from './pfnmap.js';
import { PAGE_READONLY, PAGE_SHARED } from './pgprot.js';
import { spawnProcess } from './process.js';
import { processVmas, pteLookup } from './query.js';
import { userRead, userWrite } from './uaccess.js';
import { registerChrdev, sysMmap, sysOpen } from './vfs.js';

/** Maps `path` with `vmOps` installed by the driver's mmap (and extra VMA flags). */
function mapDevice(
  m: Machine,
  path: string,
  vmOps: VmOperationsStruct,
  flags: number,
  pages = 4,
  mapFlags = MAP_SHARED,
) {
  const fops: FileOperations = {
    mmap(_file, vma) {
      vmFlagsSet(vma, flags);
      vma.vmOps = vmOps;
      return 0;
    },
  };
  expect(registerChrdev(m, path, fops)).toBe(0);
  const proc = spawnProcess(m, 'app');
  const fd = sysOpen(proc, path);
  const va = sysMmap(proc, 0, pages * 4096, PROT_READ | PROT_WRITE, mapFlags, fd, 0);
  expect(va).toBeGreaterThan(0);
  return { proc, va };
}

function faultEvents(m: Machine): MachineEvent[] {
  const list: MachineEvent[] = [];
  m.bus.on('page-fault', (e) => list.push(e));
  return list;
}

describe('a fault handler that inserts PFNs', () => {
  for (const profile of ['x86_64', 'arm64-noncoherent', 'parisc']) {
    it(`faults once per page, re-faults after unmapMappingRange and then sees the new backing (${profile})`, () => {
      const m = machine(profile);
      const fill = (page: Page, byte: number) => {
        for (let i = 0; i < 4; i++)
          kernelWrite(m, pageAddress(page) + i * 4096, new Uint8Array(4096).fill(byte));
        // The driver makes its kernel writes visible to every alias (a no-op on PIPT).
        for (let i = 0; i < 4; i++) flushDcachePage(m, (page + i) as Page);
      };
      let backing = allocPages(m, GFP_KERNEL, 2)!;
      fill(backing, 0xa1);
      let calls = 0;
      const ops: VmOperationsStruct = {
        fault(vmf) {
          calls++;
          return vmfInsertPfn(vmf.vma, vmf.address, backing + vmf.pgoff);
        },
      };
      const events = faultEvents(m);
      const { proc, va } = mapDevice(m, '/dev/buf', ops, VM_PFNMAP);
      expect(userRead(proc, va + 10, 2)).toEqual(new Uint8Array([0xa1, 0xa1]));
      expect(userRead(proc, va + 20, 2)).toEqual(new Uint8Array([0xa1, 0xa1]));
      expect(userWrite(proc, va + 4096 + 5, new Uint8Array([0x77]))).toBe(true);
      expect(calls).toBe(2);
      expect(events.map((e) => (e.type === 'page-fault' ? e.result : -1))).toEqual([
        VM_FAULT_NOPAGE,
        VM_FAULT_NOPAGE,
      ]);
      expect(pteLookup(proc, va)).toEqual({
        pfn: backing,
        attr: 'cached',
        write: true,
        special: true,
        anon: false,
      });
      // Shoot down the whole object; move it; the next touch faults onto the new pages.
      const mapping = processVmas(proc)[0]!.vmFile!.fMapping;
      unmapMappingRange(mapping, 0, 0, true);
      expect(pteLookup(proc, va)).toBeNull();
      const old = backing;
      backing = allocPages(m, GFP_KERNEL, 2)!;
      fill(backing, 0xb2);
      expect(userRead(proc, va + 10, 2)).toEqual(new Uint8Array([0xb2, 0xb2]));
      expect(calls).toBe(3);
      expect(pteLookup(proc, va)!.pfn).toBe(backing);
      // The old backing kept the user's write (through its alias, flushed at the shoot-down).
      expect(kernelRead(m, pageAddress(old) + 4096 + 5, 1)).toEqual(new Uint8Array([0x77]));
      expect(mmInvariants(proc)).toEqual([]);
      expect(findings(m)).toEqual([]);
    });
  }

  it('leaves a PTE another fault installed alone, still reporting VM_FAULT_NOPAGE (the race of seed 004)', () => {
    const m = machine();
    const a = allocPages(m, GFP_KERNEL, 0)!;
    const b = allocPages(m, GFP_KERNEL, 0)!;
    let vmfSeen: VmFault | null = null;
    const { proc, va } = mapDevice(
      m,
      '/dev/race',
      {
        fault(vmf) {
          vmfSeen = vmf;
          // A concurrent fault already inserted frame `a`; this one tries `b`.
          expect(vmfInsertPfn(vmf.vma, vmf.address, a)).toBe(VM_FAULT_NOPAGE);
          return vmfInsertPfn(vmf.vma, vmf.address, b);
        },
      },
      VM_PFNMAP,
    );
    expect(userRead(proc, va, 1)).not.toBeNull();
    expect(pteLookup(proc, va)!.pfn).toBe(a);
    expect(vmfSeen!.pgoff).toBe(0);
    expect(vmfSeen!.address).toBe(va);
  });
});

describe('fault handlers returning pages', () => {
  it('installs vmf.page with the handler’s reference, and copies it on a write to a private mapping', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 0)!;
    kernelWrite(m, pageAddress(page), new Uint8Array([1, 2, 3]));
    const ops: VmOperationsStruct = {
      fault(vmf) {
        // The handler hands over a reference for the PTE, as ->fault does with get_page().
        getPage(m, page);
        vmf.page = page;
        return 0;
      },
    };
    const shared = mapDevice(m, '/dev/pg', ops, 0, 1);
    expect(userRead(shared.proc, shared.va, 3)).toEqual(new Uint8Array([1, 2, 3]));
    expect(pageRefCount(m, page)).toBe(2);
    expect(pteLookup(shared.proc, shared.va)).toEqual({
      pfn: page,
      attr: 'cached',
      write: true,
      special: false,
      anon: false,
    });
    // A private mapping: reads share the page read-only; a write copies it.
    const priv = mapDevice(m, '/dev/pg2', ops, 0, 1, MAP_PRIVATE);
    expect(userRead(priv.proc, priv.va, 1)).toEqual(new Uint8Array([1]));
    expect(pteLookup(priv.proc, priv.va)!.write).toBe(false);
    expect(userWrite(priv.proc, priv.va, new Uint8Array([9]))).toBe(true);
    const copy = pteLookup(priv.proc, priv.va)!;
    expect(copy.pfn).not.toBe(page);
    expect(copy.anon && copy.write).toBe(true);
    expect(userRead(priv.proc, priv.va, 3)).toEqual(new Uint8Array([9, 2, 3]));
    expect(kernelRead(m, pageAddress(page), 1)).toEqual(new Uint8Array([1]));
    // The copy dropped the private mapping's reference to the original page.
    expect(pageRefCount(m, page)).toBe(2);
    expect(findings(m)).toEqual([]);
  });

  it('vm_insert_page returns -EBUSY on a present PTE and is a BUG from a fault handler without VM_MIXEDMAP', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 0)!;
    const other = allocPages(m, GFP_KERNEL, 0)!;
    const results: number[] = [];
    const mixed = mapDevice(
      m,
      '/dev/mixed',
      {
        fault(vmf) {
          results.push(vmInsertPage(vmf.vma, vmf.address, page));
          results.push(vmInsertPage(vmf.vma, vmf.address, other));
          return VM_FAULT_NOPAGE;
        },
      },
      VM_MIXEDMAP,
    );
    expect(userRead(mixed.proc, mixed.va, 1)).not.toBeNull();
    expect(results).toEqual([0, -16]);
    expect(pteLookup(mixed.proc, mixed.va)!.pfn).toBe(page);
    expect(pageRefCount(m, page)).toBe(2);
    expect(pageRefCount(m, other)).toBe(1);
    const plain = mapDevice(
      m,
      '/dev/plain',
      {
        fault: (vmf) => (vmInsertPage(vmf.vma, vmf.address, page) === 0 ? VM_FAULT_NOPAGE : VM_FAULT_SIGBUS),
      },
      0,
    );
    expect(userRead(plain.proc, plain.va, 1)).toBeNull();
    expect(findings(m)).toEqual([
      'BUG: kernel BUG at mm/memory.c: vm_insert_page: mmap_lock not held for writing on a VMA without VM_MIXEDMAP (call it from ->mmap, or use vmf_insert_* from a fault handler)',
      `SIGBUS: app[2]: bus error at 0x${plain.va.toString(16)} (read: the fault handler returned VM_FAULT_SIGBUS)`,
    ]);
  });
});

describe('faults that fail', () => {
  it('kills the process with SIGBUS when the handler says so, and when there is no handler', () => {
    const m = machine();
    let released = 0;
    const fops: FileOperations = {
      mmap(_f, vma) {
        if (vma.vmPgoff === 0) vma.vmOps = { fault: () => VM_FAULT_SIGBUS };
        return 0;
      },
      release() {
        released++;
        return 0;
      },
    };
    registerChrdev(m, '/dev/bad', fops);
    const signals: MachineEvent[] = [];
    m.bus.on('signal', (e) => signals.push(e));
    for (const pgoff of [0, 1]) {
      const p = spawnProcess(m, `p${pgoff}`);
      const va = sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, sysOpen(p, '/dev/bad'), pgoff * 4096);
      expect(userRead(p, va, 1)).toBeNull();
      expect(p.status).toBe('killed');
      expect(p.killedBy).toBe('SIGBUS');
      expect(userRead(p, va, 1)).toBeNull();
    }
    expect(released).toBe(2);
    expect(signals.map((e) => (e.type === 'signal' ? `${e.owner} ${e.signal} ${e.code}` : ''))).toEqual([
      'p0 SIGBUS BUS_ADRERR',
      'p1 SIGBUS BUS_ADRERR',
    ]);
    expect(findings(m).map((f) => f.split(':')[0])).toEqual(['SIGBUS', 'SIGBUS']);
  });

  it('reports a handler that never installs a PTE as a livelock, and one that returns no page as an oops', () => {
    const m = machine();
    const loop = mapDevice(m, '/dev/loop', { fault: (): VmFaultT => VM_FAULT_NOPAGE }, VM_PFNMAP);
    expect(userRead(loop.proc, loop.va, 1)).toBeNull();
    expect(loop.proc.alive).toBe(true);
    const nopage = mapDevice(m, '/dev/nopage', { fault: (): VmFaultT => 0 }, 0);
    expect(userWrite(nopage.proc, nopage.va, new Uint8Array(1))).toBe(false);
    expect(findings(m)).toEqual([
      `FAULT_LIVELOCK: app[1]: read at 0x${loop.va.toString(16)} faults forever: the fault handler keeps reporting success without installing a usable PTE`,
      `OOPS: BUG: kernel NULL pointer dereference in finish_fault: vm_ops->fault returned 0 without a valid vmf->page [address=0x${nopage.va.toString(16)}]`,
      `SIGBUS: app[2]: bus error at 0x${nopage.va.toString(16)} (write: the fault handler returned VM_FAULT_SIGBUS)`,
    ]);
  });

  it('refuses vmf_insert_pfn_prot on VMAs without exactly one of PFNMAP/MIXEDMAP, and page-backed frames in MIXEDMAP', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 0)!;
    const ret: number[] = [];
    const record = (r: number): number => {
      ret.push(r);
      return r;
    };
    const none = mapDevice(
      m,
      '/dev/none',
      { fault: (vmf) => record(vmfInsertPfn(vmf.vma, vmf.address, page)) },
      0,
    );
    userRead(none.proc, none.va, 1);
    const mixed = mapDevice(
      m,
      '/dev/mx',
      { fault: (vmf) => record(vmfInsertPfnProt(vmf.vma, vmf.address, page, PAGE_SHARED)) },
      VM_MIXEDMAP,
    );
    userRead(mixed.proc, mixed.va, 1);
    expect(ret).toEqual([VM_FAULT_SIGBUS, VM_FAULT_SIGBUS]);
    expect(findings(m).filter((f) => f.startsWith('BUG'))).toEqual([
      'BUG: kernel BUG at mm/memory.c: vmf_insert_pfn_prot: the VMA needs exactly one of VM_PFNMAP and VM_MIXEDMAP',
      `BUG: kernel BUG at mm/memory.c: vmf_insert_pfn_prot: frame 0x${page.toString(16)} has a struct page in a VM_MIXEDMAP VMA (use vmf_insert_mixed)`,
    ]);
  });
});

describe('write faults on read-only PTEs', () => {
  it('calls pfn_mkwrite before making a PFN writable, and honours its veto', () => {
    const m = machine();
    const dev = addDevice(m, { name: 'fb', deviceMemoryBytes: 1 << 20 });
    const pfn = physToPfn(dev.deviceMemory!.phys);
    let allow = true;
    const calls: string[] = [];
    const { proc, va } = mapDevice(
      m,
      '/dev/fb',
      {
        fault: (vmf) => vmfInsertPfnProt(vmf.vma, vmf.address, pfn + vmf.pgoff, PAGE_READONLY),
        pfnMkwrite: (vmf) => {
          calls.push(`mkwrite ${vmf.pgoff}`);
          return allow ? 0 : VM_FAULT_SIGBUS;
        },
      },
      VM_PFNMAP,
    );
    expect(userRead(proc, va, 1)).toEqual(new Uint8Array(1));
    expect(pteLookup(proc, va)!.write).toBe(false);
    expect(userWrite(proc, va, new Uint8Array([3]))).toBe(true);
    expect(pteLookup(proc, va)!.write).toBe(true);
    allow = false;
    expect(userWrite(proc, va + 4096, new Uint8Array([3]))).toBe(false);
    expect(calls).toEqual(['mkwrite 0', 'mkwrite 1']);
    expect(proc.killedBy).toBe('SIGBUS');
  });

  it('vmf_insert_mixed maps RAM as a PFN: GUP of it fails (-EFAULT with FOLL_GET, -EEXIST when pinning)', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 0)!;
    const { proc, va } = mapDevice(
      m,
      '/dev/mixed',
      { fault: (vmf) => vmfInsertMixed(vmf.vma, vmf.address, page) },
      VM_MIXEDMAP,
      1,
    );
    expect(userRead(proc, va, 1)).not.toBeNull();
    expect(pteLookup(proc, va)!.special).toBe(true);
    expect(getUserPages(proc, va, 1, FOLL_WRITE, [])).toBe(-14);
    expect(pinUserPages(proc, va, 1, FOLL_WRITE, [])).toBe(-17);
  });
});

describe('anonymous memory', () => {
  it('maps the zero page on a read and a private zeroed page on the first write', () => {
    const m = machine();
    const p: Process = spawnProcess(m, 'anon');
    const va = sysMmap(p, 0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect(userRead(p, va, 4)).toEqual(new Uint8Array(4));
    const zero = pteLookup(p, va)!;
    expect(zero).toMatchObject({ write: false, special: true, anon: false });
    expect(userRead(p, va + 4096, 1)).toEqual(new Uint8Array(1));
    expect(pteLookup(p, va + 4096)!.pfn).toBe(zero.pfn);
    expect(userWrite(p, va + 4, new Uint8Array([8]))).toBe(true);
    expect(pteLookup(p, va)).toMatchObject({ write: true, special: false, anon: true });
    expect(userRead(p, va, 6)).toEqual(new Uint8Array([0, 0, 0, 0, 8, 0]));
    // A read-only pin of untouched memory returns the zero page, unpinned (the kernel's behaviour).
    const pages: (Page | null)[] = [];
    expect(pinUserPages(p, va + 4096, 1, 0, pages)).toBe(1);
    expect(pages[0]).toBe(zero.pfn);
    expect(mmInvariants(p)).toEqual([]);
  });

  it('delivers SEGV_ACCERR for accesses the VMA forbids and SEGV_MAPERR outside every VMA', () => {
    const m = machine();
    const codes: string[] = [];
    m.bus.on('signal', (e) => codes.push(`${e.owner} ${e.code} ${e.va === 0 ? 0 : 'va'}`));
    const a = spawnProcess(m, 'none');
    const none = sysMmap(a, 0, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect(userRead(a, none, 1)).toBeNull();
    const b = spawnProcess(m, 'ro');
    const ro = sysMmap(b, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect(userRead(b, ro, 1)).toEqual(new Uint8Array(1));
    expect(userWrite(b, ro, new Uint8Array(1))).toBe(false);
    const c = spawnProcess(m, 'null');
    expect(userRead(c, 0, 8)).toBeNull();
    expect(codes).toEqual(['none SEGV_ACCERR va', 'ro SEGV_ACCERR va', 'null SEGV_MAPERR 0']);
    expect(findings(m)[1]).toBe(
      `SIGSEGV: ro[2]: segfault at 0x${ro.toString(16)} (write: SEGV_ACCERR, the mapping does not permit it)`,
    );
  });
});
