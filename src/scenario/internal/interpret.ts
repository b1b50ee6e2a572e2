/**
 * Runs a declarative scenario's steps: the setup (devices, buffers, one
 * character device per coherent buffer whose mmap is `dma_mmap_coherent`),
 * then one generator per agent that performs one step per yield.
 */

import {
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  type DmaDataDirection,
  dmaAllocCoherent,
  dmaAllocCoherentForMmap,
  dmaMappingError,
  dmaMapSingle,
  dmaMmapCoherent,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapSingle,
} from '../../dma/index.js';
import {
  addDevice,
  type Device,
  type DmaAddr,
  DmalabError,
  deviceDmaRead,
  deviceDmaWrite,
  deviceJob,
  ENOMEM,
  errnoName,
  formatHex,
  GFP_KERNEL,
  type KernelVa,
  type Machine,
  submitDeviceJob,
} from '../../machine/index.js';
import {
  kernelRead,
  kernelWrite,
  kmalloc,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  type Process,
  registerChrdev,
  spawnProcess,
  sysMmap,
  sysOpen,
  userRead,
  userWrite,
} from '../../mm/index.js';
import { type Agent, type AgentBody, type RunContext, wait, type Yielded } from '../runtime.js';
import type { AgentSpec, BufferSetup, DeclarativeBody, StepSpec } from '../types.js';

const DIRS: Readonly<Record<string, DmaDataDirection>> = {
  DMA_TO_DEVICE,
  DMA_FROM_DEVICE,
  DMA_BIDIRECTIONAL,
};

interface Buffer {
  readonly spec: BufferSetup;
  readonly dev: Device | null;
  cpu: KernelVa | null;
  dma: DmaAddr | null;
}

interface Mapping {
  readonly dev: Device;
  readonly dma: DmaAddr;
  readonly size: number;
  readonly dir: DmaDataDirection;
  readonly dirName: string;
}

interface UserMap {
  readonly proc: Process;
  readonly addr: number;
}

/** The run's named things. */
interface World {
  readonly m: Machine;
  readonly ctx: RunContext;
  readonly file: string;
  readonly devices: Map<string, Device>;
  readonly buffers: Map<string, Buffer>;
  /** Null when the mapping failed (later steps on it are skipped). */
  readonly mappings: Map<string, Mapping | null>;
  readonly maps: Map<string, UserMap | null>;
}

function num(args: Readonly<Record<string, unknown>>, key: string, def = 0): number {
  const x = args[key];
  return typeof x === 'number' ? x : def;
}

function str(args: Readonly<Record<string, unknown>>, key: string): string {
  return String(args[key]);
}

function fill(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value);
}

/** `file:line: what`, for byte conditions. */
function where(w: World, s: StepSpec, what: string): string {
  return `${w.file}:${s.line}: ${what}`;
}

function buffer(w: World, name: string): Buffer {
  return w.buffers.get(name)!;
}

/** A buffer's kernel address, or null (with a failed check) when it was never allocated. */
function bufferVa(w: World, s: StepSpec, name: string): KernelVa | null {
  const b = buffer(w, name);
  if (b.cpu === null) w.ctx.check(false, where(w, s, `buffer '${name}' was never allocated`));
  return b.cpu;
}

function setupBuffers(w: World, specs: readonly BufferSetup[]): void {
  for (const spec of specs) {
    const dev = spec.device === undefined ? null : w.devices.get(spec.device)!;
    const b: Buffer = { spec, dev, cpu: null, dma: null };
    w.buffers.set(spec.name, b);
    if (spec.kind === 'kmalloc') b.cpu = kmalloc(w.m, spec.size, GFP_KERNEL);
    else if (spec.kind === 'coherent') {
      const r = dmaAllocCoherent(dev!, spec.size, GFP_KERNEL);
      if (r !== null) {
        b.cpu = r.cpuAddr;
        b.dma = r.dmaHandle;
      }
    }
    if (spec.kind !== 'kmalloc') {
      // The driver's character device: a coherent buffer is handed to user space with dma_mmap_coherent.
      registerChrdev(w.m, `/dev/${spec.name}`, {
        open(_inode, file) {
          if (spec.kind !== 'coherent-for-mmap' || b.cpu !== null) return 0;
          const r = dmaAllocCoherentForMmap(dev!, spec.size, GFP_KERNEL, file);
          if (r === null) return -ENOMEM;
          b.cpu = r.cpuAddr;
          b.dma = r.dmaHandle;
          if (spec.fill !== undefined) kernelWrite(w.m, b.cpu, fill(spec.size, spec.fill));
          return 0;
        },
        mmap(_file, vma) {
          // A coherent allocation that failed leaves nothing to map: the driver says so, as ALSA's would.
          if (b.cpu === null || b.dma === null) return -ENOMEM;
          return dmaMmapCoherent(dev!, vma, b.cpu, b.dma, spec.size);
        },
      });
    }
    if (b.cpu === null && spec.kind !== 'coherent-for-mmap') {
      w.ctx.check(false, `${w.file}: allocating buffer '${spec.name}' failed`);
    } else if (b.cpu !== null && spec.fill !== undefined) {
      kernelWrite(w.m, b.cpu, fill(spec.size, spec.fill));
    }
  }
}

