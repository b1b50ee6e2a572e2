import { describe, expect, it } from 'vitest';
import { buffer, codes, emitIn, kread, kwrite, machine } from '../../test/debug-kit.js';
import {
  cacheFlush,
  cpuRead,
  cpuWrite,
  type Machine,
  machineFindings,
  PAGE_OFFSET,
  PAGE_SIZE,
  runVerdict,
  withAgent,
} from '../machine/index.js';

const USER_VA = 0x7f00_0000_0000;

/** What mm's remap_pfn_range with an uncached prot will emit: a user PTE for the page. */
function mapToUser(m: Machine, pa: number, attr: 'uncached' | 'write-combine' | 'cached'): void {
  emitIn(m, 'remap_pfn_range', {
    type: 'pte-install',
    mm: 2,
    owner: 'camapp',
    va: USER_VA,
    pfn: pa / PAGE_SIZE,
    pages: 1,
    attr,
    write: true,
    special: true,
    reason: 'remap',
  });
}

function userRead(
  m: Machine,
  pa: number,
  attr: 'uncached' | 'write-combine' | 'cached',
  len: number,
): number[] {
  const out = new Uint8Array(len);
  withAgent(m, 'camapp', () => cpuRead(m, pa, USER_VA, attr, out, 0, len));
  return [...out];
}

describe('memory-attribute aliases', () => {
  const run = (profile: string) => {
    const { m } = machine(profile);
    const buf = buffer(m);
    const pa = buf - PAGE_OFFSET;
    kwrite(m, buf, [0xde, 0xad, 0xbe, 0xef]); // dirty lines of the cached kernel alias
    mapToUser(m, pa, 'uncached');
    return { m, seen: userRead(m, pa, 'uncached', 4), pa };
  };

  it('a page mapped uncached to user space over dirty kernel-alias lines: latent on x86_64 (uncached accesses snoop)', () => {
    const { m, seen, pa } = run('x86_64');
    expect(seen).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect(codes(m)).toEqual(['ATTR_ALIAS']);
    const f = machineFindings(m)[0]!;
    expect(f.message).toBe(
      `dmalab: uncached camapp user mapping at 0x${USER_VA.toString(16)} created while dirty cache lines of a cached alias remain [pfn=0x${(pa / PAGE_SIZE).toString(16)}] [pages with dirty lines=1]: a later write-back overwrites what is written through the uncached view, and uncached reads miss the dirty bytes; write back and invalidate the cached alias first (arch_dma_prep_coherent)`,
    );
    expect(f.details).toMatchObject({
      kind: 'dirty-lines',
      pages: 1,
      view: { owner: 'camapp', attr: 'uncached' },
    });
    expect(runVerdict(m)).toBe('latent');
  });

  it('the same on arm64-noncoherent corrupts what the process sees: broken', () => {
    const { m, seen } = run('arm64-noncoherent');
    expect(seen).toEqual([0, 0, 0, 0]);
    expect(codes(m)).toEqual(['ATTR_ALIAS', 'STALE_DATA']);
    expect(machineFindings(m)[1]!.details).toMatchObject({
      reader: { agent: 'camapp', attr: 'uncached' },
      hiddenWrite: { agent: 'kernel', kind: 'cpu' },
      hiddenBy: { cause: 'dirty-line-of-cached-alias' },
    });
    expect(runVerdict(m)).toBe('broken');
  });

  it('a later write-back of the cached alias overwrites what the process wrote uncached', () => {
    const { m, pa } = run('arm64-noncoherent');
    withAgent(m, 'camapp', () => cpuWrite(m, pa, USER_VA, 'uncached', new Uint8Array([1, 2, 3, 4]), 0, 4));
    cacheFlush(m, pa, PAGE_SIZE); // an eviction, a flush: the stale line goes back to memory
    expect(userRead(m, pa, 'uncached', 4)).toEqual([0xde, 0xad, 0xbe, 0xef]);
    const last = machineFindings(m).at(-1)!;
    expect(last.details).toMatchObject({
      hiddenWrite: { agent: 'camapp' },
      hiddenBy: { cause: 'written-back-over' },
    });
  });

  it('a cached access to a page that has a live uncached view, and mixed views', () => {
    const { m } = machine('arm64-noncoherent');
    const buf = buffer(m);
    const pa = buf - PAGE_OFFSET;
    mapToUser(m, pa, 'write-combine');
    expect(codes(m)).toEqual([]);
    kread(m, buf, 4);
    kread(m, buf + 64, 4); // once per page until the views change
    expect(machineFindings(m).map((f) => f.details?.kind)).toEqual(['cached-access']);
    expect(machineFindings(m)[0]!.message).toContain(
      'to a page that has a write-combine camapp user mapping at',
    );
    emitIn(m, 'vmap', {
      type: 'pte-install',
      mm: 0,
      owner: 'kernel',
      va: 2 ** 52 + 2 ** 49,
      pfn: pa / PAGE_SIZE,
      pages: 1,
      attr: 'cached',
      write: true,
      special: true,
      reason: 'vmap',
    });
    expect(machineFindings(m).map((f) => f.details?.kind)).toEqual(['cached-access', 'mismatched-views']);
  });

  it('is silent when the cached alias is flushed first and only the uncached view is used', () => {
    for (const profile of ['x86_64', 'arm64-noncoherent', 'parisc']) {
      const { m } = machine(profile);
      const buf = buffer(m);
      const pa = buf - PAGE_OFFSET;
      kwrite(m, buf, [1, 2, 3, 4]);
      cacheFlush(m, pa, PAGE_SIZE); // arch_dma_prep_coherent
      mapToUser(m, pa, 'uncached');
      withAgent(m, 'camapp', () => cpuWrite(m, pa, USER_VA, 'uncached', new Uint8Array([5]), 0, 1));
      expect(userRead(m, pa, 'uncached', 4), profile).toEqual([5, 2, 3, 4]);
      emitIn(m, 'munmap', {
        type: 'pte-remove',
        mm: 2,
        owner: 'camapp',
        va: USER_VA,
        pfn: pa / PAGE_SIZE,
        pages: 1,
        attr: 'uncached',
        special: true,
        reason: 'munmap',
      });
      kread(m, buf, 1); // no uncached view any more: the kernel may use its alias again
      expect(codes(m), profile).toEqual([]);
    }
  });
});
