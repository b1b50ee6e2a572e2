import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PROFILE_NAMES } from '../../machine/index.js';
import { describeExpectation, runMatrix, runScenario, scenarioReportJson } from '../index.js';
import { SCENARIO_FILES } from './files.js';
import { builtinScenarios, CATALOGUE } from './index.js';

const root = new URL('../../../', import.meta.url);

const S = 'STALE_DATA';
const A = 'ATTR_ALIAS';
const U = 'DMA_UNREACHABLE';
const I = 'IOMMU_FAULT';
const M = 'UNMAPPED_DMA';
const O = 'OWNERSHIP';
const C = 'DMA_CACHELINE_OVERLAP';
const UN = 'DMABUF_UNORDERED';

/** Exact findings per profile, as code lists in the order raised: the seed suite's pinned behaviour. */
const EXPECTED: Record<string, Record<string, string[]>> = {
  'sound-ring-mmap-remap': { parisc: [S, S, S] },
  'sound-ring-mmap-fault': { parisc: [S, S, S] },
  'sound-ring-mmap-congruent': {},
  'sound-ring-mmap-coherence-index': {},
  'sound-ring-mmap-refuse': {},
  'via-sg-buffer-nopage': {
    'arm64-noncoherent': [A, A, A, A, S, S],
    parisc: [S, S],
    'parisc-pcxl': [A, A, A, A, S, S],
  },
  'via-sg-buffer-dma-pgprot': { parisc: [S, S] },
  'pageless-dma-to-pmem': { parisc: [S], 'parisc-pcxl': [S] },
  'pageless-dma-to-pmem-ci-user': {},
  'pageless-dma-to-ioremap': {},
  'sg-rx-read-before-sync': {
    x86_64: [O],
    'arm64-coherent': [O],
    'arm64-noncoherent': [O, S, S],
    parisc: [O],
    'parisc-pcxl': [O],
    'swiotlb-force': [O, S, S],
  },
  'sg-rx-sync-for-cpu': {},
  'sg-page-list-cpu-iterator': {
    x86_64: [U, U, U],
    'arm64-coherent': [U, U, U],
    'arm64-noncoherent': [U, U, U],
    parisc: [I, I, I],
    'parisc-pcxl': [U, U, U],
    'swiotlb-force': [U, U, U],
  },
  'sg-page-list-dma-iterator': {},
  'gpu-virt-to-phys': {
    x86_64: [M, M],
    'arm64-coherent': [M, M],
    'arm64-noncoherent': [M, S, M],
    parisc: [I],
    'parisc-pcxl': [M, S, M],
    'swiotlb-force': [M, M],
  },
  'gpu-refuses-without-coherence': {},
  'gpu-require-coherent': {},
  'display-low-1g-green-frame': {
    x86_64: ['WARN'],
    'arm64-coherent': [O, S],
    'arm64-noncoherent': [O, S],
    parisc: [O],
    'parisc-pcxl': ['WARN'],
    'swiotlb-force': ['WARN'],
  },
  'rdma-user-mr-noncoherent': {
    x86_64: [O],
    'arm64-coherent': [O],
    'arm64-noncoherent': [O, S],
    parisc: [O],
    'parisc-pcxl': [O],
    'swiotlb-force': [O, S],
  },
  'dmabuf-mmap-write-unbracketed': {
    x86_64: [O],
    'arm64-coherent': [O],
    'arm64-noncoherent': [O, S, S, S, S],
    parisc: [O, S, S],
    'parisc-pcxl': [O, S, S, S, S],
    'swiotlb-force': [O, S, S, S, S],
  },
  'dmabuf-mmap-write-bracketed': { parisc: [S, S], 'parisc-pcxl': [S, S, S, S] },
  'dmabuf-two-driver-table': {
    x86_64: [O, O, O, O],
    'arm64-coherent': [O, O, O, O],
    'arm64-noncoherent': [O, O, O, O, O, S],
    parisc: [O, O, S, C, O, S, S, S, O, S, O, S],
    'parisc-pcxl': [O, O, S, C, C, C, C, O, S, S, S, O, S, O, S],
    'swiotlb-force': [O, O, O, S, O, S],
  },
  'dmabuf-two-driver-exclusive': {},
  // One stale read per page: the display's bounce slots were filled before the camera wrote.
  'dmabuf-fence-implicit-ordered': { 'swiotlb-force': [S, S, S, S] },
  // One unordered pair per page (a job per DMA segment; parisc's IOMMU merges them into one job).
  'dmabuf-fence-implicit-missing': Object.fromEntries(PROFILE_NAMES.map((p) => [p, [UN, UN, UN, UN]])),
  'dmabuf-fence-explicit-sync-file': { 'swiotlb-force': [S, S, S, S] },
  'bo-migrate-under-mapping': {},
  'bo-migrate-stale-pte': Object.fromEntries(PROFILE_NAMES.map((p) => [p, ['BO_STALE_PTE', 'BO_STALE_PTE']])),
};

