import { describe, expect, it } from 'vitest';
import { findings, MiB, machine } from '../../test/mm-kit.js';
import {
  GFP_KERNEL,
  isLinearMapVa,
  isVmallocAddr,
  KERNEL_RODATA_END,
  KERNEL_TEXT_START,
  PAGE_OFFSET,
  physToVirt,
  VMALLOC_START,
} from '../machine/index.js';
import { THREAD_SIZE } from './consts.js';
import {
  __end_rodata,
  __start_rodata,
  _etext,
  _stext,
  kernelImageSection,
  kernelRead,
  kernelReadInto,
  kernelStackBuffer,
  kernelStackRelease,
  kernelWrite,
  objectIsOnStack,
  virtAddrValid,
  virtToPhys,
} from './kaccess.js';
import { kmalloc } from './kmalloc.js';
import { ioremap, vmalloc } from './vmalloc.js';

describe('kernel loads and stores', () => {
  it('go through the linear map, cached, and count one step each', () => {
    const m = machine();
    const va = kmalloc(m, 256, GFP_KERNEL)!;
    const before = m.clock.step;
    expect(kernelWrite(m, va, new Uint8Array([1, 2, 3, 4]))).toBe(true);
    expect(kernelRead(m, va + 1, 2)).toEqual(new Uint8Array([2, 3]));
    expect(m.clock.step - before).toBe(2);
    const out = new Uint8Array(8);
    const inner = m.clock.step;
    expect(kernelReadInto(m, va, out, 4, 4)).toBe(true);
    expect(m.clock.step).toBe(inner);
    expect([...out]).toEqual([0, 0, 0, 0, 1, 2, 3, 4]);
  });

  it('oops on unmapped addresses, user addresses, memory beyond RAM, and writes to kernel text', () => {
    const m = machine();
    expect(kernelRead(m, VMALLOC_START, 4)).toBeNull();
    expect(kernelRead(m, 0x1000, 4)).toBeNull();
    expect(kernelRead(m, PAGE_OFFSET + 64 * MiB, 4)).toBeNull();
    expect(kernelWrite(m, _stext + 8, new Uint8Array(1))).toBe(false);
    expect(kernelRead(m, _stext + 8, 1)).toEqual(new Uint8Array(1));
    expect(findings(m)).toEqual([
      `OOPS: BUG: unable to handle page fault for address: 0x${VMALLOC_START.toString(16)} (supervisor read access in kernel mode: not-present page)`,
      'OOPS: BUG: unable to handle page fault for address: 0x1000 (supervisor read access in kernel mode: user address dereferenced by the kernel)',
      `OOPS: BUG: unable to handle page fault for address: 0x${(PAGE_OFFSET + 64 * MiB).toString(16)} (supervisor read access in kernel mode: not-present page (the linear map covers RAM only))`,
      `OOPS: BUG: unable to handle page fault for address: 0x${(_stext + 8).toString(16)} (supervisor write access in kernel mode: protection violation (kernel text and rodata are read-only))`,
    ]);
  });

  it('read an unbacked physical address as all-ones on x86, and take an external abort elsewhere', () => {
    for (const [profile, bytes, oops] of [
      ['x86_64', new Uint8Array([0xff, 0xff]), 0],
      ['arm64-noncoherent', null, 1],
    ] as const) {
      const m = machine(profile);
      const va = ioremap(m, 2 ** 40, 4096)!;
      expect(kernelRead(m, va, 2)).toEqual(bytes);
      expect(findings(m).length).toBe(oops);
    }
  });
});

describe('virt_to_phys and friends', () => {
  it('translates the linear map and WARNs (returning garbage) for anything else', () => {
    const m = machine();
    expect(virtToPhys(m, physToVirt(0x12345))).toBe(0x12345);
    const v = vmalloc(m, 4096)!;
    expect(virtToPhys(m, v)).toBe(v - PAGE_OFFSET);
    expect(findings(m)).toEqual([`WARN: virt_to_phys used for non-linear address: 0x${v.toString(16)}`]);
    expect(virtAddrValid(m, physToVirt(0x200000))).toBe(true);
    expect(virtAddrValid(m, physToVirt(0))).toBe(false);
    expect(virtAddrValid(m, v)).toBe(false);
  });

  it('names the kernel image sections that a range overlaps', () => {
    expect(_stext).toBe(PAGE_OFFSET + KERNEL_TEXT_START);
    expect(__end_rodata).toBe(PAGE_OFFSET + KERNEL_RODATA_END);
    expect(__start_rodata).toBe(_etext);
    expect(kernelImageSection(_stext, 16)).toBe('text');
    expect(kernelImageSection(_etext - 8, 16)).toBe('text');
    expect(kernelImageSection(__start_rodata + 100, 1)).toBe('rodata');
    expect(kernelImageSection(__end_rodata, 64)).toBeNull();
    expect(kernelImageSection(_stext - 64, 64)).toBeNull();
  });
});

describe('the kernel stack', () => {
  it('is vmapped on x86_64 and arm64, linear on PA-RISC, and hands out 16-byte aligned buffers top down', () => {
    const kinds = ['x86_64', 'arm64-noncoherent', 'parisc'].map((p) => {
      const m = machine(p);
      const a = kernelStackBuffer(m, 64);
      const b = kernelStackBuffer(m, 10);
      expect(a - b).toBe(16);
      expect(objectIsOnStack(m, a) && objectIsOnStack(m, b + 15)).toBe(true);
      expect(objectIsOnStack(m, kmalloc(m, 64, GFP_KERNEL)!)).toBe(false);
      kernelWrite(m, b, new Uint8Array([5, 6]));
      expect(kernelRead(m, b, 2)).toEqual(new Uint8Array([5, 6]));
      kernelStackRelease(m, b);
      expect(kernelStackBuffer(m, 16)).toBe(b);
      return isVmallocAddr(a) ? 'vmalloc' : isLinearMapVa(a) ? 'linear' : 'other';
    });
    expect(kinds).toEqual(['vmalloc', 'vmalloc', 'linear']);
  });

  it('refuses buffers that do not fit the stack (a misuse of dmalab)', () => {
    const m = machine();
    kernelStackBuffer(m, THREAD_SIZE - 16);
    expect(() => kernelStackBuffer(m, 32)).toThrow(/do not fit on the 16384-byte kernel stack \(16 left\)/);
    expect(() => kernelStackRelease(m, 0x1234)).toThrow(/not a live stack buffer/);
  });
});
