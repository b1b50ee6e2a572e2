/**
 * Fence benchmarks:
 * - a fence-gated round trip: a scheduler job that waits on a CPU-signalled fence is pushed, the fence
 *   signalled, the job's finished fence waited for (the device engine runs in between), checker off;
 * - the same round trip on a dma-buf written by the device and read back by the CPU after the wait,
 *   with the checker on (ordering, ownership, oracle) relative to off.
 */

import { createMachine } from '../src/boot.js';
import { DMA_FROM_DEVICE } from '../src/dma/index.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  dmaBufAttach,
  dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess,
  dmaBufMapAttachmentUnlocked,
  dmaBufVmapUnlocked,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceInit,
  dmaFencePut,
  dmaFenceSignal,
  dmaFenceWait,
  dmaHeapBufferAlloc,
  drmSchedEntityPushJob,
  drmSchedJobAddDependency,
  drmSchedJobArm,
  drmSchedJobInit,
  type IosysMap,
} from '../src/dmabuf/index.js';
import { forEachSgtableDmaSg, type SgTable } from '../src/lib/index.js';
import { addDevice, type Machine } from '../src/machine/index.js';
import { kernelRead } from '../src/mm/index.js';
import { rate, ratio } from './lib.js';

const OPS = { getDriverName: () => 'bench', getTimelineName: () => 'cpu' };

function rig(check: boolean) {
  const m = createMachine({ profile: 'x86_64', ramBytes: 64 << 20, check });
  const dev = addDevice(m, { name: 'dev0', dmaMaskBits: 64 });
  const buf = dmaHeapBufferAlloc(m, 'system', 4096, 2, 0) as DmaBuf;
  const at = dmaBufAttach(buf, dev) as DmaBufAttachment;
  const sgt = dmaBufMapAttachmentUnlocked(at, DMA_FROM_DEVICE) as SgTable;
  let bus = 0;
  for (const sg of forEachSgtableDmaSg(sgt)) {
    bus = sg.dmaAddress;
    break;
  }
  const map = dmaBufVmapUnlocked(buf) as IosysMap;
  const ctx = dmaFenceContextAlloc(m, 1);
  let seqno = 0;
  const data = new Uint8Array(4096).fill(7);
  return (withBuffer: boolean) => {
    const gate = dmaFenceInit(m, OPS, ctx, ++seqno);
    const spec = withBuffer ? ({ kind: 'dma-write', bus, data } as const) : ({ kind: 'idle' } as const);
    const job = drmSchedJobInit(dev, spec, 1000);
    drmSchedJobAddDependency(job, dmaFenceGet(gate));
    drmSchedJobArm(job);
    const done = dmaFenceGet(job.finished!);
    drmSchedEntityPushJob(job);
    dmaFenceSignal(gate);
    dmaFenceWait(done, true);
    if (withBuffer) readBack(m, buf, map);
    dmaFencePut(done);
    dmaFencePut(gate);
  };
}

function readBack(m: Machine, buf: DmaBuf, map: IosysMap): void {
  dmaBufBeginCpuAccess(buf, DMA_FROM_DEVICE);
  kernelRead(m, map.vaddr, 4096);
  dmaBufEndCpuAccess(buf, DMA_FROM_DEVICE);
}

export async function fenceBenchmarks(): Promise<void> {
  const off = rig(false);
  await rate('fence-gated job round trip (push, signal the dependency, wait the finished fence)', () =>
    off(false),
  );
  const on = rig(true);
  await ratio(
    'gated 4 KiB device write to a dma-buf + CPU read-back in begin/end_cpu_access: checker on vs off',
    () => off(true),
    () => on(true),
  );
}
