/**
 * Seed 004 ("User switchable HW mappings & cie", 2006): one user mapping
 * of a graphics object whose pages move between VRAM and system memory
 * under it. The fault handler re-points the PTEs after each move — or, in
 * the broken driver, the move forgets to shoot them down first.
 */

import {
  addGpu,
  drmGemHandleCreate,
  drmVmaNodeOffsetAddr,
  GPU_GEM_DOMAIN_VRAM,
  type GpuBug,
  gpuBoPlacementFromDomain,
  type TtmBufferObject,
  type TtmDevice,
  ttm_bo_type_device,
  ttmBoInitValidate,
  ttmBoPut,
  ttmBoReserve,
  ttmBoUnreserve,
  ttmBoValidate,
  ttmOperationCtx,
} from '../../bo/index.js';
import { DmalabError, type Machine, PAGE_SIZE } from '../../machine/index.js';
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
  userRead,
  userWrite,
} from '../../mm/index.js';
import type { BuiltinRun } from '../run.js';
import { type AgentBody, type RunContext, wait } from '../runtime.js';
import { builtin, everywhere, filled, hex } from './kit.js';

const PAGES = 8;

/** A VRAM object of `PAGES` pages whose handle the process's DRM file holds. */
function vramObject(gpu: TtmDevice, proc: Process, fd: number): TtmBufferObject {
  const bo = ttmBoInitValidate(
    gpu,
    PAGES * PAGE_SIZE,
    ttm_bo_type_device,
    gpuBoPlacementFromDomain(GPU_GEM_DOMAIN_VRAM),
  );
  if (typeof bo === 'number') throw new DmalabError(`ttm_bo_init_validate refused the object: ${bo}`);
  const file = fget(proc, fd)!;
  drmGemHandleCreate(file, bo);
  fputFile(file);
  ttmBoPut(bo);
  return bo;
}

function migrationCase(m: Machine, ctx: RunContext, bugs: GpuBug[]): BuiltinRun {
  // VRAM for two objects: a third one evicts the least recently used.
  const gpu = addGpu(m, { name: 'gpu0', vramBytes: 2 * PAGES * PAGE_SIZE, gttBytes: 16 * PAGE_SIZE, bugs });
  const app = spawnProcess(m, 'app');
  const fd = sysOpen(app, gpu.path);
  let obj: TtmBufferObject | null = null;
  function* application(): AgentBody {
    obj = vramObject(gpu, app, fd);
    const va = sysMmap(
      app,
      0,
      obj.size,
      PROT_READ | PROT_WRITE,
      MAP_SHARED,
      fd,
      drmVmaNodeOffsetAddr(obj.vmaNode),
    );
    yield { op: `mmap the object at its fake offset = ${hex(va)}` };
    userWrite(app, va, filled(PAGES * PAGE_SIZE, 0x31));
    yield { op: `draw into it in ${obj.placementName}` };
    yield ctx.signal('drawn');
    yield wait.signal('evicted');
    yield wait.sleep(m, 100_000); // the app goes on with other work; the GPU finishes the move meanwhile
    ctx.expectBytes('the drawing after eviction', userRead(app, va, 64), 0x31);
    userWrite(app, va + PAGE_SIZE, filled(64, 0x32));
    yield { op: `read and draw again through the same pointer (object now in ${obj.placementName})` };
    yield ctx.signal('touched');
    yield wait.signal('back');
    yield wait.sleep(m, 100_000);
    ctx.expectBytes('the second drawing after the move back', userRead(app, va + PAGE_SIZE, 64), 0x32);
    yield { op: `read the second drawing (object now in ${obj.placementName})` };
  }
  function* otherClient(): AgentBody {
    const other = spawnProcess(m, 'game');
    const ofd = sysOpen(other, gpu.path);
    yield wait.signal('drawn');
    vramObject(gpu, other, ofd);
    vramObject(gpu, other, ofd);
    yield { op: `two new VRAM objects: the first is evicted to ${obj!.placementName}` };
    yield ctx.signal('evicted');
    yield wait.signal('touched');
    ttmBoReserve(obj!, false, false);
    const r = ttmBoValidate(obj!, gpuBoPlacementFromDomain(GPU_GEM_DOMAIN_VRAM), ttmOperationCtx());
    ttmBoUnreserve(obj!);
    yield { op: `validate the first object back into VRAM = ${r} (now ${obj!.placementName})` };
    yield ctx.signal('back');
  }
  return {
    agents: [
      { name: 'app', kind: 'process', body: application() },
      { name: 'driver', kind: 'kernel', body: otherClient() },
    ],
    // What anyone else sees of the object: a compositor given a handle maps it afresh.
    final: () => {
      const viewer = spawnProcess(m, 'compositor');
      const vfd = sysOpen(viewer, gpu.path);
      const file = fget(viewer, vfd)!;
      drmGemHandleCreate(file, obj!);
      fputFile(file);
      const va = sysMmap(
        viewer,
        0,
        obj!.size,
        PROT_READ,
        MAP_SHARED,
        vfd,
        drmVmaNodeOffsetAddr(obj!.vmaNode),
      );
      ctx.expectBytes(
        'the second drawing as a compositor maps it',
        userRead(viewer, va + PAGE_SIZE, 64),
        0x32,
      );
    },
  };
}

builtin(
  {
    name: 'bo-migrate-under-mapping',
    intent:
      'a graphics object moves VRAM → system → VRAM under one user mapping; the fault handler follows it',
    seed: '004',
  },
  (m, ctx) => migrationCase(m, ctx, []),
);

builtin(
  {
    name: 'bo-migrate-stale-pte',
    intent: 'the same moves by a driver that does not shoot down the user PTEs before moving the object',
    seed: '004',
    expect: everywhere('broken'),
  },
  (m, ctx) => migrationCase(m, ctx, ['no-unmap-on-move']),
);
