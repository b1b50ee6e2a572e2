/**
 * Devices and their DMA. A device reaches memory only through its bus
 * address space: its interconnect limit, then its IOMMU domain (or the
 * direct bus = phys + offset window), then the CPU caches as its coherence
 * allows:
 *
 *     bus addr ─► [limit] ─► IOMMU? ─► phys ─► memory
 *                                             └─ 'snoop': sees dirty lines, updates cached copies
 *                                                'ci'   : the same, for the lines of one colour only
 *                                                'none' : memory only (stale lines stay stale)
 *
 * Every access counts a step and emits `device-access` events per physically
 * contiguous piece. Failures (IOMMU fault, unreachable address) are results,
 * events and findings — never host exceptions.
 */

import { ALL_COLOURS, cacheSnoopRead, cacheSnoopWrite } from './cache.js';
import { DmalabError } from './errors.js';
import { DMA_UNREACHABLE, IOMMU_FAULT, reportFinding } from './findings.js';
import {
  IommuDomain,
  iommuCoherenceIndex,
  iommuDomainAlloc,
  iommuIovaProt,
  iommuIovaToPhys,
  iommuTranslate,
  type Translation,
} from './iommu.js';
import type { Machine } from './machine.js';
import { addPhysRegion, physRegionFor } from './physmap.js';
import { memRead, memWrite } from './physmem.js';
import type { Coherence } from './profiles.js';
import { formatHex, PAGE_SIZE, type PhysAddr, ULONG_MAX } from './types.js';

/** A device's hardware description and DMA parameters, as plain data. */
export interface DeviceState {
  readonly id: number;
  readonly name: string;
  /** Streaming DMA mask, in bits (`*dev->dma_mask`). */
  dmaMaskBits: number;
  /** Coherent DMA mask, in bits (`dev->coherent_dma_mask`). */
  coherentDmaMaskBits: number;
  readonly coherence: Coherence;
  readonly coherencyDomain: string;
  /** IOMMU domain id, or -1 for direct DMA. */
  iommuDomain: number;
  maxSegmentSize: number;
  segmentBoundary: number;
  /** Interconnect limit in address bits (`bus_dma_limit`), 0 for none. */
  busDmaLimitBits: number;
  /** Address lines the hardware really drives. */
  readonly addressBits: number;
  /** Bus address of physical 0 on the direct path (a uniform `dma_range_map` offset). */
  readonly dmaOffset: number;
  readonly deviceMemory: { readonly phys: PhysAddr; readonly size: number } | null;
}

/** `struct device *`: a handle carrying its machine; state lives in `machine.hw.devices`. */
export class Device {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}

  /** `dev_name()`. */
  get name(): string {
    return this.state.name;
  }

  /** The device's mutable hardware state. */
  get state(): DeviceState {
    return this.machine.hw.devices[this.id]!;
  }

  /** Device-local memory (VRAM, a sound card's buffer), or null. */
  get deviceMemory(): { readonly phys: PhysAddr; readonly size: number } | null {
    return this.state.deviceMemory;
  }

  /** The IOMMU domain the device is attached to, or null. */
  get iommuDomain(): IommuDomain | null {
    const id = this.state.iommuDomain;
    return id < 0 ? null : new IommuDomain(this.machine, id);
  }

  toString(): string {
    return this.name;
  }
}

export interface AddDeviceOptions {
  name: string;
  dmaMaskBits?: number;
  coherentDmaMaskBits?: number;
  coherence?: Coherence;
  coherencyDomain?: string;
  iommu?: boolean;
  maxSegmentSize?: number;
  segmentBoundary?: number;
  busDmaLimitBits?: number;
  deviceMemoryBytes?: number;
  addressBits?: number;
  dmaOffset?: number;
}

const KNOWN_OPTIONS = new Set([
  'name',
  'dmaMaskBits',
  'coherentDmaMaskBits',
  'coherence',
  'coherencyDomain',
  'iommu',
  'maxSegmentSize',
  'segmentBoundary',
  'busDmaLimitBits',
  'deviceMemoryBytes',
  'addressBits',
  'dmaOffset',
]);

function bits(v: unknown, field: string, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 64) {
    throw new DmalabError(`must be an integer bit count from 1 to 64, got ${String(v)}`, { field });
  }
  return v;
}

/**
 * Adds a device to the machine (API.md §3). Defaults follow the kernel (32-bit
 * masks, 64 KiB max segment, no segment boundary) and the profile (coherence,
 * IOMMU attachment). Throws a `DmalabError` naming the bad field.
 */