function hex(n: number): string {
  return formatHex(n);
}

/** A device's bus address for `at`: a DMA mapping's handle (null when it failed) or a coherent buffer's. */
function busAddress(w: World, s: StepSpec, name: string): DmaAddr | null {
  const b = w.buffers.get(name);
  if (b !== undefined) return b.dma;
  const mp = w.mappings.get(name);
  if (mp === undefined) {
    throw new DmalabError(`mapping '${name}' used before the step that makes it (wait for a signal first)`, {
      file: w.file,
      line: s.line,
      field: 'at',
    });
  }
  return mp?.dma ?? null;
}

function* kernelStep(w: World, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  switch (s.op) {
    case 'kernelWrite': {
      const va = bufferVa(w, s, str(a, 'buffer'));
      if (va === null) return yield { op: 'kernelWrite skipped' };
      const off = num(a, 'offset');
      kernelWrite(w.m, va + off, fill(num(a, 'length'), num(a, 'fill')));
      return yield {
        op: `kernelWrite(${str(a, 'buffer')}+${off}, ${num(a, 'length')} × ${hex(num(a, 'fill'))})`,
      };
    }
    case 'kernelRead': {
      const va = bufferVa(w, s, str(a, 'buffer'));
      if (va === null) return yield { op: 'kernelRead skipped' };
      const off = num(a, 'offset');
      const got = kernelRead(w.m, va + off, num(a, 'length'));
      const label = `kernelRead(${str(a, 'buffer')}+${off}, ${num(a, 'length')})`;
      if (a.expect !== undefined) w.ctx.expectBytes(where(w, s, label), got, num(a, 'expect'));
      return yield { op: label };
    }
    case 'dmaMapSingle': {
      const dev = w.devices.get(str(a, 'device'))!;
      const va = bufferVa(w, s, str(a, 'buffer'));
      const name = str(a, 'as');
      if (va === null) {
        w.mappings.set(name, null);
        return yield { op: 'dma_map_single skipped' };
      }
      const dirName = str(a, 'dir');
      const dir = DIRS[dirName]!;
      const size = num(a, 'size');
      const off = num(a, 'offset');
      const dma = dmaMapSingle(dev, va + off, size, dir);
      const failed = dmaMappingError(dev, dma) !== 0;
      w.mappings.set(name, failed ? null : { dev, dma, size, dir, dirName });
      if (failed) w.ctx.check(false, where(w, s, `dma_map_single of '${str(a, 'buffer')}' failed`));
      const shown = failed ? 'DMA_MAPPING_ERROR' : hex(dma);
      return yield {
        op: `dma_map_single(${dev.name}, ${str(a, 'buffer')}+${off}, ${size}, ${dirName}) = ${shown}`,
      };
    }
    case 'dmaUnmapSingle':
    case 'dmaSyncSingleForCpu':
    case 'dmaSyncSingleForDevice': {
      const name = str(a, 'mapping');
      const mp = w.mappings.get(name);
      const call =
        s.op === 'dmaUnmapSingle'
          ? 'dma_unmap_single'
          : s.op === 'dmaSyncSingleForCpu'
            ? 'dma_sync_single_for_cpu'
            : 'dma_sync_single_for_device';
      if (mp === undefined)
        throw new DmalabError(`mapping '${name}' used before it was made`, {
          file: w.file,
          line: s.line,
          field: 'mapping',
        });
      if (mp === null) return yield { op: `${call} skipped (${name} failed)` };
      if (s.op === 'dmaUnmapSingle') dmaUnmapSingle(mp.dev, mp.dma, mp.size, mp.dir);
      else if (s.op === 'dmaSyncSingleForCpu') dmaSyncSingleForCpu(mp.dev, mp.dma, mp.size, mp.dir);
      else dmaSyncSingleForDevice(mp.dev, mp.dma, mp.size, mp.dir);
      return yield { op: `${call}(${mp.dev.name}, ${hex(mp.dma)}, ${mp.size}, ${mp.dirName})` };
    }
  }
  throw new DmalabError(`step '${s.op}' is not a kernel step`, { file: w.file, line: s.line });
}

