import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { dmalab, ensureBuilt, ROOT } from '../../test/cli-harness.js';
import { stableStringify } from '../debug/index.js';
import { builtinScenarios, explainSemantics, runScenario, scenarioReportJson } from '../scenario/index.js';

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
      /^dma_sync_single_for_cpu +DMA_FROM_DEVICE +4096 +invalidate +— +ok$/,
    );
    expect(lines.find((l) => l.includes('DMA_TO_DEVICE'))).toMatch(
      /^dma_sync_single_for_cpu +DMA_TO_DEVICE +4096 +— +— +ok$/,
    );
  });

  it('explain --json: the rows the core generates, as deterministic JSON', async () => {
    const r = await dmalab(['explain', '--json', '-p', 'swiotlb-force', 'dmaUnmapSingle']);
    expect(r.code).toBe(0);
    const rows = explainSemantics({ profiles: ['swiotlb-force'], calls: ['dma_unmap_single'] });
    expect(r.stdout).toBe(`${stableStringify(rows)}\n`);
    expect(rows.map((x) => [x.dir, x.size, x.bounce])).toEqual([
      ['DMA_TO_DEVICE', 4096, []],
      ['DMA_FROM_DEVICE', 4096, ['from-slot']],
      ['DMA_BIDIRECTIONAL', 4096, ['from-slot']],
      ['DMA_TO_DEVICE', 64, []],
      ['DMA_FROM_DEVICE', 64, ['from-slot']],
      ['DMA_BIDIRECTIONAL', 64, ['from-slot']],
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
    ];
    for (const [args, msg] of cases) {
      const r = await dmalab(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }
  });

  it('no command: usage on stderr, exit 2; --help exits 0', async () => {
    const none = await dmalab([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^Usage: dmalab \[options\] \[command\]/);
    const help = await dmalab(['explain', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Examples:\n  $ dmalab explain\n');
  });

  it('list: the profiles, colourless when not a terminal even if FORCE_COLOR is set', async () => {
    const r = await dmalab(['list'], { env: { FORCE_COLOR: '1' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ {2}parisc-pcxl +PA-RISC 1\.1 PA7100LC without IOMMU/m);
    expect(r.stdout).not.toContain('\u001b[');
  });
});

/** A seed-suite scenario file clean on x86_64 that declares a non-clean verdict on another profile. */
function scenarioWithFindings(): { file: string; profile: string; verdict: string } {
  for (const s of builtinScenarios()) {
    if ((s.expect.x86_64 ?? 'clean') !== 'clean' || !s.profiles.includes('x86_64')) continue;
    const hit = Object.entries(s.expect).find(([, v]) => v !== 'clean');
    if (hit !== undefined && !s.source.startsWith('builtin:'))
      return { file: s.source, profile: hit[0], verdict: hit[1] };
  }
  throw new Error('the seed suite has no scenario file with findings');
}

describe.concurrent('dmalab run and matrix on files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmalab-e2e-'));
  const withFindings = scenarioWithFindings();
  const text = readFileSync(join(ROOT, withFindings.file), 'utf8');
  const name = (parseDocument(text).toJS() as { name: string }).name;
  // The same scenario with its expectations removed: it now expects clean everywhere, so its findings differ.
  const undeclared = parseDocument(text);
  undeclared.delete('expect');
  writeFileSync(join(dir, 'undeclared.yaml'), undeclared.toString());
  writeFileSync(join(dir, 'bad-yaml.yaml'), 'name: x\nintent: [unclosed\n');
  const unknownField = parseDocument(text);
  unknownField.set('colour', 'blue');
  writeFileSync(join(dir, 'unknown-field.yaml'), unknownField.toString());
  const unknownProfile = parseDocument(text);
  unknownProfile.set('profiles', ['x86_64', 'vax']);
  writeFileSync(join(dir, 'unknown-profile.yaml'), unknownProfile.toString());
  // The scatter-gather and dma-buf vocabulary: a step on the wrong kind of buffer, and bad sync flags.
  const sgOnKmalloc = `name: sg-on-kmalloc
intent: dma_map_sgtable of a buffer that has no sg_table
devices: [{ name: nic }]
buffers: [{ name: k, kind: kmalloc, size: 4096 }, { name: f, kind: heap, size: 4096 }]
agents:
  - name: drv
    kind: kernel
    steps:
      - dmaMapSgtable: { device: nic, buffer: k, dir: DMA_FROM_DEVICE, as: m }
`;
  writeFileSync(join(dir, 'sg-on-kmalloc.yaml'), sgOnKmalloc);
  writeFileSync(
    join(dir, 'bad-sync-flags.yaml'),
    sgOnKmalloc
      .replace('kind: kernel', 'kind: process')
      .replace(
        'dmaMapSgtable: { device: nic, buffer: k, dir: DMA_FROM_DEVICE, as: m }',
        'dmaBufIoctlSync: { buffer: f, flags: [START, END] }',
      ),
  );

  it('a good file: findings as declared, exit 0, nothing on stderr', async () => {
    const r = await dmalab(['run', withFindings.file, '--profile', withFindings.profile, '-p', 'x86_64']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      `${name} on ${withFindings.profile} (seed 0): ${withFindings.verdict} — as expected`,
    );
    expect(r.stdout).toContain(`${name} on x86_64 (seed 0): clean — as expected`);
    expect(r.stdout).toMatch(/2 runs \(.*\): every result as declared\n$/);
  });

  it('a file whose findings it does not declare: exit 1, and the command that replays it', async () => {
    const file = join(dir, 'undeclared.yaml');
    const r = await dmalab(['run', file, '--profile', withFindings.profile, '--seed', '7']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      `${name} on ${withFindings.profile} (seed 7): ${withFindings.verdict} — expected clean`,
    );
    expect(r.stdout).toContain('1 differs from the declared expectation');
    expect(r.stderr).toBe(
      `to replay what differs:\n  dmalab run ${file} --profile ${withFindings.profile} --seed 7\n`,
    );
  });

  it('malformed files exit 2 naming file, line, column and field, without a stack', async () => {
    const cases: [string, RegExp][] = [
      ['bad-yaml.yaml', /^dmalab: .*bad-yaml\.yaml:\d+:\d+: .*YAML/],
      ['unknown-field.yaml', /^dmalab: .*unknown-field\.yaml:\d+:\d+: colour: unknown field/],
      ['unknown-profile.yaml', /^dmalab: .*unknown-profile\.yaml:\d+:\d+: profiles\[1\]: .*"vax"/],
      ['missing.yaml', /^dmalab: .*missing\.yaml: no such file or built-in scenario \(see dmalab list\)\n$/],
      [
        'sg-on-kmalloc.yaml',
        /^dmalab: .*sg-on-kmalloc\.yaml:9:47: agents\[0\]\.steps\[0\]\.dmaMapSgtable\.buffer: 'k' is a kmalloc buffer: only a pages buffer has an sg_table; map a kmalloc buffer with dmaMapSingle\n$/,
      ],
      [
        'bad-sync-flags.yaml',
        /^dmalab: .*bad-sync-flags\.yaml:9:46: agents\[0\]\.steps\[0\]\.dmaBufIoctlSync\.flags: must be START or END and a direction/,
      ],
    ];
    for (const [f, msg] of cases) {
      const r = await dmalab(['run', join(dir, f)]);
      expect(r.code, f).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }
  });

  it('a coherent buffer that cannot be allocated: mmap fails with -ENOMEM, not an internal error', async () => {
    const file = join(dir, 'no-ram.yaml');
    writeFileSync(
      file,
      `name: no-ram
intent: a coherent buffer as large as RAM is mmapped
profiles: [x86_64]
machine: { ramBytes: 8388608 }
devices: [{ name: d }]
buffers: [{ name: ring, kind: coherent, device: d, size: 8388608 }]
agents:
  - name: app
    kind: process
    steps:
      - mmap: { buffer: ring, as: pcm, expect: -ENOMEM }
`,
    );
    const r = await dmalab(['run', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${file}: allocating buffer 'ring' failed`);
    expect(r.stderr).not.toContain('vmf_insert_pfn_prot');
    expect(r.stderr).toBe(`to replay what differs:\n  dmalab run ${file} --profile x86_64 --seed 0\n`);
    // The verdict is the declared one but the bytes are not: no line may read as a pass.
    expect(r.stdout).toContain('no-ram on x86_64 (seed 0): clean — bytes not as required\n');
    const m = await dmalab(['matrix', file]);
    expect(m.code).toBe(1);
    expect(m.stdout).toContain('no-ram    clean ✗ bytes');
    expect(m.stdout).not.toContain('✓');
    expect(m.stdout).toContain('no-ram / x86_64: clean (bytes not as required) — ');
    expect(m.stdout).toContain('1 scenario × 1 profile — ');
  });

  it('--json and --sarif: deterministic reports', async () => {
    const sarif = join(dir, 'out.sarif');
    const r = await dmalab([
      'run',
      withFindings.file,
      '-p',
      withFindings.profile,
      '--json',
      '--sarif',
      sarif,
    ]);
    expect(r.code).toBe(0);
    const s = builtinScenarios().find((x) => x.name === name)!;
    expect(r.stdout).toBe(scenarioReportJson([runScenario(s, { profile: withFindings.profile, seed: 0 })]));
    expect(JSON.stringify(JSON.parse(r.stdout))).toContain(`"verdict":"${withFindings.verdict}"`);
    const log = JSON.parse(readFileSync(sarif, 'utf8'));
    expect(log.version).toBe('2.1.0');
    expect(log.runs[0].automationDetails.id).toBe(`${name}/${withFindings.profile}`);
    expect(log.runs[0].results.length).toBeGreaterThan(0);
  });

  it('matrix over a directory: the table, a line per broken cell, exit 1 and replay lines when a cell differs', async () => {
    const sub = mkdtempSync(join(dir, 'm-'));
    writeFileSync(join(sub, 'a.yaml'), undeclared.toString());
    const r = await dmalab(['matrix', sub, '-p', 'x86_64', '-p', withFindings.profile]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^scenario +x86_64 +\S+ +diverges at$/);
    expect(lines[2]).toContain(`clean ✓`);
    expect(lines[2]).toContain(`${withFindings.verdict} ✗ expected clean`);
    expect(r.stdout).toMatch(
      new RegExp(
        `^${name} / ${withFindings.profile}: ${withFindings.verdict} \\(expected clean\\) — \\S+`,
        'm',
      ),
    );
    expect(r.stderr).toContain(
      `dmalab run ${join(sub, 'a.yaml')} --profile ${withFindings.profile} --seed 0`,
    );
  });

  it('matrix with no argument runs the seed suite as declared (npm start)', async () => {
    const r = await dmalab(['matrix']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const s of builtinScenarios()) expect(r.stdout).toMatch(new RegExp(`^${s.name} `, 'm'));
    expect(r.stdout).not.toContain('✗');
    expect(r.stdout).toMatch(/every result as declared\n$/);
  });
});