export function addDevice(m: Machine, options: AddDeviceOptions): Device {
  if (typeof options !== 'object' || options === null)
    throw new DmalabError('addDevice needs an options object');
  for (const k of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(k)) {
      throw new DmalabError(`unknown device option '${k}' (known: ${[...KNOWN_OPTIONS].join(', ')})`, {
        field: k,
      });
    }
  }
  const { name } = options;
  if (typeof name !== 'string' || name === '')
    throw new DmalabError('must be a non-empty string', { field: 'name' });
  if (m.hw.devices.some((d) => d.name === name)) {
    throw new DmalabError(`a device named '${name}' already exists`, { field: 'name' });
  }
  const iommu = options.iommu ?? m.profile.iommuDefault;
  if (typeof iommu !== 'boolean') throw new DmalabError('must be a boolean', { field: 'iommu' });
  let coherence = options.coherence;
  if (coherence === undefined) {
    coherence = m.profile.deviceCoherence === 'ci' && !iommu ? 'none' : m.profile.deviceCoherence;
  }
  if (coherence !== 'snoop' && coherence !== 'none' && coherence !== 'ci') {
    throw new DmalabError(`must be 'snoop', 'none' or 'ci', got ${String(coherence)}`, {
      field: 'coherence',
    });
  }
  if (coherence === 'ci' && !iommu) {
    throw new DmalabError("coherence 'ci' needs an IOMMU: the coherence index lives in IOMMU entries", {
      field: 'coherence',
    });
  }
  const maxSegmentSize = options.maxSegmentSize ?? 65536;
  if (!Number.isInteger(maxSegmentSize) || maxSegmentSize <= 0 || maxSegmentSize > 0xffff_ffff) {
    throw new DmalabError('must be a positive 32-bit integer', { field: 'maxSegmentSize' });
  }
  const segmentBoundary = options.segmentBoundary ?? ULONG_MAX;
  if (
    !Number.isInteger(segmentBoundary) ||
    segmentBoundary < PAGE_SIZE - 1 ||
    (segmentBoundary !== ULONG_MAX && !Number.isInteger(Math.log2(segmentBoundary + 1)))
  ) {
    throw new DmalabError('must be a mask of the form 2^n - 1, at least 4095', { field: 'segmentBoundary' });
  }
  const dmaOffset = options.dmaOffset ?? 0;
  if (!Number.isInteger(dmaOffset) || dmaOffset < 0 || dmaOffset % PAGE_SIZE !== 0) {
    throw new DmalabError('must be a non-negative multiple of 4096', { field: 'dmaOffset' });
  }
  const id = m.hw.devices.length;
  let deviceMemory: DeviceState['deviceMemory'] = null;
  if (options.deviceMemoryBytes !== undefined) {
    const r = addPhysRegion(m, 'device', options.deviceMemoryBytes, `${name} memory`);
    deviceMemory = { phys: r.start as PhysAddr, size: r.size };
  }
  const state: DeviceState = {
    id,
    name,
    dmaMaskBits: bits(options.dmaMaskBits, 'dmaMaskBits', 32),
    coherentDmaMaskBits: bits(options.coherentDmaMaskBits, 'coherentDmaMaskBits', 32),
    coherence,
    coherencyDomain: options.coherencyDomain ?? (coherence === 'snoop' ? 'cpu' : `dev:${name}`),
    iommuDomain: iommu ? iommuDomainAlloc(m, name).id : -1,
    maxSegmentSize,
    segmentBoundary,
    busDmaLimitBits:
      options.busDmaLimitBits === undefined ? 0 : bits(options.busDmaLimitBits, 'busDmaLimitBits', 0),
    addressBits: bits(options.addressBits, 'addressBits', 64),
    dmaOffset,
    deviceMemory,
  };
  m.hw.devices.push(state);
  const dev = new Device(m, id);
  m.devices.push(dev);
  return dev;
}

/** Finds a device by name. */
export function deviceByName(m: Machine, name: string): Device | undefined {
  const s = m.hw.devices.find((d) => d.name === name);
  return s === undefined ? undefined : m.devices[s.id];
}

export type DmaAccessStatus = 'ok' | 'iommu-fault' | 'unreachable' | 'decode-error';

/** Result of a device access, as a value. */
export interface DmaAccessResult {
  status: DmaAccessStatus;
  /** Bytes read (all-ones where the access failed), or the bytes given to a write. */
  data: Uint8Array;
  /** First bus address that failed, or -1. */
  faultAddr: number;
}

/** The highest bus address + 1 a device can put on its interconnect. */
export function deviceBusLimit(s: DeviceState): number {
  const hw = 2 ** Math.min(s.addressBits, 53);
  return s.busDmaLimitBits > 0 ? Math.min(hw, 2 ** s.busDmaLimitBits) : hw;
}

