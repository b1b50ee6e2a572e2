/**
 * Seed 002 ("lib/scatterlist: Provide a DMA page iterator", 2019): drivers
 * that program a device page list from a DMA-mapped scatterlist, GPUs that
 * must not bounce, a display engine that silently does, and user-space
 * RDMA over pinned pages.
 */

import {
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_BIDIRECTIONAL,
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaDataDirection,
  dmaAddressingLimited,
  dmaMappingError,
  dmaMapSgtable,
  dmaMapSingle,
  dmaMapSingleAttrs,
  dmaNeedSync,
  dmaSetMaskAndCoherent,
  dmaUnmapSgtable,
  dmaUnmapSingle,
  dmaUnmapSingleAttrs,
} from '../../dma/index.js';
import {
  createSgTable,
  forEachSgtableDmaPage,
  forEachSgtablePage,
  type SgTable,
  sgAllocTableFromPages,
  sgDmaAddress,
  sgPageIterDmaAddress,
} from '../../lib/index.js';
import {
  addDevice,
  type Device,
  type DmaAddr,
  deviceDmaRead,
  GFP_KERNEL,
  type Machine,
  PAGE_SIZE,
  type Page,
  pageAddress,
  submitDeviceJob,
} from '../../machine/index.js';
import {
  FOLL_LONGTERM,
  FOLL_WRITE,
  kernelRead,
  kernelWrite,
  kmalloc,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
  pinUserPages,
  spawnProcess,
  sysMmap,
  userRead,
  userWrite,
  virtToPhys,
} from '../../mm/index.js';
import type { BuiltinRun } from '../run.js';
import { type AgentBody, type RunContext, wait } from '../runtime.js';
import { builtin, everywhere, filled, hex, pageList, scatteredPages } from './kit.js';

const PAGES = 4;

/**
 * A GPU driver maps four scattered pages behind an IOMMU, which merges them
 * into one IOVA range, programs the device's page list, the device fills
 * the pages, and the driver reads them back.
 */
function pageListCase(m: Machine, ctx: RunContext, useDmaIterator: boolean): BuiltinRun {
  const gpu = addDevice(m, { name: 'gpu', iommu: true, dmaMaskBits: 64, coherentDmaMaskBits: 64 });
  const sgt = createSgTable();
  let pages: Page[] = [];
  const list: DmaAddr[] = [];
  function* driver(): AgentBody {
    pages = scatteredPages(m, PAGES);
    sgAllocTableFromPages(sgt, pages, PAGES, 0, PAGES * PAGE_SIZE, GFP_KERNEL);
    yield { op: `sg_alloc_table_from_pages(${PAGES} pages) = ${sgt.origNents} entries` };
    const err = dmaMapSgtable(gpu, sgt, DMA_FROM_DEVICE, 0);
    yield { op: `dma_map_sgtable(gpu, FROM_DEVICE) = ${err}: ${sgt.nents} DMA segment(s)` };
    if (useDmaIterator) {
      for (const it of forEachSgtableDmaPage(sgt, 0)) list.push(sgPageIterDmaAddress(it));
    } else {
      // The bug the iterator was written against: walking CPU pages and reading the entry's DMA address.
      for (const it of forEachSgtablePage(sgt, 0))
        list.push((sgDmaAddress(it.sg) + it.sgPgoffset * PAGE_SIZE) as DmaAddr);
    }
    yield { op: `program page list ${pageList(list)}` };
    yield ctx.signal('list');
    yield wait.signal('filled');
    dmaUnmapSgtable(gpu, sgt, DMA_FROM_DEVICE, 0);
    yield { op: 'dma_unmap_sgtable(gpu, FROM_DEVICE)' };
    pages.forEach((p, k) => {
      ctx.expectBytes(`page ${k} as the driver reads it`, kernelRead(m, pageAddress(p), 16), 0x10 + k);
    });
    yield { op: 'read back every page' };
  }
  function* engine(): AgentBody {
    yield wait.signal('list');
    let last = 0;
    list.forEach((addr, k) => {
      last = submitDeviceJob(gpu, { kind: 'dma-write', bus: addr, data: filled(PAGE_SIZE, 0x10 + k) }, 500);
    });
    yield wait.job(last, `gpu writes ${list.length} pages through its page list`);
    yield ctx.signal('filled');
  }
  return {
    agents: [
      { name: 'driver', kind: 'kernel', body: driver() },
      { name: 'gpu', kind: 'device', body: engine() },
    ],
  };
}

builtin(
  {
    name: 'sg-page-list-cpu-iterator',
    intent: 'a page list programmed from an IOMMU-merged scatterlist with the CPU page iterator',
    seed: '002',
    expect: everywhere('broken'),
  },
  (m, ctx) => pageListCase(m, ctx, false),
);

builtin(
  {
    name: 'sg-page-list-dma-iterator',
    intent: 'the same page list programmed with for_each_sgtable_dma_page: right on every IOMMU',
    seed: '002',
  },
  (m, ctx) => pageListCase(m, ctx, true),
);

