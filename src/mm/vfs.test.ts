import { describe, expect, it } from 'vitest';
import { findings, machine, mmInvariants } from '../../test/mm-kit.js';
import {
  allocPages,
  GFP_KERNEL,
  type Machine,
  type MachineEvent,
  pageAddress,
  zoneFreePages,
} from '../machine/index.js';
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_LOCKED,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  O_RDONLY,
  PROT_READ,
  PROT_WRITE,
  VM_LOCKED,
  VM_PFNMAP,
} from './consts.js';
import { mlock, munlock } from './gup.js';
import type { FileOperations, VmOperationsStruct } from './handles.js';
import { kernelRead, kernelWrite } from './kaccess.js';
import { kfree, kmalloc } from './kmalloc.js';
import { remapPfnRange, unmapMappingRange, vmfInsertPfn } from './pfnmap.js';
import { exitProcess, spawnProcess } from './process.js';
import { findVma, processPteCount, processVmas, pteLookup, vmaLookup } from './query.js';
import { copyFromUser, copyToUser, userRead, userWrite } from './uaccess.js';
import {
  anonInodeGetfile,
  fdInstall,
  fget,
  fputFile,
  passFd,
  registerChrdev,
  sysClose,
  sysIoctl,
  sysMmap,
  sysMunmap,
  sysOpen,
  sysRead,
  sysWrite,
  unregisterChrdev,
  vmaSetFile,
} from './vfs.js';

/** A device logging its callbacks; each mapping shows a fault-inserted 16-page buffer. */
function loggingDevice(m: Machine, path = '/dev/log') {
  const log: string[] = [];
  const buf = allocPages(m, GFP_KERNEL, 4)!;
  const vmOps: VmOperationsStruct = {
    open: (vma) => log.push(`open ${vma.vmPgoff}`),
    close: (vma) => log.push(`close ${vma.vmPgoff}`),
    fault: (vmf) => {
      log.push(`fault ${vmf.pgoff}`);
      return vmfInsertPfn(vmf.vma, vmf.address, buf + vmf.pgoff);
    },
    maySplit: (_vma, addr) => {
      log.push(`may_split ${addr.toString(16)}`);
      return split;
    },
  };
  let split = 0;
  const fops: FileOperations = {
    open: (_i, file) => {
      file.privateData = { opens: 1 };
      log.push('fop open');
      return 0;
    },
    release: (_i, file) => {
      log.push(`release ${JSON.stringify(file.privateData)}`);
      return 0;
    },
    mmap: (_f, vma) => {
      vma.vmFlags |= VM_PFNMAP;
      vma.vmOps = vmOps;
      log.push(`mmap ${vma.vmPgoff}`);
      return 0;
    },
  };
  expect(registerChrdev(m, path, fops)).toBe(0);
  return { log, buf, refuseSplit: (err: number) => (split = err) };
}

describe('open, close, release', () => {
  it('releases the file when its last reference goes: fds in any process and VMAs', () => {
    const m = machine();
    const { log } = loggingDevice(m);
    const a = spawnProcess(m, 'a');
    const b = spawnProcess(m, 'b');
    const fd = sysOpen(a, '/dev/log');
    expect(fd).toBe(3);
    const va = sysMmap(a, 0, 8192, PROT_READ, MAP_SHARED, fd, 0);
    expect(passFd(a, fd, b)).toBe(3);
    expect(sysClose(a, fd)).toBe(0);
    expect(sysClose(a, fd)).toBe(-9);
    expect(sysClose(b, 3)).toBe(0);
    expect(log).toEqual(['fop open', 'mmap 0']);
    expect(sysMunmap(a, va, 8192)).toBe(0);
    expect(log).toEqual(['fop open', 'mmap 0', 'close 0', 'release {"opens":1}']);
  });

  it('fails the kernel’s way: unknown paths, driver errors without release, bad fds, dead processes', () => {
    const m = machine();
    let released = 0;
    registerChrdev(m, '/dev/nope', {
      open: () => -19,
      release: () => {
        released++;
        return 0;
      },
    });
    const p = spawnProcess(m, 'p');
    expect(sysOpen(p, '/dev/missing')).toBe(-2);
    expect(sysOpen(p, '/dev/nope')).toBe(-19);
    expect(released).toBe(0);
    expect(registerChrdev(m, '/dev/nope', {})).toBe(-16);
    unregisterChrdev(m, '/dev/nope');
    expect(sysOpen(p, '/dev/nope')).toBe(-2);
    expect(sysIoctl(p, 7, 0, 0)).toBe(-9);
    exitProcess(p);
    expect(sysOpen(p, '/dev/missing')).toBe(-3);
    expect(sysMmap(p, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)).toBe(-3);
  });
});

