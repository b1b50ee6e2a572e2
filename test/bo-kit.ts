/**
 * Helpers shared by the bo tests (not exported from the package): a
 * machine with a GPU, a process that opened its DRM file, and buffer
 * objects created, handed to the file and mapped.
 */

import { ttmBoInitValidate, ttmBoPut } from '../src/bo/bo.js';
import { ttm_bo_type_device } from '../src/bo/consts.js';
import { type AddGpuOptions, addGpu } from '../src/bo/device.js';
import { gpuBoPlacementFromDomain } from '../src/bo/gpu.js';
import type { TtmBufferObject, TtmDevice } from '../src/bo/handles.js';
import { drmGemHandleCreate } from '../src/bo/vm.js';
import { drmVmaNodeOffsetAddr } from '../src/bo/vma-manager.js';
import { createMachine } from '../src/boot.js';
import { type Machine, machineFindings, PAGE_SIZE } from '../src/machine/index.js';
import {
  fget,
  fputFile,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  type Process,
  spawnProcess,
  sysMmap,
  sysOpen,
} from '../src/mm/index.js';

export interface GpuRig {
  m: Machine;
  gpu: TtmDevice;
  app: Process;
  fd: number;
}

export function gpuRig(profile = 'x86_64', gpu: Partial<AddGpuOptions> = {}): GpuRig {
  const m = createMachine({ profile, ramBytes: 32 << 20 });
  const g = addGpu(m, { name: 'gpu0', vramBytes: 16 * PAGE_SIZE, gttBytes: 16 * PAGE_SIZE, ...gpu });
  const app = spawnProcess(m, 'app');
  const fd = sysOpen(app, g.path);
  if (fd < 0) throw new Error(`open ${g.path}: ${fd}`);
  return { m, gpu: g, app, fd };
}

/** Creates a BO in `domain`, gives the rig's file a handle to it (dropping the creation reference). */
export function newBo(
  rig: GpuRig,
  pages: number,
  domain: number,
  proc = rig.app,
  fd = rig.fd,
): TtmBufferObject {
  const bo = ttmBoInitValidate(
    rig.gpu,
    pages * PAGE_SIZE,
    ttm_bo_type_device,
    gpuBoPlacementFromDomain(domain),
  );
  if (typeof bo === 'number') throw new Error(`ttm_bo_init_validate: ${bo}`);
  const file = fget(proc, fd)!;
  drmGemHandleCreate(file, bo);
  fputFile(file);
  ttmBoPut(bo);
  return bo;
}

/** Maps a BO shared and writable in the process at its fake offset. */
export function mapBo(rig: GpuRig, bo: TtmBufferObject, proc = rig.app, fd = rig.fd): number {
  const va = sysMmap(
    proc,
    0,
    bo.size,
    PROT_READ | PROT_WRITE,
    MAP_SHARED,
    fd,
    drmVmaNodeOffsetAddr(bo.vmaNode),
  );
  if (va < 0) throw new Error(`mmap: ${va}`);
  return va;
}

/** A page-sized pattern unique to (tag, page). */
export function pattern(tag: number, pages: number): Uint8Array {
  const b = new Uint8Array(pages * PAGE_SIZE);
  for (let i = 0; i < b.length; i++) b[i] = (tag * 31 + Math.floor(i / PAGE_SIZE) * 7 + i) & 0xff;
  return b;
}

export function findingCodes(m: Machine): string[] {
  return machineFindings(m).map((f) => `${f.code}: ${f.message}`);
}