/** The GPU's command: the CPU writes a buffer, the GPU copies it into a second one it then hands back. */
function gpuCopy(
  m: Machine,
  ctx: RunContext,
  gpu: Device,
  map: (va: number, size: number, dir: DmaDataDirection) => DmaAddr | null,
  unmap: (addr: DmaAddr, size: number, dir: DmaDataDirection) => void,
): AgentBody {
  return (function* () {
    const src = kmalloc(m, PAGE_SIZE, GFP_KERNEL)!;
    const dst = kmalloc(m, PAGE_SIZE, GFP_KERNEL)!;
    kernelWrite(m, src, filled(PAGE_SIZE, 0xc3));
    yield { op: 'fill the source buffer' };
    const a = map(src, PAGE_SIZE, DMA_TO_DEVICE);
    const b = map(dst, PAGE_SIZE, DMA_FROM_DEVICE);
    if (a === null || b === null) {
      ctx.check(true, 'the driver refused to load: no coherent, unbounced DMA on this machine');
      yield { op: 'no coherent, unbounced DMA here: the driver does not load' };
      return;
    }
    yield { op: `map source ${hex(a)}, destination ${hex(b)}` };
    const job = submitDeviceJob(gpu, { kind: 'dma-copy', src: a, dst: b, len: PAGE_SIZE }, 2000);
    yield wait.job(job, 'gpu copies a page');
    unmap(a, PAGE_SIZE, DMA_TO_DEVICE);
    unmap(b, PAGE_SIZE, DMA_FROM_DEVICE);
    yield { op: 'unmap both' };
    ctx.expectBytes('destination after the copy', kernelRead(m, dst, PAGE_SIZE), 0xc3);
    yield { op: 'read the destination' };
  })();
}

function gpuDevice(m: Machine): Device {
  const gpu = addDevice(m, { name: 'gpu' });
  dmaSetMaskAndCoherent(gpu, DMA_BIT_MASK(64));
  return gpu;
}

builtin(
  {
    name: 'gpu-virt-to-phys',
    intent: 'a GPU driver that hands the device virt_to_phys addresses instead of mapping them',
    seed: '002',
    expect: {
      x86_64: 'latent',
      'arm64-coherent': 'latent',
      'arm64-noncoherent': 'broken',
      parisc: 'broken',
      'parisc-pcxl': 'broken',
      'swiotlb-force': 'latent',
    },
  },
  (m, ctx) => {
    const gpu = gpuDevice(m);
    const body = gpuCopy(
      m,
      ctx,
      gpu,
      (va) => virtToPhys(m, va) as number as DmaAddr,
      () => {},
    );
    return { agents: [{ name: 'driver', kind: 'kernel', body }] };
  },
);

builtin(
  {
    name: 'gpu-refuses-without-coherence',
    intent:
      'a GPU driver that checks dma_addressing_limited and dma_need_sync and refuses to load where it would bounce or need syncs',
    seed: '002',
  },
  (m, ctx) => {
    const gpu = gpuDevice(m);
    const body = gpuCopy(
      m,
      ctx,
      gpu,
      (va, size, dir) => {
        if (dmaAddressingLimited(gpu)) return null;
        const a = dmaMapSingle(gpu, va, size, dir);
        if (dmaMappingError(gpu, a) !== 0) return null;
        if (dmaNeedSync(gpu, a)) {
          dmaUnmapSingle(gpu, a, size, dir);
          return null;
        }
        return a;
      },
      (a, size, dir) => dmaUnmapSingle(gpu, a, size, dir),
    );
    return { agents: [{ name: 'driver', kind: 'kernel', body }] };
  },
);

builtin(
  {
    name: 'gpu-require-coherent',
    intent:
      'a GPU driver that maps with DMA_ATTR_REQUIRE_COHERENT and fails cleanly where coherence cannot be had',
    seed: '002',
  },
  (m, ctx) => {
    const gpu = gpuDevice(m);
    const body = gpuCopy(
      m,
      ctx,
      gpu,
      (va, size, dir) => {
        const a = dmaMapSingleAttrs(gpu, va, size, dir, DMA_ATTR_REQUIRE_COHERENT);
        return dmaMappingError(gpu, a) !== 0 ? null : a;
      },
      (a, size, dir) => dmaUnmapSingleAttrs(gpu, a, size, dir, DMA_ATTR_REQUIRE_COHERENT),
    );
    return { agents: [{ name: 'driver', kind: 'kernel', body }] };
  },
);

const GiB = 1024 * 1024 * 1024;

