import { describe, expect, it } from 'vitest';
import { createMachine } from '../../boot.js';
import {
  allocPages,
  cpuRead,
  GFP_KERNEL,
  type KernelVa,
  linearVirtToPhys,
  machineFindings,
  PAGE_OFFSET,
  PAGE_SIZE,
  type Page,
  pageToPfn,
} from '../../machine/index.js';
import { sgCopyFromBuffer } from './copy.js';
import {
  SG_MITER_ATOMIC,
  SG_MITER_FROM_SG,
  SG_MITER_TO_SG,
  sgMiterNext,
  sgMiterSkip,
  sgMiterStart,
  sgMiterStop,
} from './miter.js';
import {
  createScatterlist,
  type Scatterlist,
  sgAt,
  sgInitTable,
  sgSetPage,
  sgSetPfn,
} from './scatterlist.js';

const P = PAGE_SIZE;

function setup(): { m: ReturnType<typeof createMachine>; base: number; sgl: Scatterlist } {
  const m = createMachine({ ramBytes: 32 << 20 });
  const base = pageToPfn(allocPages(m, GFP_KERNEL, 4)!);
  const sgl = createScatterlist(2);
  sgInitTable(sgl, 2);
  sgSetPage(sgl, base as Page, P + 200, 3000); // two pieces: 1096 bytes, then 3200
  sgSetPage(sgAt(sgl, 1), (base + 8) as Page, 10, P + 5); // one 10-byte piece in the second page
  return { m, base, sgl };
}

describe('sg_miter', () => {
  it('maps each page piece in turn: page, addr and length', () => {
    const { m, base, sgl } = setup();
    const mi = sgMiterStart(m, sgl, 2, SG_MITER_FROM_SG);
    const pieces: [number | null, number, number][] = [];
    while (sgMiterNext(mi)) pieces.push([mi.page, mi.addr! - PAGE_OFFSET, mi.length]);
    sgMiterStop(mi);
    expect(pieces).toEqual([
      [base, base * P + 3000, P - 3000],
      [base + 1, (base + 1) * P, 3200],
      [base + 9, (base + 9) * P + 5, 10], // whole pages inside the offset are skipped
    ]);
    expect(mi.page).toBeNull();
    expect(mi.addr).toBeNull();
    expect(machineFindings(m)).toEqual([]);
  });

  it('lets the caller consume less than a piece, and resumes after a stop', () => {
    const { m, base, sgl } = setup();
    const mi = sgMiterStart(m, sgl, 2, SG_MITER_FROM_SG | SG_MITER_ATOMIC);
    expect(sgMiterNext(mi)).toBe(true);
    mi.consumed = 96;
    expect(sgMiterNext(mi)).toBe(true);
    expect(mi.addr! - PAGE_OFFSET).toBe(base * P + 3096);
    expect(mi.length).toBe(P - 3096);
    mi.consumed = 4;
    sgMiterStop(mi);
    expect(sgMiterNext(mi)).toBe(true);
    expect(mi.addr! - PAGE_OFFSET).toBe(base * P + 3100);
    // Skip first releases the mapped piece (all 996 bytes consumed), then moves 100 bytes on unmapped.
    expect(sgMiterSkip(mi, 100)).toBe(true);
    expect(sgMiterNext(mi)).toBe(true);
    expect(mi.addr! - PAGE_OFFSET).toBe((base + 1) * P + 100);
    expect(mi.length).toBe(3100);
    expect(sgMiterSkip(mi, 1_000_000)).toBe(false);
    expect(sgMiterNext(mi)).toBe(false);
  });

  it('counts a step per call and gives addresses the CPU can use', () => {
    const { m, sgl } = setup();
    const src = new Uint8Array(P + 210).map((_, i) => i & 0xff);
    sgCopyFromBuffer(m, sgl, 2, src, src.length);
    const step = m.clock.step;
    const mi = sgMiterStart(m, sgl, 2, SG_MITER_FROM_SG);
    sgMiterNext(mi);
    const got = new Uint8Array(4);
    const va = mi.addr as KernelVa;
    cpuRead(m, linearVirtToPhys(va), va, 'cached', got, 0, 4);
    expect([...got]).toEqual([0, 1, 2, 3]);
    sgMiterStop(mi);
    expect(m.clock.step).toBe(step + 3);
  });

  it('WARNs without a direction flag and when more was consumed than mapped', () => {
    const { m, sgl } = setup();
    const mi = sgMiterStart(m, sgl, 2, SG_MITER_ATOMIC);
    expect(machineFindings(m).map((f) => [f.code, f.message])).toEqual([
      ['WARN', 'WARNING: sg_miter_start: neither SG_MITER_TO_SG nor SG_MITER_FROM_SG given'],
    ]);
    sgMiterNext(mi);
    mi.consumed = mi.length + 1;
    sgMiterStop(mi);
    expect(machineFindings(m)[1]).toMatchObject({ code: 'WARN', verdict: 'api', call: 'sg_miter_stop' });
  });

  it('oopses instead of mapping a page-less entry, and goes no further', () => {
    const m = createMachine({ ramBytes: 32 << 20, pagelessSg: true });
    const sgl = createScatterlist(2);
    sgInitTable(sgl, 2);
    sgSetPfn(sgl, 0x40000, 100, 0);
    sgSetPage(sgAt(sgl, 1), pageToPfn(allocPages(m, GFP_KERNEL, 0)!) as Page, 100, 0);
    const mi = sgMiterStart(m, sgl, 2, SG_MITER_TO_SG);
    expect(sgMiterSkip(mi, 50)).toBe(true); // skipping maps nothing
    expect(sgMiterNext(mi)).toBe(false);
    expect(sgMiterNext(mi)).toBe(false);
    expect(machineFindings(m).map((f) => [f.code, f.call])).toEqual([['OOPS', 'sg_miter_next']]);
  });
});
