import { describe, expect, it } from 'vitest';
import { buffer, codes, emitIn, machine, mapSgDirect, sgOp } from '../../test/debug-kit.js';
import {
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
  dmaMapPage,
  dmaMappingError,
  dmaMapResource,
  dmaMapSingle,
  dmaMapSingleAttrs,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaSyncSingleRangeForCpu,
  dmaUnmapPage,
  dmaUnmapResource,
  dmaUnmapSingle,
  dmaUnmapSingleAttrs,
} from '../dma/index.js';
import {
  addDevice,
  type Device,
  type DmaAddr,
  IOREMAP_START,
  KERNEL_TEXT_START,
  type KernelVa,
  type Machine,
  machineFindings,
  PAGE_OFFSET,
  PAGE_SIZE,
  type Page,
  runVerdict,
  VMALLOC_START,
} from '../machine/index.js';
import { kernelStackBuffer, vmallocToPage } from '../mm/index.js';

/** A checked single mapping. */
function mapChecked(dev: Device, va: KernelVa | number, size: number, dir: 0 | 1 | 2, attrs = 0): DmaAddr {
  const a = dmaMapSingleAttrs(dev, va, size, dir, attrs);
  expect(dmaMappingError(dev, a)).toBe(0);
  return a;
}

function messages(m: Machine): string[] {
  return machineFindings(m).map((f) => f.message);
}

