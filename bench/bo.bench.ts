/**
 * Buffer-object benchmarks (checker off):
 * - one migration cycle of a 64-page (256 KiB) object under a user mapping: evicted from VRAM to system
 *   memory (shoot-down, pipelined copy), re-faulted by a 256 KiB read (waits for the copy's fence, 16-page
 *   windows), validated back into VRAM and read again;
 * - the fault path's cost: reading 256 KiB of the object right after a shoot-down (16 faults of 16 pages)
 *   against the same read with every PTE present.
 */

import {
  addGpu,
  drmGemHandleCreate,
  drmVmaNodeOffsetAddr,
  GPU_GEM_DOMAIN_VRAM,
  gpuBoPlacementFromDomain,
  TTM_PL_VRAM,
  ttm_bo_type_device,
  ttmBoEvictFirst,
  ttmBoInitValidate,
  ttmBoReserve,
  ttmBoUnmapVirtual,
  ttmBoUnreserve,
  ttmBoValidate,
  ttmOperationCtx,
} from '../src/bo/index.js';
import { createMachine } from '../src/boot.js';
import {
  fget,
  fputFile,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  spawnProcess,
  sysMmap,
  sysOpen,
  userRead,
} from '../src/mm/index.js';
import { rate, ratio } from './lib.js';

const PAGES = 64;
const SIZE = PAGES * 4096;

export async function boBenchmarks(): Promise<void> {
  const m = createMachine({ profile: 'x86_64', ramBytes: 64 << 20, check: false });
  const gpu = addGpu(m, { name: 'gpu0', vramBytes: 4 << 20 });
  const bo = ttmBoInitValidate(gpu, SIZE, ttm_bo_type_device, gpuBoPlacementFromDomain(GPU_GEM_DOMAIN_VRAM));
  if (typeof bo === 'number') throw new Error(`ttm_bo_init_validate: ${bo}`);
  const app = spawnProcess(m, 'bench');
  const fd = sysOpen(app, gpu.path);
  const file = fget(app, fd)!;
  drmGemHandleCreate(file, bo);
  fputFile(file);
  const va = sysMmap(app, 0, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, drmVmaNodeOffsetAddr(bo.vmaNode));
  const vram = gpuBoPlacementFromDomain(GPU_GEM_DOMAIN_VRAM);
  await rate(
    'migrate a 256 KiB object VRAM → system → VRAM under a user mapping, reading it after each move',
    () => {
      ttmBoEvictFirst(gpu, TTM_PL_VRAM, ttmOperationCtx());
      userRead(app, va, SIZE);
      ttmBoReserve(bo, true, false);
      ttmBoValidate(bo, vram, ttmOperationCtx());
      ttmBoUnreserve(bo);
      userRead(app, va, SIZE);
    },
  );
  userRead(app, va, SIZE);
  await ratio(
    'read 256 KiB of an object right after a shoot-down (16 faults of 16 pages) vs with its PTEs present',
    () => userRead(app, va, SIZE),
    () => {
      ttmBoUnmapVirtual(bo);
      userRead(app, va, SIZE);
    },
  );
}
