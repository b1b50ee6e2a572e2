import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  addDevice,
  deviceDmaWrite,
  GFP_KERNEL,
  machineFindings,
  PAGE_SIZE,
  runVerdict,
} from '../machine/index.js';
import { bindDriver, kernelRead, registerDriver, unbindDriver } from '../mm/index.js';
import {
  dmaAllocRecord,
  dmamAllocCoherent,
  dmamFreeCoherent,
  dmamPoolCreate,
  dmaPoolAlloc,
  dmaPoolCreate,
  dmaPoolDestroy,
  dmaPoolFree,
  dmaPoolStats,
  dmaPoolZalloc,
} from './index.js';

const MiB = 1 << 20;

function setup(profile = 'x86_64') {
  const m = createMachine({ profile, ramBytes: 64 * MiB });
  return { m, dev: addDevice(m, { name: 'ehci' }) };
}

describe('DMA pools', () => {
  it('rejects the kernel’s bad arguments', () => {
    const { dev } = setup();
    expect(dmaPoolCreate('x', null, 64, 8, 0)).toBeNull();
    expect(dmaPoolCreate('x', dev, 64, 3, 0)).toBeNull(); // align not a power of two
    expect(dmaPoolCreate('x', dev, 0, 8, 0)).toBeNull();
    expect(dmaPoolCreate('x', dev, 64, 8, 32)).toBeNull(); // boundary below size
    expect(dmaPoolCreate('x', dev, 64, 8, 96)).toBeNull(); // boundary not a power of two
  });

  it('never lets a block straddle its boundary', () => {
    const { m, dev } = setup();
    const pool = dmaPoolCreate('qh', dev, 100, 8, 256)!;
    expect(pool.state).toMatchObject({ size: 104, allocation: PAGE_SIZE, boundary: 256 });
    const seen = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const b = dmaPoolAlloc(pool, GFP_KERNEL)!;
      expect(b.dma % 8).toBe(0);
      expect(Math.floor(b.dma / 256)).toBe(Math.floor((b.dma + 104 - 1) / 256));
      seen.add(b.dma);
    }
    expect(seen.size).toBe(40);
    // Two blocks of 104 fit under each 256-byte boundary: 32 per page.
    expect(dmaPoolStats(pool)).toMatchObject({ active: 40, blocks: 64, pages: 2 });
    expect(runVerdict(m)).toBe('clean');
  });

  it('reuses a freed block first and zeroes with dma_pool_zalloc', () => {
    const { m, dev } = setup();
    const pool = dmaPoolCreate('td', dev, 32, 32, 0)!;
    const a = dmaPoolAlloc(pool, GFP_KERNEL)!;
    const b = dmaPoolAlloc(pool, GFP_KERNEL)!;
    expect(b.vaddr).toBe(a.vaddr + 32);
    dmaPoolFree(pool, a.vaddr, a.dma);
    // The free list lives in the block: its first bytes now hold the next free block's address.
    expect([...kernelRead(m, a.vaddr, 8)!]).not.toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const c = dmaPoolZalloc(pool, GFP_KERNEL)!;
    expect(c.vaddr).toBe(a.vaddr);
    expect([...kernelRead(m, c.vaddr, 32)!]).toEqual(Array(32).fill(0));
  });

  it('reports a busy pool and leaks its chunks, and frees them when idle', () => {
    const { m, dev } = setup();
    const busy = dmaPoolCreate('busy', dev, 64, 64, 0)!;
    const blk = dmaPoolAlloc(busy, GFP_KERNEL)!;
    const chunk = busy.state.pages[0]!.vaddr;
    dmaPoolDestroy(busy);
    const f = machineFindings(m);
    expect(f.map((x) => [x.code, x.message])).toEqual([['DMA_POOL_BUSY', 'dma_pool_destroy busy busy']]);
    expect(dmaAllocRecord(m, chunk)).toBeDefined(); // leaked
    expect(blk.vaddr).toBe(chunk);
    const idle = dmaPoolCreate('idle', dev, 64, 64, 0)!;
    const b2 = dmaPoolAlloc(idle, GFP_KERNEL)!;
    const chunk2 = idle.state.pages[0]!.vaddr;
    dmaPoolFree(idle, b2.vaddr, b2.dma);
    dmaPoolDestroy(idle);
    expect(dmaAllocRecord(m, chunk2)).toBeUndefined();
  });

  it('hands out a corrupted pointer after a device wrote into a freed block', () => {
    const { m, dev } = setup();
    const pool = dmaPoolCreate('ring', dev, 64, 64, 0)!;
    const a = dmaPoolAlloc(pool, GFP_KERNEL)!;
    dmaPoolFree(pool, a.vaddr, a.dma);
    deviceDmaWrite(dev, a.dma, new Uint8Array(16).fill(0x41)); // the device still thinks it owns the block
    expect(dmaPoolAlloc(pool, GFP_KERNEL)!.vaddr).toBe(a.vaddr);
    expect(dmaPoolAlloc(pool, GFP_KERNEL)).toBeNull(); // 0x4141414141414141 is no block
    expect(machineFindings(m).map((f) => f.code)).toEqual(['OOPS']);
  });
});

describe('managed DMA resources', () => {
  it('frees dmam allocations and pools when the driver unbinds', () => {
    const { m, dev } = setup();
    let cpu = 0;
    let pool = 0;
    const drv = registerDriver(m, {
      name: 'ehci-pci',
      probe(d) {
        cpu = dmamAllocCoherent(d, PAGE_SIZE, GFP_KERNEL)!.cpuAddr;
        pool = dmamPoolCreate('qh', d, 64, 64, 0)!.id;
        return 0;
      },
    });
    expect(bindDriver(dev, drv)).toBe(0);
    expect(dmaAllocRecord(m, cpu)).toBeDefined();
    unbindDriver(dev);
    expect(dmaAllocRecord(m, cpu)).toBeUndefined();
    expect(pool).toBeGreaterThan(0);
    expect(runVerdict(m)).toBe('clean');
  });

  it('warns when dmam_free_coherent finds no managed allocation', () => {
    const { m, dev } = setup();
    const a = dmamAllocCoherent(dev, PAGE_SIZE, GFP_KERNEL)!;
    dmamFreeCoherent(dev, PAGE_SIZE, a.cpuAddr, a.dmaHandle);
    expect(machineFindings(m)).toEqual([]);
    dmamFreeCoherent(dev, PAGE_SIZE, a.cpuAddr, a.dmaHandle);
    // dmam's own WARN, then dma-debug on the second dma_free_coherent.
    expect(machineFindings(m).map((f) => f.code)).toEqual(['WARN', 'DMA_FREE_NOT_ALLOCATED']);
  });
});