describe('dma-debug: unmap checks (1–9)', () => {
  it('1: unmap of DMA_MAPPING_ERROR', () => {
    const { m, dev } = machine('x86_64');
    dmaUnmapSingle(dev, DMA_MAPPING_ERROR, 64, DMA_TO_DEVICE);
    expect(messages(m)).toEqual(['DMA-API: nic0: device driver tries to free an invalid DMA memory address']);
    expect(machineFindings(m)[0]).toMatchObject({
      code: 'DMA_FREE_INVALID_ADDR',
      verdict: 'api',
      severity: 'warning',
      device: 'nic0',
      call: 'dma_unmap_single_attrs',
      details: { check: 1, device: 'nic0' },
    });
  });

  it('2: double unmap', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const a = mapChecked(dev, buf, 64, DMA_TO_DEVICE);
    dmaUnmapSingle(dev, a, 64, DMA_TO_DEVICE);
    expect(codes(m)).toEqual([]);
    dmaUnmapSingle(dev, a, 64, DMA_TO_DEVICE);
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver tries to free DMA memory it has not allocated [device address=0x${a.toString(16).padStart(16, '0')}] [size=64 bytes]`,
    ]);
    expect(machineFindings(m)[0]!.details).toMatchObject({ check: 2, dmaAddr: a, size: 64 });
  });

  it('2: unmap by another device than the one that mapped', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const a = mapChecked(dev, buf, 64, DMA_TO_DEVICE);
    const gpu = addSecond(m);
    dmaUnmapSingle(gpu, a, 64, DMA_TO_DEVICE);
    expect(codes(m)).toEqual(['DMA_FREE_NOT_ALLOCATED']);
    expect(machineFindings(m)[0]!.device).toBe('gpu0');
  });

  it('3, 7, 9: unmap with a different size, direction and attributes — each reported, entry removed', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const a = mapChecked(dev, buf, 256, DMA_FROM_DEVICE, DMA_ATTR_PRIVILEGED);
    dmaUnmapSingleAttrs(dev, a, 128, DMA_BIDIRECTIONAL, DMA_ATTR_SKIP_CPU_SYNC);
    const hex = `0x${a.toString(16).padStart(16, '0')}`;
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver frees DMA memory with different size [device address=${hex}] [map size=256 bytes] [unmap size=128 bytes]`,
      `DMA-API: nic0: device driver frees DMA memory with different direction [device address=${hex}] [size=128 bytes] [mapped with DMA_FROM_DEVICE] [unmapped with DMA_BIDIRECTIONAL]`,
      `DMA-API: nic0: device driver frees DMA memory with different attributes [device address=${hex}] [size=128 bytes] [mapped with 0x200] [unmapped with 0x20]`,
    ]);
    expect(machineFindings(m).map((f) => f.details?.check)).toEqual([3, 7, 9]);
    // The entry is gone: a second unmap finds nothing.
    dmaUnmapSingleAttrs(dev, a, 256, DMA_FROM_DEVICE, DMA_ATTR_PRIVILEGED);
    expect(codes(m).at(-1)).toBe('DMA_FREE_NOT_ALLOCATED');
  });

  it('3, 7, 9 are silent when the unmap repeats the map (SKIP_CPU_SYNC may differ)', () => {
    const { m, dev } = machine('x86_64');
    const a = mapChecked(dev, buffer(m), 256, DMA_FROM_DEVICE, DMA_ATTR_PRIVILEGED);
    dmaUnmapSingleAttrs(dev, a, 256, DMA_FROM_DEVICE, DMA_ATTR_PRIVILEGED | DMA_ATTR_SKIP_CPU_SYNC);
    expect(codes(m)).toEqual([]);
  });

  it('4: unmapping coherent memory with dma_unmap_single', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const phys = buf - PAGE_OFFSET;
    emitIn(m, 'dma_alloc_attrs', {
      type: 'dma-alloc',
      device: 'nic0',
      call: 'dma_alloc_attrs',
      kind: 'coherent',
      cpuAddr: buf,
      cpuAttr: 'cached',
      dmaAddr: phys,
      size: PAGE_SIZE,
      phys,
      dir: DMA_BIDIRECTIONAL,
      attrs: 0,
    });
    dmaUnmapSingle(dev, phys as never, PAGE_SIZE, DMA_BIDIRECTIONAL);
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver frees DMA memory with wrong function [device address=0x${phys.toString(16).padStart(16, '0')}] [size=4096 bytes] [mapped as coherent] [unmapped as phy]`,
    ]);
  });

  it('5: freeing coherent memory with another CPU address; silent with the right one', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m, 1);
    const phys = buf - PAGE_OFFSET;
    const alloc = {
      type: 'dma-alloc' as const,
      device: dev.name,
      call: 'dma_alloc_attrs',
      kind: 'coherent' as const,
      cpuAddr: buf,
      cpuAttr: 'cached' as const,
      dmaAddr: phys,
      size: PAGE_SIZE,
      phys,
      dir: DMA_BIDIRECTIONAL,
      attrs: 0,
    };
    const free = {
      type: 'dma-free' as const,
      device: dev.name,
      call: 'dma_free_attrs',
      kind: 'coherent' as const,
      cpuAddr: buf,
      dmaAddr: phys,
      size: PAGE_SIZE,
      phys,
      dir: DMA_BIDIRECTIONAL,
      attrs: 0,
    };
    emitIn(m, 'dma_alloc_attrs', alloc);
    emitIn(m, 'dma_free_attrs', free);
    expect(codes(m)).toEqual([]);
    emitIn(m, 'dma_alloc_attrs', alloc);
    emitIn(m, 'dma_free_attrs', { ...free, cpuAddr: buf + PAGE_SIZE, phys: phys + PAGE_SIZE });
    const hex = (n: number) => `0x${n.toString(16).padStart(16, '0')}`;
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver frees DMA memory with different CPU address [device address=${hex(phys)}] [size=4096 bytes] [cpu alloc address=${hex(phys)}] [cpu free address=${hex(phys + PAGE_SIZE)}]`,
    ]);
  });

  it('6: dma_unmap_sg with another entry count', () => {
    const { m, dev } = machine('x86_64');
    const a = buffer(m) - PAGE_OFFSET;
    const b = buffer(m) - PAGE_OFFSET;
    const entries = [
      { phys: a, length: 512 },
      { phys: b, length: 512 },
    ];
    const dma = mapSgDirect(dev, entries, DMA_TO_DEVICE);
    sgOp(dev, 'unmap', entries, dma, DMA_TO_DEVICE);
    expect(codes(m)).toEqual([]);
    const dma2 = mapSgDirect(dev, entries, DMA_TO_DEVICE);
    sgOp(dev, 'unmap', entries, dma2, DMA_TO_DEVICE, 1);
    expect(messages(m)).toEqual([
      'DMA-API: nic0: device driver frees DMA sg list with different entry count [map count=2] [unmap count=1]',
    ]);
  });

  it('8: an unmap whose address never went through dma_mapping_error; silent when checked', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const a = dmaMapSingle(dev, buf, 64, DMA_TO_DEVICE);
    dmaUnmapSingle(dev, a, 64, DMA_TO_DEVICE);
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver failed to check map error[device address=0x${a.toString(16).padStart(16, '0')}] [size=64 bytes] [mapped as phy]`,
    ]);
    const b = dmaMapPage(dev, (buf / PAGE_SIZE - PAGE_OFFSET / PAGE_SIZE) as Page, 0, 64, DMA_TO_DEVICE);
    expect(dmaMappingError(dev, b)).toBe(0);
    dmaUnmapPage(dev, b, 64, DMA_TO_DEVICE);
    expect(codes(m)).toEqual(['DMA_MAP_ERROR_UNCHECKED']);
  });

  it('8: dma_mapping_error marks only the first unchecked mapping at that address', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const a = dmaMapSingle(dev, buf, 64, DMA_TO_DEVICE);
    const b = dmaMapSingle(dev, buf, 64, DMA_TO_DEVICE);
    expect(b).toBe(a); // direct mapping: the same bus address twice
    dmaMappingError(dev, a);
    dmaUnmapSingle(dev, a, 64, DMA_TO_DEVICE);
    dmaUnmapSingle(dev, a, 64, DMA_TO_DEVICE);
    expect(codes(m)).toEqual(['DMA_MAP_ERROR_UNCHECKED']);
  });
});

function addSecond(m: Machine): Device {
  return addDevice(m, { name: 'gpu0' });
}

describe('dma-debug: sync checks (10–15)', () => {
  it('10: a sync of memory never mapped, and one running past the mapping’s end (11 is unreachable)', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const a = mapChecked(dev, buf, 256, DMA_FROM_DEVICE);
    dmaSyncSingleForCpu(dev, (a + 4096) as never, 64, DMA_FROM_DEVICE);
    dmaSyncSingleRangeForCpu(dev, a, 128, 256, DMA_FROM_DEVICE);
    const hex = (n: number) => `0x${n.toString(16).padStart(16, '0')}`;
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver tries to sync DMA memory it has not allocated [device address=${hex(a + 4096)}] [size=64 bytes]`,
      `DMA-API: nic0: device driver tries to sync DMA memory it has not allocated [device address=${hex(a + 128)}] [size=256 bytes]`,
    ]);
    expect(machineFindings(m).map((f) => f.details?.check)).toEqual([10, 10]);
  });

  it('10–14 are silent for a correct partial sync inside the mapping', () => {
    const { m, dev } = machine('x86_64');
    const a = mapChecked(dev, buffer(m), 256, DMA_FROM_DEVICE);
    dmaSyncSingleRangeForCpu(dev, a, 128, 128, DMA_FROM_DEVICE);
    dmaSyncSingleForDevice(dev, a, 256, DMA_FROM_DEVICE);
    dmaUnmapSingle(dev, a, 256, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual([]);
  });

  it('12 and 13: syncing a DMA_TO_DEVICE mapping for the CPU with DMA_FROM_DEVICE', () => {
    const { m, dev } = machine('x86_64');
    const a = mapChecked(dev, buffer(m), 256, DMA_TO_DEVICE);
    dmaSyncSingleForCpu(dev, a, 256, DMA_FROM_DEVICE);
    const hex = `0x${a.toString(16).padStart(16, '0')}`;
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver syncs DMA memory with different direction [device address=${hex}] [size=256 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]`,
      `DMA-API: nic0: device driver syncs device read-only DMA memory for cpu [device address=${hex}] [size=256 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]`,
    ]);
    expect(machineFindings(m).map((f) => f.details?.check)).toEqual([12, 13]);
  });

  it('12 and 14: syncing a DMA_FROM_DEVICE mapping for the device with DMA_TO_DEVICE', () => {
    const { m, dev } = machine('x86_64');
    const a = mapChecked(dev, buffer(m), 256, DMA_FROM_DEVICE);
    dmaSyncSingleForDevice(dev, a, 256, DMA_TO_DEVICE);
    expect(machineFindings(m).map((f) => [f.code, f.details?.check])).toEqual([
      ['DMA_SYNC_WRONG_DIR', 12],
      ['DMA_SYNC_DEVICE_WRITE_ONLY', 14],
    ]);
    expect(machineFindings(m)[1]!.message).toContain(
      'device driver syncs device write-only DMA memory to device [device address=',
    );
  });

  it('12–14 stay silent for bidirectional mappings, whatever the sync direction', () => {
    const { m, dev } = machine('x86_64');
    const a = mapChecked(dev, buffer(m), 256, DMA_BIDIRECTIONAL);
    dmaSyncSingleForCpu(dev, a, 256, DMA_TO_DEVICE);
    dmaSyncSingleForDevice(dev, a, 256, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual([]);
  });

  it('15: dma_sync_sg_* with another entry count; silent for the right count and for an unknown list', () => {
    const { m, dev } = machine('x86_64');
    const entries = [0, 1, 2].map(() => ({ phys: buffer(m) - PAGE_OFFSET, length: 1024 }));
    const dma = mapSgDirect(dev, entries, DMA_FROM_DEVICE);
    sgOp(dev, 'sync-cpu', entries, dma, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual([]);
    sgOp(dev, 'sync-device', entries, dma, DMA_FROM_DEVICE, 2);
    expect(messages(m)).toEqual([
      'DMA-API: nic0: device driver syncs DMA sg list with different entry count [map count=3] [sync count=2]',
      'DMA-API: nic0: device driver syncs DMA sg list with different entry count [map count=3] [sync count=2]',
    ]);
    // A list whose first segment is unknown is skipped silently, as the kernel does.
    const unknown = [{ phys: buffer(m) - PAGE_OFFSET, length: 64 }];
    sgOp(dev, 'sync-cpu', unknown, { dmaAddrs: [unknown[0]!.phys], dmaLengths: [64] }, DMA_FROM_DEVICE);
    expect(codes(m)).toHaveLength(2);
  });
});

describe('dma-debug: map checks (16–22)', () => {
  it('16: mapping a buffer on the kernel stack — by address when direct-mapped, probable when vmapped', () => {
    const p = machine('parisc');
    const buf = kernelStackBuffer(p.m, 64); // PA-RISC stacks are in the linear map
    mapChecked(p.dev, buf, 64, DMA_FROM_DEVICE);
    expect(messages(p.m)).toEqual([
      `DMA-API: nic0: device driver maps memory from stack [addr=0x${buf.toString(16).padStart(16, '0')}]`,
    ]);
    const x = machine('x86_64');
    const vbuf = kernelStackBuffer(x.m, 64); // VMAP_STACK: dma_map_single refuses it as vmalloc memory first
    expect(dmaMapSingle(x.dev, vbuf, 64, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    const page = vmallocToPage(x.m, vbuf)!;
    const a = dmaMapPage(x.dev, page, vbuf % PAGE_SIZE, 64, DMA_TO_DEVICE);
    expect(dmaMappingError(x.dev, a)).toBe(0);
    expect(messages(x.m)).toEqual([
      'rejecting DMA map of vmalloc memory',
      `DMA-API: nic0: device driver maps memory from stack [probable addr=0x${vbuf.toString(16).padStart(16, '0')}]`,
    ]);
    expect(machineFindings(x.m)[1]!.code).toBe('DMA_MAP_STACK');
  });

  it('16 is silent for a buffer that is not on the stack', () => {
    const { m, dev } = machine('parisc');
    kernelStackBuffer(m, 64);
    mapChecked(dev, buffer(m), 64, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual([]);
  });

  it('17: mapping the kernel image; silent for ordinary memory', () => {
    const { m, dev } = machine('x86_64');
    const text = (KERNEL_TEXT_START + PAGE_SIZE) as number;
    const a = dmaMapPage(dev, (text / PAGE_SIZE) as Page, 16, 32, DMA_TO_DEVICE);
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver maps memory from kernel text or rodata [addr=0x${(PAGE_OFFSET + text + 16).toString(16).padStart(16, '0')}] [len=32]`,
    ]);
    dmaMappingError(dev, a);
    dmaUnmapPage(dev, a, 32, DMA_TO_DEVICE);
    mapChecked(dev, buffer(m), 32, DMA_TO_DEVICE);
    expect(codes(m)).toEqual(['DMA_MAP_KERNEL_TEXT']);
  });

  it('18: dma_map_single of an address that is not a valid linear-map address', () => {
    const { m, dev } = machine('x86_64');
    // A linear-map address beyond RAM: the map itself succeeds on x86 (the bus reaches it).
    const beyond = PAGE_OFFSET + 0x4000_0000;
    const a = dmaMapSingle(dev, beyond, 64, DMA_TO_DEVICE);
    expect(a).toBe(0x4000_0000);
    expect(messages(m)).toEqual([
      `DMA-API: nic0: device driver maps memory from invalid area [addr=0x${beyond.toString(16).padStart(16, '0')}] [len=64]`,
    ]);
    // An ioremap address: reported too (the map then fails on its own garbage translation).
    dmaMapSingle(dev, IOREMAP_START + 0x1000, 64, DMA_TO_DEVICE);
    expect(codes(m)).toContain('DMA_MAP_INVALID_AREA');
    expect(codes(m).filter((c) => c === 'DMA_MAP_INVALID_AREA')).toHaveLength(2);
  });

  it('19: a vmalloc address is refused by dma_map_single’s own WARN before dma-debug runs', () => {
    const { m, dev } = machine('x86_64');
    expect(dmaMapSingle(dev, VMALLOC_START, 64, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(codes(m)).toEqual(['WARN']);
  });

  it('20: dma_map_resource of ordinary RAM; silent for a BAR and for reserved RAM', () => {
    const { m, dev } = machine('x86_64');
    const peer = addDevice(m, { name: 'nvme0', deviceMemoryBytes: 2 << 20 });
    const bar = peer.deviceMemory!.phys;
    const a = dmaMapResource(dev, bar, 4096, DMA_BIDIRECTIONAL);
    dmaMappingError(dev, a);
    dmaUnmapResource(dev, a, 4096, DMA_BIDIRECTIONAL);
    const reserved = dmaMapResource(dev, KERNEL_TEXT_START, 4096, DMA_BIDIRECTIONAL);
    dmaMappingError(dev, reserved);
    expect(codes(m)).toEqual([]);
    const ram = buffer(m) - PAGE_OFFSET;
    dmaMapResource(dev, ram, 4096, DMA_BIDIRECTIONAL);
    expect(messages(m)).toEqual([
      `DMA-API: nic0: dma_map_resource called for RAM address 0x${ram.toString(16).padStart(16, '0')}`,
    ]);
  });

  it('21 and 22: sg segments longer than the device allows, or crossing its boundary', () => {
    const { m, dev } = machine('x86_64', {}, { name: 'nic0', maxSegmentSize: 4096, segmentBoundary: 0xffff });
    const big = buffer(m, 2) - PAGE_OFFSET;
    const ok = [{ phys: big, length: 4096 }];
    const dmaOk = mapSgDirect(dev, ok, DMA_TO_DEVICE);
    sgOp(dev, 'unmap', ok, dmaOk, DMA_TO_DEVICE);
    expect(codes(m)).toEqual([]);
    const entries = [{ phys: big, length: 8192 }];
    // A backend that put the segment across a 64 KiB boundary.
    mapSgDirect(dev, entries, DMA_TO_DEVICE, { dmaAddrs: [0x1f000], dmaLengths: [8192] });
    expect(messages(m)).toEqual([
      'DMA-API: nic0: mapping sg segment longer than device claims to support [len=8192] [max=4096]',
      'DMA-API: nic0: mapping sg segment across boundary [start=0x000000000001f000] [end=0x0000000000020fff] [boundary=0x000000000000ffff]',
    ]);
  });
});