describe('mmap', () => {
  it('checks its arguments as do_mmap does', () => {
    const m = machine();
    registerChrdev(m, '/dev/nommap', {});
    loggingDevice(m);
    const p = spawnProcess(m, 'p');
    const ro = sysOpen(p, '/dev/log', O_RDONLY);
    const nommap = sysOpen(p, '/dev/nommap');
    expect(sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, 42, 0)).toBe(-9);
    expect(sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, nommap, 0)).toBe(-19);
    expect(sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0)).toBe(-13);
    expect(sysMmap(p, 0, 0, PROT_READ, MAP_SHARED, ro, 0)).toBe(-22);
    expect(sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, ro, 100)).toBe(-22);
    expect(sysMmap(p, 0, 4096, PROT_READ, 0, ro, 0)).toBe(-22);
    expect(sysMmap(p, 0x1001, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, ro, 0)).toBe(-22);
    expect(sysMmap(p, 0, 4096, 0x80, MAP_SHARED, ro, 0)).toBe(-22);
    // A read-only shared mapping of a read-only file is fine.
    expect(sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, ro, 0)).toBeGreaterThan(0);
  });

  it('undoes a mapping whose driver mmap fails, without calling close, and returns its errno', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 0)!;
    let closes = 0;
    registerChrdev(m, '/dev/half', {
      mmap(_f, vma) {
        vma.vmOps = { close: () => closes++ };
        remapPfnRange(vma, vma.vmStart, page, 4096, vma.vmPageProt);
        return -12;
      },
    });
    const p = spawnProcess(m, 'p');
    const events: string[] = [];
    m.bus.on('*', (e: MachineEvent) => {
      if (e.type === 'vma-map' || e.type === 'vma-unmap' || e.type === 'pte-remove')
        events.push(`${e.type} ${e.reason}`);
    });
    expect(sysMmap(p, 0, 8192, PROT_READ, MAP_SHARED, sysOpen(p, '/dev/half'), 0)).toBe(-12);
    expect(processVmas(p)).toEqual([]);
    expect(processPteCount(p)).toBe(0);
    expect(closes).toBe(0);
    // The mapping never became visible: only the PTEs the driver wrote are taken back.
    expect(events).toEqual(['pte-remove mmap-failed']);
  });

  it('MAP_FIXED replaces what was there; MAP_FIXED_NOREPLACE refuses with -EEXIST', () => {
    const m = machine();
    const p = spawnProcess(m, 'p');
    const a = sysMmap(p, 0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    userWrite(p, a, new Uint8Array([1]));
    userWrite(p, a + 4096, new Uint8Array([2]));
    expect(
      sysMmap(p, a + 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0),
    ).toBe(-17);
    expect(sysMmap(p, a + 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)).toBe(
      a + 4096,
    );
    expect(processVmas(p).map((v) => [v.vmStart - a, v.vmEnd - a])).toEqual([
      [0, 4096],
      [4096, 8192],
      [8192, 12288],
    ]);
    expect(userRead(p, a + 4096, 1)).toEqual(new Uint8Array([0]));
    expect(userRead(p, a, 1)).toEqual(new Uint8Array([1]));
    expect(userWrite(p, a + 4096, new Uint8Array([1]))).toBe(false);
    expect(p.killedBy).toBe('SIGSEGV');
  });

  it('MAP_POPULATE faults the range in through the fault path, skipping VM_PFNMAP mappings', () => {
    const m = machine();
    const { log } = loggingDevice(m);
    const p = spawnProcess(m, 'p');
    const anon = sysMmap(
      p,
      0,
      4 * 4096,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
      -1,
      0,
    );
    expect(processPteCount(p)).toBe(4);
    // Private writable memory is populated by writing: real pages, not the zero page.
    expect(pteLookup(p, anon)!.anon).toBe(true);
    sysMmap(p, 0, 4 * 4096, PROT_READ, MAP_SHARED | MAP_POPULATE, sysOpen(p, '/dev/log'), 0);
    expect(processPteCount(p)).toBe(4);
    expect(log.filter((l) => l.startsWith('fault'))).toEqual([]);
  });
});

