import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  ALL_COLOURS,
  addDevice,
  allocPages,
  cacheClean,
  cacheDirtyLines,
  cacheEvict,
  cacheFlush,
  cacheInvalidate,
  cacheLinesPresent,
  cpuRead,
  cpuWrite,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  type Machine,
  type MemAttr,
  PAGE_SIZE,
  pageToPhys,
  physToVirt,
} from './index.js';

function bytes(n: number, v: number): Uint8Array {
  return new Uint8Array(n).fill(v);
}

/** Kernel access through the linear map (what the mm layer will do). */
function kread(m: Machine, pa: number, len: number, attr: MemAttr = 'cached'): Uint8Array {
  const out = new Uint8Array(len);
  expect(cpuRead(m, pa, physToVirt(pa), attr, out, 0, len)).toBe('ok');
  return out;
}
function kwrite(m: Machine, pa: number, data: Uint8Array, attr: MemAttr = 'cached'): void {
  expect(cpuWrite(m, pa, physToVirt(pa), attr, data, 0, data.length)).toBe('ok');
}

function page(m: Machine): number {
  const p = allocPages(m, GFP_KERNEL, 0);
  expect(p).not.toBeNull();
  return pageToPhys(p!);
}

describe('arm64-noncoherent cache model', () => {
  it('keeps a CPU write in the cache: the device reads old bytes until the line is cleaned', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'nic' });
    const pa = page(m);
    kwrite(m, pa, bytes(64, 0xaa));
    expect(cacheDirtyLines(m, pa, 64)).toBe(1);
    expect([...deviceDmaRead(dev, pa, 4)]).toEqual([0, 0, 0, 0]);
    expect(cacheClean(m, pa, 64)).toBe(1);
    expect([...deviceDmaRead(dev, pa, 4)]).toEqual([0xaa, 0xaa, 0xaa, 0xaa]);
    // Clean keeps the line valid.
    expect(cacheLinesPresent(m, pa, 64)).toBe(1);
    expect(cacheDirtyLines(m, pa, 64)).toBe(0);
  });

  it('hides a device write behind a stale clean line until it is invalidated', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'cam' });
    const pa = page(m);
    expect(kread(m, pa, 4)).toEqual(new Uint8Array(4)); // line now cached, clean
    deviceDmaWrite(dev, pa, bytes(64, 0x55));
    expect([...kread(m, pa, 4)]).toEqual([0, 0, 0, 0]); // stale
    expect(cacheInvalidate(m, pa, 64)).toBe(1);
    expect([...kread(m, pa, 4)]).toEqual([0x55, 0x55, 0x55, 0x55]);
  });

  it('lets a dirty line evicted after a device write destroy the device bytes', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'cam' });
    const pa = page(m);
    kwrite(m, pa, bytes(64, 0x11)); // dirty, not cleaned
    deviceDmaWrite(dev, pa, bytes(64, 0x22));
    expect([...deviceDmaRead(dev, pa, 2)]).toEqual([0x22, 0x22]); // memory holds the device bytes
    expect(cacheEvict(m, pa)).toBe(1); // late eviction writes the stale line back
    expect([...deviceDmaRead(dev, pa, 2)]).toEqual([0x11, 0x11]);
  });

  it('evicts for capacity only, with the least recently used way as victim', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'd' });
    const c = m.hw.cache;
    const setSpan = c.sets * c.lineSize; // addresses this far apart share a set
    const base = 32 << 20;
    for (let w = 0; w < c.ways; w++) kwrite(m, base + w * setSpan, bytes(1, w + 1));
    expect(c.stats.evictions).toBe(0);
    expect([...deviceDmaRead(dev, base, 1)]).toEqual([0]); // still only in the cache
    kread(m, base, 1); // touch way 0 so that way 1 becomes the LRU victim
    kwrite(m, base + c.ways * setSpan, bytes(1, 0x77)); // one more line in the same set
    expect(c.stats.evictions).toBe(1);
    expect([...deviceDmaRead(dev, base + setSpan, 1)]).toEqual([2]); // way 1 written back
    expect([...deviceDmaRead(dev, base, 1)]).toEqual([0]); // way 0 still cached
  });

  it('cleans and invalidates an edge line partly covered by an invalidate, writing the neighbour back first', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'cam' });
    const pa = page(m);
    // A status word at [0, 8) shares line 0 with a buffer at [8, 64+…).
    kwrite(m, pa, bytes(8, 0x5a));
    deviceDmaWrite(dev, pa + 8, bytes(120, 0x33));
    expect(cacheInvalidate(m, pa + 8, 120, ALL_COLOURS, 'clean')).toBe(1);
    // The neighbour survived, and the line's stale copy of [8,64) overwrote the device's bytes.
    const mem = deviceDmaRead(dev, pa, 128);
    expect([...mem.subarray(0, 8)]).toEqual(Array(8).fill(0x5a));
    expect([...mem.subarray(8, 64)]).toEqual(Array(56).fill(0));
    expect([...mem.subarray(64, 128)]).toEqual(Array(64).fill(0x33));
  });

  it('discards a dirty line wholly covered by an invalidate', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'cam' });
    const pa = page(m);
    kwrite(m, pa, bytes(64, 0x5a));
    expect(cacheInvalidate(m, pa, 64, ALL_COLOURS, 'clean')).toBe(1);
    expect(m.hw.cache.stats.dirtyDiscarded).toBe(1);
    expect([...deviceDmaRead(dev, pa, 2)]).toEqual([0, 0]);
  });

  it('does not snoop uncached accesses: a dirty cached alias stays hidden', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
    const pa = page(m);
    kwrite(m, pa, bytes(4, 0x99));
    expect([...kread(m, pa, 4, 'uncached')]).toEqual([0, 0, 0, 0]);
    expect(cacheFlush(m, pa, 64)).toBe(1);
    expect([...kread(m, pa, 4, 'uncached')]).toEqual([0x99, 0x99, 0x99, 0x99]);
  });
});