describe('dma-debug: overlapping cache lines (23, 25)', () => {
  const twice = (profile: string, extra = {}, attrs = [0, 0], dir: 0 | 1 | 2 = DMA_FROM_DEVICE) => {
    const { m, dev } = machine(profile, extra);
    const buf = buffer(m);
    // Two mappings starting in one cache line (16 bytes on parisc, 64 elsewhere).
    mapChecked(dev, buf, 64, dir, attrs[0]);
    mapChecked(dev, buf + 8, 8, dir, attrs[1]);
    return m;
  };

  it('23 fires where the kernel checks: parisc, parisc-pcxl, and arm64 without kmalloc bouncing', () => {
    for (const [profile, extra] of [
      ['parisc', {}],
      ['parisc-pcxl', {}],
      ['arm64-noncoherent', { kmallocBounce: false }],
      ['arm64-coherent', { kmallocBounce: false }],
    ] as const) {
      const m = twice(profile, extra);
      expect(codes(m), profile).toEqual(['DMA_CACHELINE_OVERLAP']);
      expect(machineFindings(m)[0]!.message).toBe(
        "DMA-API: nic0: cacheline tracking EEXIST, overlapping mappings aren't supported",
      );
      expect(machineFindings(m)[0]!.details).toMatchObject({
        check: 23,
        mappedAt: { call: 'dma_map_single_attrs' },
      });
    }
  });

  it('23 is silent where the kernel is: x86 (cache alignment below the line size), swiotlb-force, arm64 bouncing kmalloc', () => {
    for (const profile of ['x86_64', 'swiotlb-force', 'arm64-noncoherent', 'arm64-coherent']) {
      expect(codes(twice(profile)), profile).toEqual([]);
    }
  });

  it('23 is silent for DMA_TO_DEVICE, SKIP_CPU_SYNC, and when both mappings ignore cache lines', () => {
    expect(codes(twice('parisc', {}, [0, 0], DMA_TO_DEVICE))).toEqual([]);
    expect(codes(twice('parisc', {}, [0, DMA_ATTR_SKIP_CPU_SYNC]))).toEqual([]);
    const both = DMA_ATTR_DEBUGGING_IGNORE_CACHELINES;
    expect(codes(twice('parisc', {}, [both, both]))).toEqual([]);
    expect(codes(twice('parisc', {}, [0, both]))).toEqual(['DMA_CACHELINE_OVERLAP']);
  });

  it('25: more than 7 overlapping mappings of one line warn once, even on x86', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    for (let i = 0; i < 10; i++) mapChecked(dev, buf, 64, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual(['DMA_CACHELINE_OVERLAP_LIMIT']);
    const cln = (buf - PAGE_OFFSET) / 64;
    expect(messages(m)).toEqual([
      `DMA-API: exceeded 7 overlapping mappings of cacheline 0x${cln.toString(16).padStart(16, '0')}`,
    ]);
    expect(machineFindings(m)[0]!.device).toBeUndefined();
  });
});