describe('munmap and VMA splits', () => {
  it('splits with may_split, opens the new pieces, closes the removed one, and keeps the pieces’ vm_pgoff', () => {
    const m = machine();
    const dev = loggingDevice(m);
    const p = spawnProcess(m, 'p');
    const va = sysMmap(p, 0, 3 * 4096, PROT_READ, MAP_SHARED, sysOpen(p, '/dev/log'), 4096);
    for (let i = 0; i < 3; i++) userRead(p, va + i * 4096, 1);
    dev.log.length = 0;
    dev.refuseSplit(-22);
    expect(sysMunmap(p, va + 4096, 4096)).toBe(-22);
    expect(processVmas(p)).toHaveLength(1);
    dev.refuseSplit(0);
    expect(sysMunmap(p, va + 4096, 4096)).toBe(0);
    expect(dev.log).toEqual([
      `may_split ${(va + 4096).toString(16)}`,
      `may_split ${(va + 4096).toString(16)}`,
      'open 1',
      `may_split ${(va + 8192).toString(16)}`,
      'open 3',
      'close 2',
    ]);
    expect(processVmas(p).map((v) => [v.vmStart - va, v.vmEnd - va, v.vmPgoff])).toEqual([
      [0, 4096, 1],
      [8192, 12288, 3],
    ]);
    expect([0, 1, 2].map((i) => pteLookup(p, va + i * 4096) !== null)).toEqual([true, false, true]);
    expect(mmInvariants(p)).toEqual([]);
    // vma_lookup finds the containing VMA only; find_vma the first one ending above the address.
    expect(vmaLookup(p, va + 4096)).toBeNull();
    expect(findVma(p, va + 4096)).toBe(processVmas(p)[1]);
    expect(vmaLookup(p, va + 100)).toBe(processVmas(p)[0]);
    // Unmapping a hole is fine; bad arguments are not.
    expect(sysMunmap(p, va + 4096, 4096)).toBe(0);
    expect(sysMunmap(p, va + 1, 4096)).toBe(-22);
    expect(sysMunmap(p, va, 0)).toBe(-22);
  });
});