describe('x86_64 cache model', () => {
  it('lets a snooping device see dirty CPU data and the CPU see device writes at once', () => {
    const m = createMachine({ profile: 'x86_64', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'nic' });
    const pa = page(m);
    kwrite(m, pa, bytes(16, 0xcd));
    expect(cacheDirtyLines(m, pa, 64)).toBe(1);
    expect([...deviceDmaRead(dev, pa, 3)]).toEqual([0xcd, 0xcd, 0xcd]);
    kread(m, pa + 64, 1); // a clean cached line
    deviceDmaWrite(dev, pa, bytes(128, 0x42));
    expect([...kread(m, pa, 2)]).toEqual([0x42, 0x42]);
    expect([...kread(m, pa + 64, 2)]).toEqual([0x42, 0x42]);
  });

  it('a snooping device sees exactly what the CPU sees, at any offset and length (word and byte paths)', () => {
    const m = createMachine({ profile: 'x86_64', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'nic' });
    const pa = page(m);
    const pattern = Uint8Array.from({ length: PAGE_SIZE }, (_, i) => (i * 7 + 3) & 0xff);
    // Memory holds the pattern; then the CPU dirties some lines (whole and partial) with other bytes.
    deviceDmaWrite(dev, pa, pattern);
    kwrite(m, pa + 64, bytes(128, 0xa1));
    kwrite(m, pa + 301, bytes(37, 0xb2));
    kwrite(m, pa + 1024, bytes(640, 0xc3));
    const cpu = kread(m, pa, PAGE_SIZE);
    for (const [off, len] of [
      [0, PAGE_SIZE],
      [3, 200],
      [64, 128],
      [300, 41],
      [1021, 700],
      [1028, 8],
    ] as const) {
      expect([...deviceDmaRead(dev, pa + off, len)], `read ${off}+${len}`).toEqual([
        ...cpu.subarray(off, off + len),
      ]);
    }
    // A device write at odd offsets lands in the cached copies too.
    const w = Uint8Array.from({ length: 333 }, (_, i) => (i * 13) & 0xff);
    deviceDmaWrite(dev, pa + 1030, w);
    expect([...kread(m, pa + 1030, 333)]).toEqual([...w]);
    expect([...kread(m, pa + 1024, 6)]).toEqual([...bytes(6, 0xc3)]);
  });

  it('snoops uncached CPU accesses (self-snoop)', () => {
    const m = createMachine({ profile: 'x86_64', ramBytes: 64 << 20 });
    const pa = page(m);
    kwrite(m, pa, bytes(4, 0x99));
    expect([...kread(m, pa, 4, 'uncached')]).toEqual([0x99, 0x99, 0x99, 0x99]);
    kwrite(m, pa, bytes(4, 0x12), 'write-combine');
    expect([...kread(m, pa, 4)]).toEqual([0x12, 0x12, 0x12, 0x12]);
  });

  it('reports a decode error for a hole instead of crashing', () => {
    const m = createMachine({ ramBytes: 64 << 20 });
    const out = new Uint8Array(4);
    expect(cpuRead(m, 1 << 30, physToVirt(1 << 30), 'cached', out, 0, 4)).toBe('decode-error');
    expect(cpuWrite(m, (64 << 20) - 2, 0, 'cached', out, 0, 4)).toBe('decode-error');
  });
});