const scratch: Translation = { pa: 0, ci: -1, fault: 'none' };

/**
 * A device DMA access of `length` bytes at `busAddr`, returning a result
 * value (QEMU-style) instead of raising: failures are still reported as
 * events and findings. For a write, `data` holds the bytes; for a read,
 * `data` (optional) is the device-side buffer to read into, so that a
 * device model can reuse one buffer.
 */
export function deviceDmaAccess(
  dev: Device,
  busAddr: number,
  length: number,
  write: boolean,
  data?: Uint8Array,
): DmaAccessResult {
  const m = dev.machine;
  const s = dev.state;
  m.clock.step++;
  if (data !== undefined && data.length < length) {
    throw new DmalabError(
      `deviceDmaAccess: buffer of ${data.length} bytes is shorter than the ${length}-byte access`,
    );
  }
  const buf = data ?? new Uint8Array(length);
  const result: DmaAccessResult = { status: 'ok', data: buf, faultAddr: -1 };
  if (length <= 0) return result;
  if (!Number.isInteger(busAddr) || busAddr < 0 || busAddr + length > deviceBusLimit(s)) {
    if (!write) buf.fill(0xff);
    fail(m, dev, result, 'unreachable', busAddr, length, write);
    return result;
  }
  if (s.iommuDomain < 0) {
    accessPiece(m, dev, busAddr, busAddr - s.dmaOffset, length, write, buf, 0, -1, result);
    return result;
  }
  // Through the IOMMU: page by page, merging physically contiguous runs.
  let done = 0;
  while (done < length) {
    const bus = busAddr + done;
    const n0 = Math.min(length - done, PAGE_SIZE - (bus % PAGE_SIZE));
    iommuTranslate(m, s.iommuDomain, bus, write, scratch);
    if (scratch.fault !== 'none') {
      if (!write) buf.fill(0xff, done, done + n0);
      iommuFault(m, dev, result, bus, n0, write, scratch.fault);
      done += n0;
      continue;
    }
    const pa = scratch.pa;
    const ci = scratch.ci;
    let n = n0;
    while (done + n < length) {
      iommuTranslate(m, s.iommuDomain, bus + n, write, scratch);
      if (scratch.fault !== 'none' || scratch.pa !== pa + n || !sameColour(m, ci, scratch.ci, pa, pa + n))
        break;
      n += Math.min(length - done - n, PAGE_SIZE);
    }
    accessPiece(m, dev, bus, pa, n, write, buf, done, ci, result);
    done += n;
  }
  return result;
}

/** The colour a device access to `pa` is coherent with: `ALL_COLOURS` (snooping), -2 (none), or one colour (ci). */
function colourFor(m: Machine, coherence: Coherence, ci: number, pa: number): number {
  if (coherence === 'snoop') return ALL_COLOURS;
  if (coherence === 'none' || ci < 0) return -2; // not coherent with any line
  const colours = m.hw.cache.colours;
  const c = (ci - Math.floor(pa / PAGE_SIZE)) % colours;
  return c < 0 ? c + colours : c;
}

/**
 * Which cache lines a device's access at bus address `bus` would see and
 * update (the hardware's answer, for checkers): `ALL_COLOURS` for a snooping
 * device, -2 for a non-snooping one or a bus address its IOMMU does not
 * map, else the one colour its IOMMU entry's coherence index names (PA-RISC
 * `ccio`/`sba`: coherent with the kernel alias the entry was set up for).
 */
export function deviceCoherentColour(dev: Device, bus: number): number {
  const s = dev.state;
  if (s.coherence === 'snoop') return ALL_COLOURS;
  const domain = dev.iommuDomain;
  if (s.coherence === 'none' || domain === null || iommuIovaProt(domain, bus) === 0) return -2;
  return colourFor(dev.machine, 'ci', iommuCoherenceIndex(domain, bus), iommuIovaToPhys(domain, bus));
}

function sameColour(m: Machine, ci1: number, ci2: number, pa1: number, pa2: number): boolean {
  if (ci1 < 0 || ci2 < 0) return ci1 === ci2;
  return colourFor(m, 'ci', ci1, pa1) === colourFor(m, 'ci', ci2, pa2);
}

