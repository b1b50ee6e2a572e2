import { describe, expect, it } from 'vitest';
import { explainSemantics, type SemanticsRow } from './explain.js';

/**
 * The per-architecture cache maintenance table of the kernel digest
 * (reference/dma-api-semantics.md §5a, `arch_sync_dma_for_device` /
 * `_for_cpu`), rows for the architectures dmalab models, as written there.
 * Columns: for_device TO, FROM, BIDIR, then for_cpu TO, FROM, BIDIR.
 */
const DIGEST_5A = `
| arm64 | clean to PoC | clean to PoC | clean to PoC | none | invalidate to PoC | invalidate |
| parisc PA1.1 (pcxl) | \`fdc\` flush = write back if dirty + invalidate (all dirs) | same | same | flush (wb+inv) | purge (\`pdc\`: invalidate without write-back) | flush |
| x86 | coherent: no ops (dev_is_dma_coherent always true) | | | | | |
`;

/** The digest's words for an operation, in the model's vocabulary ('' = nothing). */
function digestOp(cell: string, previous: string): string {
  const c = cell.trim();
  if (c === 'same') return previous;
  if (c === '' || c === 'none' || c.startsWith('coherent: no ops')) return '';
  if (c.startsWith('clean')) return 'clean';
  if (c.startsWith('invalidate') || c.startsWith('purge')) return 'invalidate';
  if (c.includes('flush')) return 'flush';
  throw new Error(`unread digest cell '${c}'`);
}

function digestRow(arch: string): string[] {
  const line = DIGEST_5A.split('\n').find((l) => l.startsWith(`| ${arch} `));
  if (line === undefined) throw new Error(`no §5a row for ${arch}`);
  const cells = line.split('|').slice(2, 8);
  const out: string[] = [];
  for (const c of cells) out.push(digestOp(c, out[out.length - 1] ?? ''));
  return out;
}

const DIRS = ['DMA_TO_DEVICE', 'DMA_FROM_DEVICE', 'DMA_BIDIRECTIONAL'];

/** The model's six cells for a profile, read from `explain` rows of the given calls. */
function modelRow(rows: readonly SemanticsRow[], forDevice: string, forCpu: string): string[] {
  const cell = (call: string, dir: string) => {
    const r = rows.find((x) => x.call === call && x.dir === dir && x.size === 4096);
    if (r === undefined) throw new Error(`no row ${call} ${dir}`);
    return r.cache.map((c) => c.op).join('+');
  };
  return [...DIRS.map((d) => cell(forDevice, d)), ...DIRS.map((d) => cell(forCpu, d))];
}

describe('explainSemantics agrees with the digest §5a', () => {
  const cases = [
    ['arm64', 'arm64-noncoherent'],
    ['x86', 'x86_64'],
    ['parisc PA1.1 (pcxl)', 'parisc-pcxl'],
  ] as const;
  for (const [arch, profile] of cases) {
    it(`${arch} (${profile}): syncs, and map/unmap which sync the same way`, () => {
      const rows = explainSemantics({ profiles: [profile] });
      const want = digestRow(arch);
      expect(modelRow(rows, 'dma_sync_single_for_device', 'dma_sync_single_for_cpu')).toEqual(want);
      expect(modelRow(rows, 'dma_map_single', 'dma_unmap_single')).toEqual(want);
    });
  }

  it('reads the digest as expected (the test is not vacuous)', () => {
    expect(digestRow('arm64')).toEqual(['clean', 'clean', 'clean', '', 'invalidate', 'invalidate']);
    expect(digestRow('x86')).toEqual(['', '', '', '', '', '']);
    expect(digestRow('parisc PA1.1 (pcxl)')).toEqual([
      'flush',
      'flush',
      'flush',
      'flush',
      'invalidate',
      'flush',
    ]);
  });
});