describe('the seed suite', () => {
  const suite = builtinScenarios();
  const matrix = runMatrix(suite);

  it('is the catalogue, in order, and every case is pinned here', () => {
    expect(suite.map((s) => s.name)).toEqual(CATALOGUE);
    expect(Object.keys(EXPECTED)).toEqual(CATALOGUE);
  });

  for (const row of matrix.rows) {
    it(`${row.scenario}: exact findings and verdict per profile`, () => {
      const want = EXPECTED[row.scenario]!;
      for (const cell of row.cells) {
        expect(
          cell.findings.map((f) => f.code),
          `${row.scenario} on ${cell.profile}`,
        ).toEqual(want[cell.profile] ?? []);
        expect(cell.matches, `${row.scenario} on ${cell.profile}: ${cell.bytes?.detail}`).toBe(true);
      }
    });
  }

  it('the parisc alias case shows the lost bytes and where the profiles part ways', () => {
    const row = matrix.rows.find((r) => r.scenario === 'sound-ring-mmap-remap')!;
    const parisc = row.cells.find((c) => c.profile === 'parisc')!;
    expect(parisc.verdict).toBe('broken');
    expect(parisc.bytes).toEqual({
      ok: false,
      detail:
        'scenarios/sound-ring-mmap-remap.yaml:29: snd reads 64 at 0x11000 (ring): expected 0x11 × 64, got 0x00 at byte 0',
    });
    expect(parisc.explanation).toMatch(/^STALE_DATA: .*snd read 64 bytes at bus address 0x11000/);
    expect(row.divergence).toEqual({ step: 9, call: 'device read by snd' });
    const x86 = row.cells.find((c) => c.profile === 'x86_64')!;
    expect(x86.bytes).toEqual({ ok: true, detail: '3 byte condition(s) hold' });
    expect(x86.timeline.map((t) => `${t.agent}: ${t.op}`)).toContain('codec: signal played');
  });

  it('profiles that number their steps differently but read the same bytes do not diverge', () => {
    // parisc's IOMMU merges the receive buffer's pages into one DMA segment: fewer device jobs, so
    // fewer steps before the driver reads the packet, which is the same everywhere.
    const rx = matrix.rows.find((r) => r.scenario === 'sg-rx-sync-for-cpu')!;
    expect(rx.cells.every((c) => c.verdict === 'clean' && c.matches)).toBe(true);
    expect(rx.divergence).toBeNull();
    // The broken variant parts ways at the driver's early read, numbered as x86_64 numbers it (four
    // device jobs, one per segment, before it; parisc makes one and reads at step 12).
    expect(matrix.rows.find((r) => r.scenario === 'sg-rx-read-before-sync')!.divergence).toEqual({
      step: 18,
      call: 'kernelRead',
    });
  });

  it('same scenario, same seed: byte-identical JSON across runs', () => {
    const again = runMatrix(suite);
    expect(scenarioReportJson(again)).toBe(scenarioReportJson(matrix));
    expect(scenarioReportJson(matrix)).not.toMatch(/\/work\/|file:|stack/);
  });

  it('keeps every expectation under another seed, and a recorded schedule replays the run exactly', () => {
    const other = runMatrix(suite, { seed: 3 });
    const misses = other.rows.flatMap((r) =>
      r.cells.filter((c) => !c.matches).map((c) => `${c.scenario}@${c.profile}`),
    );
    expect(misses).toEqual([]);
    const s = suite.find((x) => x.name === 'dmabuf-two-driver-table')!;
    const first = runScenario(s, { profile: 'arm64-noncoherent', seed: 3 });
    const replay = runScenario(s, { profile: 'arm64-noncoherent', seed: 3, schedule: first.schedule });
    expect(scenarioReportJson([replay])).toBe(scenarioReportJson([first]));
    expect(first.schedule.length).toBeGreaterThan(first.timeline.length / 2);
  });

  it('embeds scenarios/ exactly as the files are (run tools/embed-scenarios.ts after an edit)', () => {
    const files = readdirSync(new URL('scenarios/', root))
      .filter((f) => f.endsWith('.yaml'))
      .sort();
    expect(SCENARIO_FILES.map((f) => f.path)).toEqual(files.map((f) => `scenarios/${f}`));
    for (const f of SCENARIO_FILES) expect(f.text, f.path).toBe(readFileSync(new URL(f.path, root), 'utf8'));
  });

  it('the catalogue README lists every case with its expected verdicts', () => {
    const readme = readFileSync(new URL('scenarios/README.md', root), 'utf8');
    for (const s of suite) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${s.name}\` |`));
      expect(row, s.name).toBeDefined();
      expect(row!.endsWith(` | ${describeExpectation(s)} |`), `${row} vs ${describeExpectation(s)}`).toBe(
        true,
      );
    }
    expect(describeExpectation(suite[0]!)).toBe('broken on parisc; clean elsewhere');
  });
});