builtin(
  {
    name: 'display-low-1g-green-frame',
    intent:
      'a display engine whose bus reaches only the low 1 GiB imports a frame buffer that silently bounces',
    seed: '002',
    // A Raspberry Pi 4-like platform: 8 GiB, and firmware describing a 30-bit DMA zone on arm64.
    machine: { ramBytes: 8 * GiB, zoneDmaBits: 30 },
    expect: {
      x86_64: 'api',
      'arm64-coherent': 'broken',
      'arm64-noncoherent': 'broken',
      parisc: 'latent',
      'parisc-pcxl': 'api',
      'swiotlb-force': 'api',
    },
  },
  (m, ctx) => {
    const disp = addDevice(m, { name: 'display', busDmaLimitBits: 30 });
    dmaSetMaskAndCoherent(disp, DMA_BIT_MASK(32));
    const FRAME = 4 * PAGE_SIZE;
    // The exporter's buffer: ordinary kernel memory, which on an 8 GiB machine lies above 4 GiB.
    const fb = kmalloc(m, FRAME, GFP_KERNEL)!;
    let bus: DmaAddr | null = null;
    function* compositor(): AgentBody {
      const a = dmaMapSingle(disp, fb, FRAME, DMA_TO_DEVICE);
      const phys = hex(virtToPhys(m, fb));
      if (dmaMappingError(disp, a) !== 0) {
        ctx.check(true, `the import failed cleanly: the display cannot reach the frame at ${phys}`);
        yield {
          op: `import: dma_map_single(display, fb at ${phys}) failed; the compositor composes elsewhere`,
        };
        yield ctx.signal('frame');
        return;
      }
      bus = a;
      yield { op: `import: dma_map_single(display, fb at ${phys}) = ${hex(a)}` };
      // Frames are rendered after the import, as in any compositor, and the importer never syncs.
      kernelWrite(m, fb, filled(FRAME, 0x80));
      yield { op: 'render a grey frame' };
      yield ctx.signal('frame');
      yield wait.signal('shown');
      dmaUnmapSingle(disp, a, FRAME, DMA_TO_DEVICE);
      yield { op: 'dma_unmap_single(display)' };
    }
    function* scanout(): AgentBody {
      yield wait.signal('frame');
      if (bus === null) return;
      ctx.expectBytes('the pixels the display scans out', deviceDmaRead(disp, bus, 64), 0x80);
      yield { op: 'scan out the frame' };
      yield ctx.signal('shown');
    }
    return {
      agents: [
        { name: 'compositor', kind: 'kernel', body: compositor() },
        { name: 'display', kind: 'device', body: scanout() },
      ],
    };
  },
);

builtin(
  {
    name: 'rdma-user-mr-noncoherent',
    intent:
      'user-space RDMA: a memory region of pinned user pages written by the NIC and polled by the process',
    seed: '002',
    expect: {
      x86_64: 'latent',
      'arm64-coherent': 'latent',
      'arm64-noncoherent': 'broken',
      parisc: 'latent',
      'parisc-pcxl': 'latent',
      'swiotlb-force': 'broken',
    },
  },
  (m, ctx) => {
    const nic = addDevice(m, { name: 'rnic' });
    dmaSetMaskAndCoherent(nic, DMA_BIT_MASK(64));
    const proc = spawnProcess(m, 'rdma-app');
    const SIZE = 2 * PAGE_SIZE;
    let addr = 0;
    const sgt: SgTable = createSgTable();
    let iova = 0 as DmaAddr;
    function* app(): AgentBody {
      addr = sysMmap(proc, 0, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      yield { op: `mmap anonymous ${SIZE} bytes = ${hex(addr)}` };
      userWrite(proc, addr, filled(SIZE, 0));
      yield { op: 'clear the receive region (its lines are now in the cache)' };
      yield ctx.signal('buffer');
      yield wait.signal('registered');
      yield wait.signal('written');
      ctx.expectBytes('the message the process polls', userRead(proc, addr + 64, 16), 0x77);
      yield { op: 'poll the message in place (user space has no sync call)' };
    }
    function* uverbs(): AgentBody {
      yield wait.signal('buffer');
      const pages: Page[] = [];
      const n = pinUserPages(
        proc,
        addr,
        SIZE / PAGE_SIZE,
        FOLL_WRITE | FOLL_LONGTERM,
        pages as (Page | null)[],
      );
      yield { op: `ib_umem_get: pin_user_pages = ${n}` };
      sgAllocTableFromPages(sgt, pages, n, 0, SIZE, GFP_KERNEL);
      dmaMapSgtable(nic, sgt, DMA_BIDIRECTIONAL, 0);
      iova = sgDmaAddress(sgt.sgl!);
      yield { op: `dma_map_sgtable(rnic) = ${sgt.nents} segment(s) at ${hex(iova)}` };
      yield ctx.signal('registered');
    }
    function* rnic(): AgentBody {
      yield wait.signal('registered');
      const job = submitDeviceJob(nic, { kind: 'dma-write', bus: iova + 64, data: filled(16, 0x77) }, 1500);
      yield wait.job(job, 'remote RDMA WRITE lands in the region');
      yield ctx.signal('written');
    }
    return {
      agents: [
        { name: 'rdma-app', kind: 'process', body: app() },
        { name: 'uverbs', kind: 'kernel', body: uverbs() },
        { name: 'rnic', kind: 'device', body: rnic() },
      ],
    };
  },
);