describe('explainSemantics: bounces, attributes, mappings', () => {
  const rows = explainSemantics({
    profiles: ['swiotlb-force', 'arm64-noncoherent', 'parisc', 'parisc-pcxl'],
    calls: [
      'dma_map_single',
      'dma_unmap_single',
      'dma_map_single_attrs',
      'dma_alloc_coherent',
      'dma_mmap_coherent',
    ],
  });
  const find = (profile: string, call: string, dir: string | null, attrs = '', size = 4096) => {
    const r = rows.find(
      (x) =>
        x.profile === profile && x.call === call && x.dir === dir && x.attrs === attrs && x.size === size,
    );
    if (r === undefined) throw new Error(`no row ${profile} ${call} ${dir} ${attrs}`);
    return r;
  };

  it('swiotlb=force copies into the slot at every map and back out only towards the CPU', () => {
    for (const d of DIRS) expect(find('swiotlb-force', 'dma_map_single', d).bounce).toEqual(['to-slot']);
    expect(find('swiotlb-force', 'dma_map_single', 'DMA_TO_DEVICE').result).toBe('dma-direct + swiotlb');
    expect(find('swiotlb-force', 'dma_unmap_single', 'DMA_TO_DEVICE').bounce).toEqual([]);
    expect(find('swiotlb-force', 'dma_unmap_single', 'DMA_FROM_DEVICE').bounce).toEqual(['from-slot']);
    expect(find('swiotlb-force', 'dma_unmap_single', 'DMA_BIDIRECTIONAL').bounce).toEqual(['from-slot']);
  });

  it('arm64 bounces a small kmalloc buffer for a non-coherent device, except towards the device', () => {
    expect(find('arm64-noncoherent', 'dma_map_single', 'DMA_TO_DEVICE', '', 64)).toMatchObject({
      cache: [{ op: 'clean', on: 'buffer' }],
      bounce: [],
      result: 'dma-direct',
    });
    expect(find('arm64-noncoherent', 'dma_map_single', 'DMA_FROM_DEVICE', '', 64)).toMatchObject({
      cache: [{ op: 'clean', on: 'slot' }],
      bounce: ['to-slot'],
      result: 'dma-direct + swiotlb',
    });
    expect(find('arm64-noncoherent', 'dma_unmap_single', 'DMA_FROM_DEVICE', '', 64)).toMatchObject({
      cache: [{ op: 'invalidate', on: 'slot' }],
      bounce: ['from-slot'],
    });
    expect(find('parisc-pcxl', 'dma_map_single', 'DMA_FROM_DEVICE', '', 64).bounce).toEqual([]);
  });

  it('DMA_ATTR_SKIP_CPU_SYNC skips the maintenance; DMA_ATTR_REQUIRE_COHERENT fails where coherence is missing', () => {
    expect(find('arm64-noncoherent', 'dma_map_single_attrs', 'DMA_TO_DEVICE', 'SKIP_CPU_SYNC').cache).toEqual(
      [],
    );
    const req = (p: string) =>
      find(p, 'dma_map_single_attrs', 'DMA_BIDIRECTIONAL', 'REQUIRE_COHERENT').result;
    expect(req('arm64-noncoherent')).toBe('DMA_MAPPING_ERROR');
    expect(req('swiotlb-force')).toBe('DMA_MAPPING_ERROR');
    expect(req('parisc')).toBe('sba');
  });

  it('coherent memory: prepared with a flush and mapped uncached where devices do not snoop', () => {
    const arm = find('arm64-noncoherent', 'dma_alloc_coherent', null);
    expect(arm.cache).toEqual([{ op: 'flush', on: 'buffer' }]);
    // arm64's pgprot_dmacoherent is Normal Non-Cacheable, the memory type of write-combine.
    expect(arm.mapping).toBe('write-combine');
    expect(find('parisc-pcxl', 'dma_alloc_coherent', null).mapping).toBe('uncached');
    expect(find('swiotlb-force', 'dma_alloc_coherent', null)).toMatchObject({ cache: [], mapping: 'cached' });
  });

  it('dma_mmap_coherent: refused on parisc with its IOMMU, remapped elsewhere', () => {
    expect(find('parisc', 'dma_mmap_coherent', null)).toMatchObject({
      result: '-ENXIO (refuse)',
      mapping: null,
    });
    expect(find('parisc-pcxl', 'dma_mmap_coherent', null)).toMatchObject({
      result: 'ok (remap)',
      mapping: 'uncached',
    });
  });

  it('scatter-gather: the IOMMU merges contiguous entries, dma-direct never does; each entry bounces on its own', () => {
    const sg = explainSemantics({
      profiles: ['parisc', 'x86_64', 'swiotlb-force', 'parisc-pcxl'],
      calls: ['dma_map_sg', 'dma_unmap_sg'],
    });
    const at = (p: string, call: string, dir: string) =>
      sg.find((r) => r.profile === p && r.call === call && r.dir === dir)!;
    expect(at('parisc', 'dma_map_sg', 'DMA_TO_DEVICE').result).toBe('sba: 2 entries → 1 segment');
    expect(at('x86_64', 'dma_map_sg', 'DMA_TO_DEVICE').result).toBe('dma-direct: 2 entries → 2 segments');
    expect(at('swiotlb-force', 'dma_map_sg', 'DMA_FROM_DEVICE').bounce).toEqual(['to-slot', 'to-slot']);
    expect(at('swiotlb-force', 'dma_unmap_sg', 'DMA_FROM_DEVICE').bounce).toEqual(['from-slot', 'from-slot']);
    expect(at('parisc-pcxl', 'dma_unmap_sg', 'DMA_FROM_DEVICE').cache).toEqual([
      { op: 'invalidate', on: 'buffer' },
    ]);
  });

  it('scatter-gather syncs: the same maintenance as the single syncs of §5a, and one bounce per entry', () => {
    const rows = explainSemantics({
      profiles: ['arm64-noncoherent', 'parisc-pcxl', 'x86_64'],
      calls: ['dma_sync_sg_for_cpu', 'dma_sync_sg_for_device'],
    });
    for (const [arch, profile] of [
      ['arm64', 'arm64-noncoherent'],
      ['parisc PA1.1 (pcxl)', 'parisc-pcxl'],
      ['x86', 'x86_64'],
    ] as const) {
      const mine = rows.filter((r) => r.profile === profile);
      const cell = (call: string, dir: string) =>
        mine
          .find((r) => r.call === call && r.dir === dir)!
          .cache.map((c) => c.op)
          .join('+');
      const model = [
        ...DIRS.map((d) => cell('dma_sync_sg_for_device', d)),
        ...DIRS.map((d) => cell('dma_sync_sg_for_cpu', d)),
      ];
      expect(model).toEqual(digestRow(arch));
    }
    const sw = explainSemantics({ profiles: ['swiotlb-force'], calls: ['dma_sync_sg_for_cpu'] });
    expect(sw.map((r) => r.bounce)).toEqual([[], ['from-slot', 'from-slot'], ['from-slot', 'from-slot']]);
  });

  it('rejects an unknown call or profile with a DmalabError', () => {
    expect(() => explainSemantics({ calls: ['dma_map_bogus'] })).toThrow(/unknown call 'dma_map_bogus'/);
    expect(() => explainSemantics({ profiles: ['vax'] })).toThrow(/unknown profile 'vax'/);
  });
});