describe('parisc VIPT cache model', () => {
  const C = 4 << 20; // congruence modulus

  it('lets two non-congruent aliases of one page diverge while congruent ones agree', () => {
    const m = createMachine({ profile: 'parisc', ramBytes: 64 << 20 });
    const pa = page(m);
    const kva = physToVirt(pa);
    const userCongruent = 0x4000_0000 + (kva % C);
    const userOther = userCongruent + PAGE_SIZE; // a different colour
    cpuWrite(m, pa, kva, 'cached', bytes(16, 0xab), 0, 16);
    const viaCongruent = new Uint8Array(16);
    const viaOther = new Uint8Array(16);
    cpuRead(m, pa, userCongruent, 'cached', viaCongruent, 0, 16);
    cpuRead(m, pa, userOther, 'cached', viaOther, 0, 16);
    expect(viaCongruent).toEqual(bytes(16, 0xab));
    expect(viaOther).toEqual(bytes(16, 0)); // its own, stale copy from memory
    // Writing through the other alias does not reach the kernel alias either.
    cpuWrite(m, pa, userOther, 'cached', bytes(16, 0x01), 0, 16);
    cpuRead(m, pa, kva, 'cached', viaCongruent, 0, 16);
    expect(viaCongruent).toEqual(bytes(16, 0xab));
    expect(cacheLinesPresent(m, pa, 16)).toBe(2);
  });

  it('keeps DMA coherent with the alias named by the coherence index only', async () => {
    const { iommuMap, IOMMU_READ, IOMMU_WRITE } = await import('./iommu.js');
    const m = createMachine({ profile: 'parisc', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'sound' });
    expect(dev.state.coherence).toBe('ci');
    const pa = page(m);
    const kva = physToVirt(pa);
    const userVa = 0x4000_0000 + ((kva + PAGE_SIZE) % C); // non-congruent with the kernel alias
    const iova = 0x10_0000;
    expect(iommuMap(dev.iommuDomain!, iova, pa, PAGE_SIZE, IOMMU_READ | IOMMU_WRITE, 0, kva)).toBe(0);
    // Both aliases have the line cached (clean) before the device writes.
    cpuRead(m, pa, kva, 'cached', new Uint8Array(4), 0, 4);
    cpuRead(m, pa, userVa, 'cached', new Uint8Array(4), 0, 4);
    deviceDmaWrite(dev, iova, bytes(16, 0x77));
    const k = new Uint8Array(4);
    const u = new Uint8Array(4);
    cpuRead(m, pa, kva, 'cached', k, 0, 4);
    cpuRead(m, pa, userVa, 'cached', u, 0, 4);
    expect([...k]).toEqual([0x77, 0x77, 0x77, 0x77]);
    expect([...u]).toEqual([0, 0, 0, 0]);
    // And the device sees a dirty kernel-alias line, but not a dirty user-alias line.
    cpuWrite(m, pa + 16, kva + 16, 'cached', bytes(16, 0x21), 0, 16);
    cpuWrite(m, pa + 32, userVa + 32, 'cached', bytes(16, 0x31), 0, 16);
    const seen = deviceDmaRead(dev, iova + 16, 32);
    expect(seen[0]).toBe(0x21);
    expect(seen[16]).toBe(0);
  });
});