function accessPiece(
  m: Machine,
  dev: Device,
  bus: number,
  pa: number,
  n: number,
  write: boolean,
  buf: Uint8Array,
  off: number,
  ci: number,
  result: DmaAccessResult,
): void {
  if (physRegionFor(m, pa, n) === null) {
    if (!write) buf.fill(0xff, off, off + n);
    fail(m, dev, result, 'decode-error', bus, n, write);
    return;
  }
  const coherence = dev.state.coherence;
  const colour = colourFor(m, coherence, ci, pa);
  if (write) {
    memWrite(m.hw.mem, pa, buf, off, n);
    if (colour !== -2) cacheSnoopWrite(m, pa, n, colour, buf, off);
  } else {
    memRead(m.hw.mem, pa, buf, off, n);
    if (colour !== -2) cacheSnoopRead(m, pa, n, colour, buf, off);
  }
  if (m.bus.wants['device-access']) {
    m.bus.emitTo(m.bus.listeners['device-access'], {
      type: 'device-access',
      device: dev.name,
      write,
      bus,
      pa,
      len: n,
      coherence,
      colour: colour < 0 ? -1 : colour,
      data: buf.subarray(off, off + n),
      step: m.clock.step,
      time: m.clock.time,
    });
  }
}

function fail(
  m: Machine,
  dev: Device,
  result: DmaAccessResult,
  status: 'unreachable' | 'decode-error',
  bus: number,
  len: number,
  write: boolean,
): void {
  if (result.status === 'ok') {
    result.status = status;
    result.faultAddr = bus;
  }
  const what =
    status === 'unreachable' ? 'beyond what its interconnect reaches' : 'that decodes to no memory';
  reportFinding(
    m,
    DMA_UNREACHABLE.code,
    `device ${dev.name} DMA ${write ? 'write' : 'read'} at a bus address ${what} [bus address=${formatHex(bus)}] [size=${len} bytes] [limit=${formatHex(deviceBusLimit(dev.state))}]`,
    { device: dev.name, agent: dev.name, details: { bus, size: len, write, status } },
  );
}

function iommuFault(
  m: Machine,
  dev: Device,
  result: DmaAccessResult,
  iova: number,
  len: number,
  write: boolean,
  reason: 'unmapped' | 'permission',
): void {
  if (result.status === 'ok') {
    result.status = 'iommu-fault';
    result.faultAddr = iova;
  }
  const domain = dev.state.iommuDomain;
  if (m.bus.wants['iommu-fault']) {
    m.bus.emit({ type: 'iommu-fault', device: dev.name, domain, iova, write, reason });
  }
  const why = reason === 'unmapped' ? 'no translation' : `PTE ${write ? 'Write' : 'Read'} access is not set`;
  reportFinding(
    m,
    IOMMU_FAULT.code,
    `IOMMU fault: device ${dev.name} [DMA ${write ? 'Write' : 'Read'}] fault addr ${formatHex(iova)} [size=${len} bytes]: ${why}`,
    { device: dev.name, agent: dev.name, details: { iova, size: len, write, reason } },
  );
}

/**
 * A device reads `length` bytes at bus address `busAddr`. An IOMMU fault or
 * unreachable address yields all-ones bytes, an event and a finding.
 */
export function deviceDmaRead(dev: Device, busAddr: number, length: number): Uint8Array {
  return deviceDmaAccess(dev, busAddr, length, false).data;
}

/** A device writes `bytes` at bus address `busAddr` (failed pieces are dropped and reported). */
export function deviceDmaWrite(dev: Device, busAddr: number, bytes: Uint8Array): void {
  deviceDmaAccess(dev, busAddr, bytes.length, true, bytes);
}

/**
 * A device's access to its own local memory (VRAM, an on-card buffer) by
 * physical address, as its internal engines reach it: no bus address, no
 * IOMMU, no interconnect limit. The range must lie inside
 * `dev.deviceMemory` (a DmalabError otherwise). Emits `device-access`
 * with `bus` equal to the physical address. (dmalab helper: the kernel has
 * no such call; a GPU's copy engine does this in hardware.)
 */
export function deviceLocalAccess(
  dev: Device,
  pa: number,
  length: number,
  write: boolean,
  data?: Uint8Array,
): DmaAccessResult {
  const own = dev.state.deviceMemory;
  if (own === null || !Number.isInteger(pa) || pa < own.phys || pa + length > own.phys + own.size) {
    throw new DmalabError(
      `deviceLocalAccess: [${formatHex(pa)}, +${length}) is not inside ${dev.name}'s own memory`,
    );
  }
  if (data !== undefined && data.length < length) {
    throw new DmalabError(
      `deviceLocalAccess: buffer of ${data.length} bytes is shorter than the ${length}-byte access`,
    );
  }
  const m = dev.machine;
  m.clock.step++;
  const buf = data ?? new Uint8Array(length);
  const result: DmaAccessResult = { status: 'ok', data: buf, faultAddr: -1 };
  if (length > 0) accessPiece(m, dev, pa, pa, length, write, buf, 0, -1, result);
  return result;
}