describe('dma-debug: driver unbind (24)', () => {
  it('reports live mappings with one of them, naming the driver', () => {
    const { m, dev } = machine('x86_64');
    emitIn(m, 'driver_bind', { type: 'driver-bind', device: 'nic0', driver: 'e1000e', result: 0 });
    const a = mapChecked(dev, buffer(m), 256, DMA_FROM_DEVICE);
    const b = mapChecked(dev, buffer(m), 512, DMA_TO_DEVICE);
    emitIn(m, 'device_release_driver', { type: 'driver-unbind', device: 'nic0', driver: 'e1000e' });
    const last =
      Math.max(a, b) === a
        ? { addr: a, size: 256, dir: 'DMA_FROM_DEVICE' }
        : { addr: b, size: 512, dir: 'DMA_TO_DEVICE' };
    expect(messages(m)).toEqual([
      `DMA-API: e1000e nic0: device driver has pending DMA allocations while released from device [count=2]\nOne of leaked entries details: [device address=0x${last.addr.toString(16).padStart(16, '0')}] [size=${last.size} bytes] [mapped with ${last.dir}] [mapped as phy]`,
    ]);
    expect(machineFindings(m)[0]).toMatchObject({
      code: 'DMA_LEAK_AT_UNBIND',
      driver: 'e1000e',
      device: 'nic0',
    });
    expect(runVerdict(m)).toBe('api');
  });

  it('is silent when everything was unmapped, and names the driver in other findings while bound', () => {
    const { m, dev } = machine('x86_64');
    emitIn(m, 'driver_bind', { type: 'driver-bind', device: 'nic0', driver: 'e1000e', result: 0 });
    const a = mapChecked(dev, buffer(m), 256, DMA_FROM_DEVICE);
    dmaUnmapSingle(dev, a, 128, DMA_FROM_DEVICE);
    emitIn(m, 'device_release_driver', { type: 'driver-unbind', device: 'nic0', driver: 'e1000e' });
    expect(messages(m)).toHaveLength(1);
    expect(messages(m)[0]).toMatch(
      /^DMA-API: e1000e nic0: device driver frees DMA memory with different size/,
    );
    dmaUnmapSingle(dev, a, 128, DMA_FROM_DEVICE);
    expect(messages(m)[1]).toMatch(
      /^DMA-API: nic0: device driver tries to free DMA memory it has not allocated/,
    );
  });
});