describe('mlock', () => {
  it('locks and populates ordinary memory, silently leaves VM_PFNMAP alone, and needs the range mapped', () => {
    const m = machine();
    loggingDevice(m);
    const p = spawnProcess(m, 'p');
    const anon = sysMmap(p, 0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect(mlock(p, anon + 4096, 8192)).toBe(0);
    expect(processVmas(p).map((v) => (v.vmFlags & VM_LOCKED) !== 0)).toEqual([false, true, false]);
    expect(processPteCount(p)).toBe(2);
    const dev = sysMmap(p, 0, 4096, PROT_READ, MAP_SHARED, sysOpen(p, '/dev/log'), 0);
    expect(mlock(p, dev, 4096)).toBe(0);
    expect(processVmas(p)[0]!.vmFlags & VM_LOCKED).toBe(0);
    expect(processPteCount(p)).toBe(2);
    expect(mlock(p, anon + 3 * 4096, 8192)).toBe(-12);
    expect(munlock(p, anon, 4 * 4096)).toBe(0);
    expect(processVmas(p).some((v) => (v.vmFlags & VM_LOCKED) !== 0)).toBe(false);
    // MAP_LOCKED populates at mmap time.
    sysMmap(p, 0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    expect(processPteCount(p)).toBe(4);
  });
});

describe('ioctl, read, write and uaccess', () => {
  it('passes arg as a user address the driver copies from and to; bad addresses copy short without a signal', () => {
    const m = machine();
    const kbuf = kmalloc(m, 64, GFP_KERNEL)!;
    registerChrdev(m, '/dev/ctl', {
      unlockedIoctl(_file, cmd, arg, current) {
        if (cmd === 1) return copyFromUser(current, kbuf, arg, 8) === 0 ? 0 : -14;
        if (cmd === 2) return copyToUser(current, arg, kbuf, 8) === 0 ? 0 : -14;
        return -25;
      },
    });
    const p = spawnProcess(m, 'tool');
    const fd = sysOpen(p, '/dev/ctl');
    const ubuf = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    userWrite(p, ubuf, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(sysIoctl(p, fd, 1, ubuf)).toBe(0);
    expect(kernelRead(m, kbuf, 8)).toEqual(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    kernelWrite(m, kbuf, Uint8Array.from([9, 9]));
    expect(sysIoctl(p, fd, 2, ubuf + 100)).toBe(0);
    expect(userRead(p, ubuf + 100, 3)).toEqual(Uint8Array.from([9, 9, 3]));
    expect(sysIoctl(p, fd, 1, 0x1000)).toBe(-14);
    expect(sysIoctl(p, fd, 3, 0)).toBe(-25);
    // The failed copy zeroed the kernel buffer, and the process lives on.
    expect(kernelRead(m, kbuf, 8)).toEqual(new Uint8Array(8));
    expect(p.alive).toBe(true);
    // A copy that crosses into unmapped memory stops there and reports the rest.
    kernelWrite(m, kbuf, Uint8Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
    userWrite(p, ubuf + 4090, Uint8Array.from([5, 5, 5, 5, 5, 5]));
    expect(copyFromUser(p, kbuf, ubuf + 4090, 10)).toBe(4);
    expect(kernelRead(m, kbuf, 10)).toEqual(Uint8Array.from([5, 5, 5, 5, 5, 5, 0, 0, 0, 0]));
    // A range reaching beyond user space copies nothing and zeroes the destination (access_ok).
    kernelWrite(m, kbuf, Uint8Array.from([1, 1]));
    expect(copyFromUser(p, kbuf, 2 ** 47 - 1, 2)).toBe(2);
    expect(kernelRead(m, kbuf, 2)).toEqual(new Uint8Array(2));
    expect(sysIoctl(spawnProcess(m, 'x'), fd, 1, 0)).toBe(-9);
    kfree(m, kbuf);
    expect(findings(m)).toEqual([]);
  });

  it('read and write go through the driver with the file position', () => {
    const m = machine();
    const store = kmalloc(m, 256, GFP_KERNEL)!;
    registerChrdev(m, '/dev/mem', {
      read: (_f, buf, count, ppos, current) => {
        const n = Math.min(count, 256 - ppos.value);
        if (copyToUser(current, buf, store + ppos.value, n) !== 0) return -14;
        ppos.value += n;
        return n;
      },
      write: (_f, buf, count, ppos, current) => {
        if (copyFromUser(current, store + ppos.value, buf, count) !== 0) return -14;
        ppos.value += count;
        return count;
      },
    });
    const p = spawnProcess(m, 'cat');
    const fd = sysOpen(p, '/dev/mem');
    const ubuf = sysMmap(p, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    userWrite(p, ubuf, Uint8Array.from([10, 20, 30]));
    expect(sysWrite(p, fd, ubuf, 3)).toBe(3);
    expect(sysWrite(p, fd, ubuf, 2)).toBe(2);
    expect(kernelRead(m, store, 5)).toEqual(Uint8Array.from([10, 20, 30, 10, 20]));
    const fd2 = sysOpen(p, '/dev/mem');
    expect(sysRead(p, fd2, ubuf + 64, 4)).toBe(4);
    expect(userRead(p, ubuf + 64, 4)).toEqual(Uint8Array.from([10, 20, 30, 10]));
    expect(sysRead(p, fd2, 2 ** 47 - 2, 4)).toBe(-14);
    expect(sysRead(p, sysOpen(p, '/dev/mem', 1), ubuf, 1)).toBe(-9);
  });
});

describe('pseudo files (what dma-buf builds on)', () => {
  it('installs an anonymous-inode file as an fd, takes and drops references, and redirects a VMA to it', () => {
    const m = machine();
    const page = allocPages(m, GFP_KERNEL, 1)!;
    const log: string[] = [];
    const buf = anonInodeGetfile(
      m,
      'dmabuf',
      {
        mmap: (_f, vma) =>
          remapPfnRange(vma, vma.vmStart, page + vma.vmPgoff, vma.vmEnd - vma.vmStart, vma.vmPageProt),
        release: (_i, f) => {
          log.push(`release ${JSON.stringify(f.privateData)}`);
          return 0;
        },
      },
      { size: 8192 },
    );
    expect(buf.path).toBe('anon_inode:dmabuf');
    const exporter = spawnProcess(m, 'exporter');
    const fd = fdInstall(exporter, buf);
    expect(fd).toBe(3);
    // A device whose mmap hands the VMA over to the buffer (dma_buf_mmap's vma_set_file).
    registerChrdev(m, '/dev/gpu', {
      mmap(_f, vma) {
        vmaSetFile(vma, buf);
        return remapPfnRange(vma, vma.vmStart, page, 8192, vma.vmPageProt);
      },
    });
    const importer = spawnProcess(m, 'importer');
    expect(
      sysMmap(importer, 0, 8192, PROT_READ, MAP_SHARED, sysOpen(importer, '/dev/gpu'), 0),
    ).toBeGreaterThan(0);
    expect(processVmas(importer)[0]!.vmFile).toBe(buf);
    // The exporter's own mapping through its fd.
    const vb = sysMmap(exporter, 0, 4096, PROT_READ, MAP_SHARED, fd, 4096);
    expect(pteLookup(exporter, vb)!.pfn).toBe(page + 1);
    // Shooting down the buffer's address space reaches the importer's VMA too.
    unmapMappingRange(buf.fMapping, 0, 0, 1);
    expect(processPteCount(importer) + processPteCount(exporter)).toBe(0);
    const ref = fget(exporter, fd)!;
    expect(ref).toBe(buf);
    expect(fget(exporter, 99)).toBeNull();
    fputFile(ref);
    exitProcess(exporter);
    expect(log).toEqual([]);
    exitProcess(importer);
    expect(log).toEqual(['release {"size":8192}']);
  });
});

describe('exit', () => {
  it('closes every VMA, releases every file, and gives every page back', () => {
    const m = machine();
    const before = zoneFreePages(m, 'DMA32');
    const dev = loggingDevice(m);
    const afterDev = zoneFreePages(m, 'DMA32');
    expect(before - afterDev).toBe(16);
    const p = spawnProcess(m, 'p');
    const fd = sysOpen(p, '/dev/log');
    const va = sysMmap(p, 0, 2 * 4096, PROT_READ, MAP_SHARED, fd, 0);
    userRead(p, va, 1);
    const anon = sysMmap(p, 0, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (let i = 0; i < 8; i++) userWrite(p, anon + i * 4096, new Uint8Array([i]));
    expect(zoneFreePages(m, 'DMA32')).toBe(afterDev - 8);
    exitProcess(p);
    exitProcess(p);
    expect(p.status).toBe('exited');
    expect(processPteCount(p)).toBe(0);
    expect(zoneFreePages(m, 'DMA32')).toBe(afterDev);
    expect(dev.log).toEqual(['fop open', 'mmap 0', 'fault 0', 'close 0', 'release {"opens":1}']);
    expect(userRead(p, anon, 1)).toBeNull();
    expect(kernelRead(m, pageAddress(dev.buf), 1)).toEqual(new Uint8Array(1));
  });
});
