import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { gpuRig, mapBo, newBo } from '../../test/bo-kit.js';
import {
  advanceTime,
  drmGemHandleDelete,
  fget,
  fputFile,
  GPU_GEM_DOMAIN_CPU,
  GPU_GEM_DOMAIN_GTT,
  GPU_GEM_DOMAIN_VRAM,
  gpuBoPlacementFromDomain,
  machineFindings,
  PAGE_SIZE,
  processPtes,
  sysMunmap,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
  type TtmBufferObject,
  ttmBoEvictFirst,
  ttmBoReserve,
  ttmBoSwapout,
  ttmBoUnreserve,
  ttmBoValidate,
  ttmOperationCtx,
  userRead,
  userWrite,
  vmaLookup,
} from '../index.js';

const P = PAGE_SIZE;
const DOMAINS = [
  GPU_GEM_DOMAIN_VRAM,
  GPU_GEM_DOMAIN_GTT,
  GPU_GEM_DOMAIN_CPU,
  GPU_GEM_DOMAIN_VRAM | GPU_GEM_DOMAIN_GTT,
];

type Op =
  | { k: 'create'; pages: number; domain: number }
  | { k: 'touch'; bo: number; page: number; byte: number }
  | { k: 'evict'; memType: number }
  | { k: 'migrate'; bo: number; domain: number }
  | { k: 'swapout'; pages: number }
  | { k: 'destroy'; bo: number }
  | { k: 'time'; ns: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant('create' as const),
    pages: fc.integer({ min: 1, max: 5 }),
    domain: fc.constantFrom(...DOMAINS),
  }),
  fc.record({
    k: fc.constant('touch' as const),
    bo: fc.nat(),
    page: fc.nat(),
    byte: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({
    k: fc.constant('touch' as const),
    bo: fc.nat(),
    page: fc.nat(),
    byte: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ k: fc.constant('evict' as const), memType: fc.constantFrom(TTM_PL_VRAM, TTM_PL_TT) }),
  fc.record({ k: fc.constant('migrate' as const), bo: fc.nat(), domain: fc.constantFrom(...DOMAINS) }),
  fc.record({ k: fc.constant('swapout' as const), pages: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ k: fc.constant('destroy' as const), bo: fc.nat() }),
  fc.record({ k: fc.constant('time' as const), ns: fc.integer({ min: 0, max: 20_000 }) }),
);

interface Live {
  bo: TtmBufferObject;
  va: number;
  bytes: Uint8Array;
  handle: number;
}

/** What the runs exercised (so a run where nothing moves cannot pass unnoticed). */
const seen: Record<string, number> = {};

function run(profile: string, ops: Op[]): void {
  const rig = gpuRig(profile, { vramBytes: 12 * P, gttBytes: 8 * P, ttPagesLimit: 24, copyNsPerPage: 700 });
  const live: Live[] = [];
  const destroyed: TtmBufferObject[] = [];
  let handles = 0;
  rig.m.bus.on('bo-move', (ev) => {
    seen[ev.reason] = (seen[ev.reason] ?? 0) + 1;
    if (ev.from === 'vram' || ev.to === 'vram') seen.copies = (seen.copies ?? 0) + 1;
  });
  const pick = (i: number) => (live.length === 0 ? undefined : live[i % live.length]);
  for (const o of ops) {
    switch (o.k) {
      case 'create': {
        const bo = newBo(rig, o.pages, o.domain);
        live.push({ bo, va: mapBo(rig, bo), bytes: new Uint8Array(o.pages * P), handle: ++handles });
        break;
      }
      case 'touch': {
        const l = pick(o.bo);
        if (l === undefined) break;
        const off = (o.page % (l.bytes.length / P)) * P + (o.byte % 61);
        userWrite(rig.app, l.va + off, new Uint8Array([o.byte]));
        l.bytes[off] = o.byte;
        break;
      }
      case 'evict':
        ttmBoEvictFirst(rig.gpu, o.memType, ttmOperationCtx());
        break;
      case 'migrate': {
        const l = pick(o.bo);
        if (l === undefined) break;
        expect(ttmBoReserve(l.bo, true, false)).toBe(0);
        const r = ttmBoValidate(l.bo, gpuBoPlacementFromDomain(o.domain), ttmOperationCtx());
        ttmBoUnreserve(l.bo);
        expect([0, -12]).toContain(r); // 0 or -ENOMEM when nothing can make room
        break;
      }
      case 'swapout':
        ttmBoSwapout(rig.gpu, ttmOperationCtx(), TTM_PL_SYSTEM, 0, o.pages * P);
        break;
      case 'destroy': {
        const l = pick(o.bo);
        if (l === undefined) break;
        live.splice(live.indexOf(l), 1);
        expect(sysMunmap(rig.app, l.va, l.bytes.length)).toBe(0);
        const file = fget(rig.app, rig.fd)!;
        expect(drmGemHandleDelete(file, l.handle)).toBe(0);
        fputFile(file);
        destroyed.push(l.bo);
        break;
      }
      case 'time':
        advanceTime(rig.m, o.ns);
        break;
    }
    // Every present PTE of the process points at the current backing of the object its VMA maps.
    for (const [va, pte] of processPtes(rig.app)) {
      const l = live.find((x) => va >= x.va && va < x.va + x.bytes.length);
      expect(l, `a PTE at ${va.toString(16)} outside every live object`).toBeDefined();
      expect(pte.pfn).toBe(l!.bo.pfns[(va - l!.va) / P]);
    }
    // No frame backs two objects.
    const frames = live.flatMap((l) => l.bo.pfns.filter((f) => f >= 0));
    expect(new Set(frames).size).toBe(frames.length);
  }
  // Every object still holds exactly its bytes, read through the same pointer.
  for (const l of live) expect(userRead(rig.app, l.va, l.bytes.length)).toEqual(l.bytes);
  advanceTime(rig.m, 1_000_000);
  // Live objects keep their mappings; destroyed ones are freed once their moves are done.
  for (const l of live) expect(vmaLookup(rig.app, l.va)).not.toBeNull();
  for (const bo of destroyed) expect(bo.alive).toBe(false);
  seen.destroyed = (seen.destroyed ?? 0) + destroyed.length;
  expect(machineFindings(rig.m)).toEqual([]);
}

describe('buffer objects under random create/map/touch/evict/migrate/swap/destroy', () => {
  it('never lose or duplicate an object’s bytes, never leave a PTE at memory the object does not own (x86_64)', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 20, maxLength: 40 }), (ops) => run('x86_64', ops)),
      { numRuns: 10, seed: 4 },
    );
  });
  it('the same on arm64-noncoherent and parisc', () => {
    for (const profile of ['arm64-noncoherent', 'parisc']) {
      fc.assert(
        fc.property(fc.array(op, { minLength: 15, maxLength: 30 }), (ops) => run(profile, ops)),
        { numRuns: 4, seed: 5 },
      );
    }
  });
  // Counted over both runs above, so checked once they are done whatever the order.
  afterAll(() => {
    for (const k of ['evict', 'validate', 'swapout', 'populate', 'copies', 'destroyed'])
      expect(seen[k] ?? 0).toBeGreaterThan(5);
  });
});
