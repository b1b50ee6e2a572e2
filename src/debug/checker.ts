/**
 * Attaching the checker to a machine: it subscribes to the event bus and
 * keeps all its state in `m.layers.debug`. It reads other layers only
 * through their events and public queries, never their internals.
 */

import type { Machine } from '../machine/index.js';
import { aliasCpuAccess, onPteInstall, onPteRemove } from './alias.js';
import { boCpuAccess, onBoDestroy, onBoInit, onBoMove, onBoVmaMap, onBoVmaUnmap } from './bo.js';
import {
  dmaBufDeviceAccess,
  onDmaBufDetach,
  onDmaBufMap,
  onDmaBufMoveNotify,
  onDmaBufUnmap,
} from './dmabuf.js';
import {
  onAlloc,
  onFree,
  onMap,
  onMappingError,
  onMapSg,
  onSync,
  onSyncSg,
  onUnbound,
  onUnmap,
  onUnmapSg,
} from './dmadebug.js';
import { readAt } from './internal/readlog.js';
import {
  addBounce,
  isInternalAgent,
  oracleCpu,
  oracleDevice,
  oracleInvalidate,
  oracleWriteback,
  removeBounce,
} from './oracle.js';
import { attachOrdering } from './ordering.js';
import { cpuAccessOwnership, deviceAccessOwnership } from './ownership.js';
import { debugState, devDebug, initDebugState } from './state.js';
import { onDmaMmap, onFreeMmapped, onVmaUnmap } from './usermaps.js';

/** Device id by name, cached outside the state (names never change; a restore may drop devices). */
function deviceIdOf(m: Machine, cache: Map<string, number>, name: string): number {
  const id = cache.get(name);
  if (id !== undefined && m.hw.devices[id]?.name === name) return id;
  const found = m.hw.devices.findIndex((d) => d.name === name);
  if (found >= 0) cache.set(name, found);
  return found;
}

/**
 * Attaches the checker (`createMachine` does it when `check` is on):
 * dma-debug's checks, ownership, attribute aliases and the oracle.
 */
export function attachChecker(m: Machine): void {
  if (m.layers.debug !== undefined) return;
  initDebugState(m);
  const ids = new Map<string, number>();
  // The last device seen answers most events (a driver's loop on one device) without a map lookup.
  let lastName = '';
  let lastId = -1;
  const dev = (name: string) => {
    if (name === lastName && m.hw.devices[lastId]?.name === name) return lastId;
    const id = deviceIdOf(m, ids, name);
    lastName = name;
    lastId = id;
    return id;
  };
  const bus = m.bus;
  const st = () => debugState(m);

  bus.on('dma-map', (ev) => onMap(m, st(), dev(ev.device), ev));
  bus.on('dma-unmap', (ev) => onUnmap(m, st(), dev(ev.device), ev));
  bus.on('dma-sync', (ev) => onSync(m, st(), dev(ev.device), ev));
  bus.on('dma-mapping-error', (ev) => onMappingError(st(), dev(ev.device), ev.dmaAddr));
  bus.on('dma-map-sg', (ev) => onMapSg(m, st(), dev(ev.device), ev));
  bus.on('dma-unmap-sg', (ev) => onUnmapSg(m, st(), dev(ev.device), ev));
  bus.on('dma-sync-sg', (ev) => onSyncSg(m, st(), dev(ev.device), ev));
  bus.on('dma-alloc', (ev) => onAlloc(m, st(), dev(ev.device), ev));
  bus.on('dma-free', (ev) => {
    onFreeMmapped(m, st(), dev(ev.device), ev);
    onFree(m, st(), dev(ev.device), ev);
  });
  bus.on('dma-mmap', (ev) => onDmaMmap(st(), ev));
  bus.on('vma-unmap', (ev) => {
    onVmaUnmap(st(), ev);
    onBoVmaUnmap(st(), ev);
  });
  bus.on('vma-map', (ev) => onBoVmaMap(st(), ev));
  bus.on('bo-init', (ev) => onBoInit(st(), ev));
  bus.on('dmabuf-map', (ev) => onDmaBufMap(st(), ev));
  bus.on('dmabuf-unmap', (ev) => onDmaBufUnmap(st(), ev));
  bus.on('dmabuf-detach', (ev) => onDmaBufDetach(st(), ev));
  bus.on('dmabuf-move-notify', (ev) => onDmaBufMoveNotify(st(), ev));
  bus.on('bo-move', (ev) => onBoMove(st(), ev));
  bus.on('bo-destroy', (ev) => onBoDestroy(st(), ev));
  bus.on('driver-bind', (ev) => {
    if (ev.result >= 0) devDebug(st(), dev(ev.device)).driver = ev.driver;
  });
  bus.on('driver-unbind', (ev) => onUnbound(m, st(), dev(ev.device), ev.driver));
  bus.on('swiotlb-map', (ev) => {
    const s = st();
    addBounce(s, { dev: ev.device, orig: ev.orig, slot: ev.slot, size: ev.size });
    s.lastBounce = { step: ev.step, dev: ev.device };
  });
  bus.on('swiotlb-unmap', (ev) => removeBounce(st(), ev.slot));
  bus.on('cpu-access', (ev) => {
    if (isInternalAgent(ev.agent, ev.mm)) return;
    const s = st();
    cpuAccessOwnership(m, s, ev);
    aliasCpuAccess(m, s, ev);
    oracleCpu(m, s, ev);
    boCpuAccess(m, s, ev);
  });
  bus.on('device-access', (ev) => {
    const s = st();
    const id = dev(ev.device);
    deviceAccessOwnership(m, s, id, ev);
    dmaBufDeviceAccess(m, s, id, ev);
    oracleDevice(m, s, id, ev);
  });
  bus.on('cache-writeback', (ev) => oracleWriteback(m, st(), ev));
  bus.on('cache-invalidate', (ev) => oracleInvalidate(m, st(), ev));
  bus.on('pte-install', (ev) => onPteInstall(m, st(), ev));
  bus.on('pte-remove', (ev) => onPteRemove(st(), ev));
  // Happens-before between the users of each dma-buf (fences, signals, waits).
  attachOrdering(m);
}

/** True when the checker runs on this machine. */
export function checkerAttached(m: Machine): boolean {
  return m.layers.debug !== undefined;
}

/** One record of observed bytes: the step, the call (or who read outside calls) and a hash of the bytes. */
export interface ObservedRead {
  step: number;
  call: string;
  hash: number;
}

/** The bytes agents observed, in order (empty when the checker is off). */
export function observedReads(m: Machine): ObservedRead[] {
  if (!checkerAttached(m)) return [];
  const st = debugState(m);
  const out: ObservedRead[] = [];
  for (let i = 0; i < st.reads.length; i++) {
    const [step, call, hash] = readAt(st.reads, i);
    out.push({ step, call: st.names[call]!, hash });
  }
  return out;
}
