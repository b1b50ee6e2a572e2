/**
 * Runs a declarative scenario's steps: the setup (devices, then buffers —
 * see buffers.ts), then one generator per agent that performs one step per
 * yield. Kernel steps map and sync (single ranges and sg_tables here, dma-buf
 * attachments in dmabuf.ts), processes mmap and touch their mappings, devices
 * move bytes at the bus addresses of a mapping — across its DMA segments
 * when it is scatter-gather.
 */

import {
  dmaMappingError,
  dmaMapSgtable,
  dmaMapSingle,
  dmaSyncSgtableForCpu,
  dmaSyncSgtableForDevice,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapSgtable,
  dmaUnmapSingle,
} from '../../dma/index.js';
import {
  addDevice,
  type Device,
  DmalabError,
  deviceDmaRead,
  deviceDmaWrite,
  deviceJob,
  errnoName,
  type Machine,
  submitDeviceJob,
} from '../../machine/index.js';
import {
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
import { type Agent, type AgentBody, type RunContext, wait, type Yielded } from '../runtime.js';
import type { AgentSpec, DeclarativeBody, StepSpec } from '../types.js';
import { kernelReadBuffer, kernelWriteBuffer, setupBuffers } from './buffers.js';
import { dmabufKernelStep, ioctlSyncStep, mmapHeap } from './dmabuf.js';
import {
  checkJobReads,
  fenceKernelStep,
  fenceProcessStep,
  KERNEL_FENCE_OPS,
  PROCESS_FENCE_OPS,
} from './fences.js';
import {
  allocated,
  atStep,
  type BusPiece,
  buffer,
  bufferSize,
  busPieces,
  count,
  DIRS,
  expectKind,
  fill,
  hex,
  mappingOf,
  num,
  share,
  stepAt,
  str,
  type World,
  where,
} from './world.js';

/** The kernel function each unmap or sync step calls, for the timeline. */
const KERNEL_CALLS: Readonly<Record<string, string>> = {
  dmaUnmapSingle: 'dma_unmap_single',
  dmaSyncSingleForCpu: 'dma_sync_single_for_cpu',
  dmaSyncSingleForDevice: 'dma_sync_single_for_device',
  dmaUnmapSgtable: 'dma_unmap_sgtable',
  dmaSyncSgtableForCpu: 'dma_sync_sgtable_for_cpu',
  dmaSyncSgtableForDevice: 'dma_sync_sgtable_for_device',
};

function* kernelStep(w: World, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  switch (s.op) {
    case 'kernelWrite': {
      const name = str(a, 'buffer');
      const off = num(a, 'offset');
      const label = `kernelWrite(${name}+${off}, ${num(a, 'length')} × ${hex(num(a, 'fill'))})`;
      const b = buffer(w, name);
      if (!allocated(b)) w.ctx.check(false, where(w, s, `buffer '${name}' was never allocated`));
      // A heap buffer whose kernel mapping failed says so itself.
      if (
        !allocated(b) ||
        !kernelWriteBuffer(w, b, off, fill(num(a, 'length'), num(a, 'fill')), where(w, s, label))
      ) {
        return yield { op: 'kernelWrite skipped' };
      }
      return yield { op: label };
    }
    case 'kernelRead': {
      const name = str(a, 'buffer');
      const off = num(a, 'offset');
      const label = `kernelRead(${name}+${off}, ${num(a, 'length')})`;
      const b = buffer(w, name);
      if (!allocated(b)) {
        w.ctx.check(false, where(w, s, `buffer '${name}' was never allocated`));
        return yield { op: 'kernelRead skipped' };
      }
      const got = kernelReadBuffer(w, b, off, num(a, 'length'), where(w, s, label));
      if (a.expect !== undefined) w.ctx.expectBytes(where(w, s, label), got, num(a, 'expect'));
      return yield { op: label };
    }
    case 'dmaMapSingle': {
      const dev = w.devices.get(str(a, 'device'))!;
      const va = buffer(w, str(a, 'buffer')).cpu;
      const name = str(a, 'as');
      if (va === null) {
        w.ctx.check(false, where(w, s, `buffer '${str(a, 'buffer')}' was never allocated`));
        w.mappings.set(name, null);
        return yield { op: 'dma_map_single skipped' };
      }
      const dirName = str(a, 'dir');
      const dir = DIRS[dirName]!;
      const size = num(a, 'size');
      const off = num(a, 'offset');
      const dma = dmaMapSingle(dev, va + off, size, dir);
      const failed = dmaMappingError(dev, dma) !== 0;
      w.mappings.set(name, failed ? null : { kind: 'single', dev, dma, size, dir, dirName });
      if (failed) w.ctx.check(false, where(w, s, `dma_map_single of '${str(a, 'buffer')}' failed`));
      const shown = failed ? 'DMA_MAPPING_ERROR' : hex(dma);
      return yield {
        op: `dma_map_single(${dev.name}, ${str(a, 'buffer')}+${off}, ${size}, ${dirName}) = ${shown}`,
      };
    }
    case 'dmaUnmapSingle':
    case 'dmaSyncSingleForCpu':
    case 'dmaSyncSingleForDevice': {
      const call = KERNEL_CALLS[s.op]!;
      const found = mappingOf(w, s, 'mapping');
      if (found === null) return yield { op: `${call} skipped (${str(a, 'mapping')} failed)` };
      const mp = expectKind(w, s, found, 'single');
      if (s.op === 'dmaUnmapSingle') dmaUnmapSingle(mp.dev, mp.dma, mp.size, mp.dir);
      else if (s.op === 'dmaSyncSingleForCpu') dmaSyncSingleForCpu(mp.dev, mp.dma, mp.size, mp.dir);
      else dmaSyncSingleForDevice(mp.dev, mp.dma, mp.size, mp.dir);
      return yield { op: `${call}(${mp.dev.name}, ${hex(mp.dma)}, ${mp.size}, ${mp.dirName})` };
    }
    case 'dmaMapSgtable': {
      const dev = w.devices.get(str(a, 'device'))!;
      const bufName = str(a, 'buffer');
      const sgt = buffer(w, bufName).sgt;
      const name = str(a, 'as');
      if (sgt === null) {
        w.ctx.check(false, where(w, s, `buffer '${bufName}' was never allocated`));
        w.mappings.set(name, null);
        return yield { op: 'dma_map_sgtable skipped' };
      }
      const dirName = str(a, 'dir');
      const dir = DIRS[dirName]!;
      const r = dmaMapSgtable(dev, sgt, dir, 0);
      const call = `dma_map_sgtable(${dev.name}, ${bufName}, ${dirName})`;
      if (r !== 0) {
        w.mappings.set(name, null);
        w.ctx.check(false, where(w, s, `${call} = ${errnoName(r)}`));
        return yield { op: `${call} = ${errnoName(r)}` };
      }
      w.mappings.set(name, { kind: 'sgtable', dev, buffer: bufName, sgt, dir, dirName });
      return yield {
        op: `${call} = 0: ${count(sgt.origNents, 'sg entry', 'sg entries')}, ${count(sgt.nents, 'DMA segment')}`,
      };
    }
    case 'dmaUnmapSgtable':
    case 'dmaSyncSgtableForCpu':
    case 'dmaSyncSgtableForDevice': {
      const call = KERNEL_CALLS[s.op]!;
      const found = mappingOf(w, s, 'mapping');
      if (found === null) return yield { op: `${call} skipped (${str(a, 'mapping')} failed)` };
      const mp = expectKind(w, s, found, 'sgtable');
      if (s.op === 'dmaUnmapSgtable') dmaUnmapSgtable(mp.dev, mp.sgt, mp.dir, 0);
      else if (s.op === 'dmaSyncSgtableForCpu') dmaSyncSgtableForCpu(mp.dev, mp.sgt, mp.dir);
      else dmaSyncSgtableForDevice(mp.dev, mp.sgt, mp.dir);
      return yield { op: `${call}(${mp.dev.name}, ${mp.buffer}, ${mp.dirName})` };
    }
  }
  if (KERNEL_FENCE_OPS.has(s.op)) return yield* fenceKernelStep(w, s);
  if (s.op.startsWith('dmaBuf')) return yield* dmabufKernelStep(w, s);
  throw new DmalabError(`step '${s.op}' is not a kernel step`, stepAt(w, s));
}

function* mmapStep(w: World, proc: Process, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  const name = str(a, 'buffer');
  const b = buffer(w, name);
  let path: string;
  let addr: number;
  if (b.spec.kind === 'heap') {
    const r = mmapHeap(proc, b);
    path = r.fd < 0 ? `dma-buf ${name}` : `dma-buf ${name} fd ${r.fd}`;
    addr = r.addr;
  } else {
    path = `/dev/${name}`;
    const fd = sysOpen(proc, path);
    addr = fd < 0 ? fd : sysMmap(proc, 0, bufferSize(b.spec), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  const want = a.expect as string | undefined;
  const got = addr < 0 ? errnoName(addr) : null;
  w.maps.set(str(a, 'as'), addr < 0 ? null : { proc, addr });
  if (want !== undefined || got !== null) {
    const ok = want === got;
    w.ctx.check(
      ok,
      where(
        w,
        s,
        `mmap(${path}) returned ${got ?? hex(addr)}${ok ? '' : `, expected ${want ?? 'an address'}`}`,
      ),
    );
  }
  return yield { op: `mmap(${path}, ${bufferSize(b.spec)}) = ${got ?? hex(addr)}` };
}

function* processStep(w: World, proc: Process, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  if (s.op === 'mmap') return yield* mmapStep(w, proc, s);
  if (s.op === 'dmaBufIoctlSync') return yield* ioctlSyncStep(w, proc, s);
  if (PROCESS_FENCE_OPS.has(s.op)) return yield* fenceProcessStep(w, proc, s);
  const name = str(a, 'map');
  const um = w.maps.get(name);
  if (um === undefined)
    throw new DmalabError(`user mapping '${name}' used before mmap made it`, {
      ...stepAt(w, s),
      field: 'map',
    });
  if (um === null) return yield { op: `${s.op} skipped (${name} was not mapped)` };
  const off = num(a, 'offset');
  const len = num(a, 'length');
  if (s.op === 'userWrite') {
    userWrite(proc, um.addr + off, fill(len, num(a, 'fill')));
    return yield { op: `userWrite(${name}+${off}, ${len} × ${hex(num(a, 'fill'))})` };
  }
  const got = userRead(proc, um.addr + off, len);
  const label = `userRead(${name}+${off}, ${len})`;
  if (a.expect !== undefined) w.ctx.expectBytes(where(w, s, label), got, num(a, 'expect'));
  return yield { op: label };
}

function* deviceStep(w: World, dev: Device, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  const target = str(a, 'at');
  const off = num(a, 'offset');
  const len = num(a, 'length');
  const found = busPieces(w, s, target, off, len);
  if (found === null) return yield { op: `${s.op} skipped (${target} has no bus address: it failed)` };
  const duration = a.duration as number | undefined;
  const write = s.op === 'deviceDmaWrite';
  const data = write ? fill(len, num(a, 'fill')) : null;
  const what = write ? `writes ${len} × ${hex(num(a, 'fill'))}` : `reads ${len}`;
  const { pieces, segments } = found;
  const got = new Uint8Array(len);
  let ok = true;
  if (segments === 0) {
    // One bus range: a coherent buffer or a single mapping.
    const addr = pieces[0]!.bus;
    const label = `${dev.name} ${what} at ${hex(addr)} (${target})`;
    if (duration === undefined) {
      if (data !== null) deviceDmaWrite(dev, addr, data);
      else got.set(deviceDmaRead(dev, addr, len));
      yield { op: label };
    } else {
      const spec =
        data !== null
          ? { kind: 'dma-write' as const, bus: addr, data }
          : { kind: 'dma-read' as const, bus: addr, len };
      const id = submitDeviceJob(dev, spec, duration);
      yield wait.job(id, `${label}, a job of ${duration} ns`);
      const r = deviceJob(w.m, id)?.result ?? null;
      if (data === null) {
        if (r === null) ok = false;
        else got.set(r);
      }
    }
    if (data === null && a.expect !== undefined)
      w.ctx.expectBytes(where(w, s, label), ok ? got : null, num(a, 'expect'));
    return;
  }
  // Scatter-gather: the device follows the mapping's DMA segments, one piece after another.
  const label = `${dev.name} ${what} at ${target}+${off} (${count(pieces.length, 'piece')} of ${count(segments, 'DMA segment')})`;
  const piece = (p: BusPiece): string =>
    `${p.len} at ${hex(p.bus)} (${target} segment ${p.segment} of ${segments})`;
  let done = 0;
  if (duration === undefined) {
    for (const p of pieces) {
      if (data !== null) deviceDmaWrite(dev, p.bus, data.subarray(done, done + p.len));
      else got.set(deviceDmaRead(dev, p.bus, p.len), done);
      done += p.len;
    }
    const shown = pieces.slice(0, 4).map((p) => `${p.len} at ${hex(p.bus)}`);
    if (pieces.length > 4) shown.push('…');
    yield { op: `${label}: ${shown.join(', ')}` };
  } else {
    // One job per piece, each submitted when the one before completes, taking its share of the duration.
    const verb = data !== null ? 'writes' : 'reads';
    for (const p of pieces) {
      const ns = share(duration, len, done, p.len);
      const spec =
        data !== null
          ? { kind: 'dma-write' as const, bus: p.bus, data: data.subarray(done, done + p.len) }
          : { kind: 'dma-read' as const, bus: p.bus, len: p.len };
      const id = submitDeviceJob(dev, spec, ns);
      yield wait.job(id, `${dev.name} ${verb} ${piece(p)}, a job of ${ns} ns`);
      const r = deviceJob(w.m, id)?.result ?? null;
      if (data === null) {
        if (r === null) ok = false;
        else got.set(r, done);
      }
      done += p.len;
    }
  }
  if (data === null && a.expect !== undefined) {
    w.ctx.expectBytes(where(w, s, label), ok ? got : null, num(a, 'expect'));
  }
}

function* agentBody(w: World, spec: AgentSpec): AgentBody {
  const proc = spec.kind === 'process' ? spawnProcess(w.m, spec.name) : null;
  const dev = spec.device === undefined ? null : w.devices.get(spec.device)!;
  for (const s of spec.steps) {
    try {
      if (s.op === 'signal') yield w.ctx.signal(str(s.args, 'value'));
      else if (s.op === 'wait') yield wait.signal(str(s.args, 'value'));
      else if (s.op === 'sleep') yield wait.sleep(w.m, num(s.args, 'value'));
      else if (proc !== null) yield* processStep(w, proc, s);
      else if (dev !== null) yield* deviceStep(w, dev, s);
      else yield* kernelStep(w, s);
    } catch (e) {
      throw atStep(e, w, s);
    }
  }
}

/** Builds a declarative scenario's world on a fresh machine and returns its agents and final check. */
export function declarativeAgents(
  m: Machine,
  ctx: RunContext,
  body: DeclarativeBody,
  file: string,
): { agents: Agent[]; final: () => void } {
  const w: World = {
    m,
    ctx,
    file,
    devices: new Map(),
    buffers: new Map(),
    mappings: new Map(),
    attachments: new Map(),
    maps: new Map(),
    scratch: new Map(),
    allocator: null,
    fences: new Map(),
    syncFiles: new Map(),
    jobReads: [],
  };
  for (const d of body.devices) w.devices.set(d.name, addDevice(m, d));
  setupBuffers(w, body.buffers);
  const agents = body.agents.map((spec) => ({ name: spec.name, kind: spec.kind, body: agentBody(w, spec) }));
  const final = () => {
    checkJobReads(w);
    for (const c of body.final) {
      const label = `${file}:${c.line}: final ${c.read}+${c.offset}`;
      // User map first, as the parser sizes a final read (it refuses a user map named as a buffer anyway).
      const um = w.maps.get(c.read);
      if (um !== undefined) {
        if (um === null) ctx.check(false, `${label}: ${c.read} was never mapped`);
        else ctx.expectBytes(label, userRead(um.proc, um.addr + c.offset, c.length), c.equals);
        continue;
      }
      const b = buffer(w, c.read);
      if (!allocated(b)) {
        ctx.check(false, `${label}: the buffer was never allocated`);
      } else ctx.expectBytes(label, kernelReadBuffer(w, b, c.offset, c.length, label), c.equals);
    }
  };
  return { agents, final };
}