function* processStep(w: World, proc: Process, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  if (s.op === 'mmap') {
    const name = str(a, 'buffer');
    const path = `/dev/${name}`;
    const fd = sysOpen(proc, path);
    const size = buffer(w, name).spec.size;
    const addr = fd < 0 ? fd : sysMmap(proc, 0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
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
    return yield { op: `mmap(${path}, ${size}) = ${got ?? hex(addr)}` };
  }
  const name = str(a, 'map');
  const um = w.maps.get(name);
  if (um === undefined)
    throw new DmalabError(`user mapping '${name}' used before mmap made it`, {
      file: w.file,
      line: s.line,
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
  const bus = busAddress(w, s, target);
  if (bus === null) return yield { op: `${s.op} skipped (${target} has no bus address: it failed)` };
  const addr = bus + num(a, 'offset');
  const len = num(a, 'length');
  const duration = a.duration as number | undefined;
  if (s.op === 'deviceDmaWrite') {
    const data = fill(len, num(a, 'fill'));
    const label = `${dev.name} writes ${len} × ${hex(num(a, 'fill'))} at ${hex(addr)} (${target})`;
    if (duration === undefined) {
      deviceDmaWrite(dev, addr, data);
      return yield { op: label };
    }
    const id = submitDeviceJob(dev, { kind: 'dma-write', bus: addr, data }, duration);
    return yield wait.job(id, `${label}, a job of ${duration} ns`);
  }
  const label = `${dev.name} reads ${len} at ${hex(addr)} (${target})`;
  let got: Uint8Array | null;
  if (duration === undefined) {
    got = deviceDmaRead(dev, addr, len);
    yield { op: label };
  } else {
    const id = submitDeviceJob(dev, { kind: 'dma-read', bus: addr, len }, duration);
    yield wait.job(id, `${label}, a job of ${duration} ns`);
    got = deviceJob(w.m, id)?.result ?? null;
  }
  if (a.expect !== undefined) w.ctx.expectBytes(where(w, s, label), got, num(a, 'expect'));
}

function* agentBody(w: World, spec: AgentSpec): AgentBody {
  const proc = spec.kind === 'process' ? spawnProcess(w.m, spec.name) : null;
  const dev = spec.device === undefined ? null : w.devices.get(spec.device)!;
  for (const s of spec.steps) {
    if (s.op === 'signal') yield w.ctx.signal(str(s.args, 'value'));
    else if (s.op === 'wait') yield wait.signal(str(s.args, 'value'));
    else if (s.op === 'sleep') yield wait.sleep(w.m, num(s.args, 'value'));
    else if (proc !== null) yield* processStep(w, proc, s);
    else if (dev !== null) yield* deviceStep(w, dev, s);
    else yield* kernelStep(w, s);
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
    maps: new Map(),
  };
  for (const d of body.devices) w.devices.set(d.name, addDevice(m, d));
  setupBuffers(w, body.buffers);
  const agents = body.agents.map((spec) => ({ name: spec.name, kind: spec.kind, body: agentBody(w, spec) }));
  const final = () => {
    for (const c of body.final) {
      const label = `${file}:${c.line}: final ${c.read}+${c.offset}`;
      const um = w.maps.get(c.read);
      if (um !== undefined) {
        if (um === null) ctx.check(false, `${label}: ${c.read} was never mapped`);
        else ctx.expectBytes(label, userRead(um.proc, um.addr + c.offset, c.length), c.equals);
        continue;
      }
      const b = buffer(w, c.read);
      if (b.cpu === null) ctx.check(false, `${label}: the buffer was never allocated`);
      else ctx.expectBytes(label, kernelRead(m, b.cpu + c.offset, c.length), c.equals);
    }
  };
  return { agents, final };
}
