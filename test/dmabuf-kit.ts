/**
 * Helpers for the dma-buf tests: seed 003's two-driver table and a runner
 * that plays a table on any exporter's buffer, recording the findings each
 * step raised and the calls an exporter refused.
 */

import { DMA_BIDIRECTIONAL } from '../src/dma/index.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  dmaBufAttach,
  dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufVmapUnlocked,
  type IosysMap,
} from '../src/dmabuf/index.js';
import { forEachSgtableDmaSg, type SgTable } from '../src/lib/index.js';
import {
  addDevice,
  type Device,
  deviceDmaRead,
  deviceDmaWrite,
  type Machine,
  machineFindings,
} from '../src/machine/index.js';
import { kernelRead, kernelWrite } from '../src/mm/index.js';

export type Op = 'rw' | 'rw-bracketed' | 'map' | 'dma' | 'unmap';
export type Table = readonly (readonly ['A' | 'B', Op])[];

/** Arnd's table (seed 003), step by step: which driver does what. */
export const SEED_003_TABLE: Table = [
  ['A', 'rw'],
  ['B', 'rw'],
  ['A', 'map'],
  ['B', 'rw'],
  ['A', 'dma'],
  ['B', 'map'],
  ['A', 'dma'],
  ['B', 'dma'],
  ['A', 'unmap'],
  ['B', 'dma'],
  ['A', 'rw'],
  ['B', 'unmap'],
];

/** The same table with every CPU access bracketed by begin/end_cpu_access. */
export function bracketed(table: Table): Table {
  return table.map(([who, op]) => [who, op === 'rw' ? 'rw-bracketed' : op] as const);
}

interface Driver {
  dev: Device;
  at: DmaBufAttachment;
  sgt: SgTable | null;
  /** The 64 bytes of the buffer this driver works on. */
  off: number;
  gen: number;
}

export interface TableRun {
  /** Finding codes raised at each step (1-based), steps without findings left out. */
  steps: Record<number, string[]>;
  /** Steps whose map or begin_cpu_access the exporter refused, with the errno. */
  refused: Record<number, number>;
}

function firstDma(sgt: SgTable): number {
  for (const sg of forEachSgtableDmaSg(sgt)) return sg.dmaAddress;
  throw new Error('empty table');
}

/**
 * Plays `table` with two drivers A and B (devices devA, devB) attached to
 * `db`. CPU access goes through the buffer's vmap; a device's DMA reads
 * and writes its driver's 64 bytes. A driver whose map was refused has no
 * mapping, so its later DMA and unmap do not happen; a refused bracket
 * means no CPU access.
 */
export function runTable(m: Machine, db: DmaBuf, table: Table): TableRun {
  const map = dmaBufVmapUnlocked(db) as IosysMap;
  const d = {} as Record<'A' | 'B', Driver>;
  for (const [name, off] of [
    ['A', 0],
    ['B', 64],
  ] as const) {
    const dev = addDevice(m, { name: `dev${name}` });
    d[name] = { dev, at: dmaBufAttach(db, dev) as DmaBufAttachment, sgt: null, off, gen: 0 };
  }
  const steps: Record<number, string[]> = {};
  const refused: Record<number, number> = {};
  table.forEach(([who, op], i) => {
    const drv = d[who];
    const before = machineFindings(m).length;
    switch (op) {
      case 'rw':
      case 'rw-bracketed': {
        if (op === 'rw-bracketed') {
          const r = dmaBufBeginCpuAccess(db, DMA_BIDIRECTIONAL);
          if (r !== 0) {
            refused[i + 1] = r;
            break;
          }
        }
        kernelRead(m, map.vaddr, 128);
        drv.gen++;
        kernelWrite(m, map.vaddr + drv.off, new Uint8Array(64).fill(0x10 * drv.gen + (who === 'A' ? 1 : 2)));
        if (op === 'rw-bracketed') dmaBufEndCpuAccess(db, DMA_BIDIRECTIONAL);
        break;
      }
      case 'map': {
        const r = dmaBufMapAttachmentUnlocked(drv.at, DMA_BIDIRECTIONAL);
        if (typeof r === 'number') refused[i + 1] = r;
        else drv.sgt = r;
        break;
      }
      case 'dma': {
        if (drv.sgt === null) break;
        const bus = firstDma(drv.sgt) + drv.off;
        deviceDmaRead(drv.dev, bus, 64);
        deviceDmaWrite(drv.dev, bus, new Uint8Array(64).fill(who === 'A' ? 0xa0 + i : 0xb0 + i));
        break;
      }
      case 'unmap':
        if (drv.sgt === null) break;
        dmaBufUnmapAttachmentUnlocked(drv.at, drv.sgt, DMA_BIDIRECTIONAL);
        drv.sgt = null;
        break;
    }
    const codes = machineFindings(m)
      .slice(before)
      .map((f) => f.code);
    if (codes.length > 0) steps[i + 1] = codes;
  });
  return { steps, refused };
}
