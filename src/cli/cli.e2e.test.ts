import { beforeAll, describe, expect, it } from 'vitest';
import { dmalab, ensureBuilt } from '../../test/cli-harness.js';

beforeAll(() => {
  ensureBuilt();
}, 120_000);

describe.concurrent('dmalab (built command, spawned)', () => {
  it('explain: the measured table for one profile and call, exit 0', async () => {
    const r = await dmalab(['explain', '--profile', 'arm64-noncoherent', 'dma_sync_single_for_cpu']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^arm64-noncoherent: /);
    expect(lines.find((l) => l.includes('DMA_FROM_DEVICE'))).toMatch(
      /^dma_sync_single_for_cpu +DMA_FROM_DEVICE +invalidate +— +ok$/,
    );
    expect(lines.find((l) => l.includes('DMA_TO_DEVICE'))).toMatch(
      /^dma_sync_single_for_cpu +DMA_TO_DEVICE +— +— +ok$/,
    );
  });

  it('explain --json: deterministic rows', async () => {
    const [a, b] = await Promise.all([
      dmalab(['explain', '--json', '-p', 'swiotlb-force', 'dmaUnmapSingle']),
      dmalab(['explain', '--json', '-p', 'swiotlb-force', 'dmaUnmapSingle']),
    ]);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const rows = JSON.parse(a.stdout);
    expect(rows.map((r: { dir: string; bounce: string[] }) => [r.dir, r.bounce])).toEqual([
      ['DMA_TO_DEVICE', []],
      ['DMA_FROM_DEVICE', ['from-slot']],
      ['DMA_BIDIRECTIONAL', ['from-slot']],
    ]);
  });

  it('usage errors exit 2 with one message and no stack', async () => {
    const cases: [string[], RegExp][] = [
      [
        ['explain', '--profile', 'vax'],
        /^dmalab: option '-p, --profile <name>' argument 'vax' is invalid\. unknown profile 'vax' \(known: x86_64, /,
      ],
      [['explain', 'dma_map_bogus'], /^dmalab: CALL: unknown call 'dma_map_bogus' \(known: dma_map_single, /],
      [['frobnicate'], /^dmalab: unknown command 'frobnicate'/],
      [['list', '--colour'], /^dmalab: unknown option '--colour'/],
    ];
    for (const [args, msg] of cases) {
      const r = await dmalab(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }
  });

  it('no command: usage on stderr, exit 2; --help and --version exit 0', async () => {
    const none = await dmalab([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^Usage: dmalab \[options\] \[command\]/);
    const help = await dmalab(['explain', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Examples:\n  $ dmalab explain\n');
    const version = await dmalab(['--version']);
    expect(version).toMatchObject({ code: 0, stdout: '0.1.0\n' });
  });

  it('list: the profiles, colourless when not a terminal even if FORCE_COLOR is set', async () => {
    const r = await dmalab(['list'], { env: { FORCE_COLOR: '1' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ {2}parisc-pcxl +PA-RISC 1\.1 PA7100LC without IOMMU/m);
    expect(r.stdout).not.toContain('\u001b[');
  });

  it('demo still runs', async () => {
    const r = await dmalab(['demo']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^arm64-noncoherent +NO \(stale\) +NO \(stale\)/m);
  });
});