describe('explainSemantics: dma-buf calls on a system-heap buffer', () => {
  const rows = explainSemantics({
    calls: ['dma_buf_map_attachment', 'dma_buf_begin_cpu_access', 'dma_buf_end_cpu_access', 'dma_map_sg'],
  });
  const ops = (profile: string, call: string, dir: string) =>
    rows.find((r) => r.profile === profile && r.call === call && r.dir === dir)!;

  it('begin_cpu_access syncs every mapped attachment for the CPU, end_cpu_access for its device (system_heap)', () => {
    expect(DIRS.map((d) => ops('arm64-noncoherent', 'dma_buf_begin_cpu_access', d).cache)).toEqual([
      [],
      [{ op: 'invalidate', on: 'buffer' }],
      [{ op: 'invalidate', on: 'buffer' }],
    ]);
    for (const d of DIRS) {
      expect(ops('arm64-noncoherent', 'dma_buf_end_cpu_access', d).cache).toEqual([
        { op: 'clean', on: 'buffer' },
      ]);
      expect(ops('x86_64', 'dma_buf_begin_cpu_access', d).cache).toEqual([]);
      expect(ops('parisc', 'dma_buf_end_cpu_access', d).cache).toEqual([]);
    }
    expect(ops('parisc-pcxl', 'dma_buf_begin_cpu_access', 'DMA_FROM_DEVICE').cache).toEqual([
      { op: 'invalidate', on: 'buffer' },
    ]);
    expect(DIRS.map((d) => ops('swiotlb-force', 'dma_buf_begin_cpu_access', d).bounce)).toEqual([
      [],
      ['from-slot'],
      ['from-slot'],
    ]);
    expect(DIRS.map((d) => ops('swiotlb-force', 'dma_buf_end_cpu_access', d).bounce)).toEqual([
      ['to-slot'],
      [],
      ['to-slot'],
    ]);
  });

  it('mapping an attachment maintains the caches as dma_map_sg does, on every profile', () => {
    for (const profile of new Set(rows.map((r) => r.profile))) {
      for (const d of DIRS) {
        const map = ops(profile, 'dma_buf_map_attachment', d);
        expect(map.result).toMatch(/^ok \(/);
        expect(map.cache).toEqual(ops(profile, 'dma_map_sg', d).cache);
      }
    }
    expect(ops('swiotlb-force', 'dma_buf_map_attachment', 'DMA_FROM_DEVICE')).toMatchObject({
      bounce: ['to-slot'],
      result: 'ok (dma-direct + swiotlb)',
    });
    expect(ops('parisc', 'dma_buf_map_attachment', 'DMA_TO_DEVICE').result).toBe('ok (sba)');
  });
});
