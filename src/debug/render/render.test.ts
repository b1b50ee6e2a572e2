import { describe, expect, it } from 'vitest';
import { buffer, kread, kwrite, machine } from '../../../test/debug-kit.js';
import { runOnProfiles } from '../../boot.js';
import { DMA_FROM_DEVICE, dmaMappingError, dmaMapSingle, dmaUnmapSingle } from '../../dma/index.js';
import {
  addDevice,
  deviceDmaWrite,
  type Finding,
  type Machine,
  machineFindings,
} from '../../machine/index.js';
import { renderMatrix, renderProfiles } from '../matrix.js';
import { parseFrame, relative } from './frames.js';
import { renderFindingsJson } from './json.js';
import { renderFindingsSarif, renderSarifRuns } from './sarif.js';
import { renderFindingsText } from './text.js';

/** The stale read of a FROM_DEVICE buffer on arm64: an ownership and a stale-data finding. */
function staleRun(captureStacks: 'findings' | 'mappings' = 'findings'): Machine {
  const { m, dev } = machine('arm64-noncoherent', { captureStacks });
  const buf = buffer(m);
  kwrite(m, buf, new Array(64).fill(0));
  const a = dmaMapSingle(dev, buf, 64, DMA_FROM_DEVICE);
  dmaMappingError(dev, a);
  deviceDmaWrite(dev, a, new Uint8Array(64).fill(0x5a));
  kread(m, buf, 4);
  dmaUnmapSingle(dev, a, 64, DMA_FROM_DEVICE);
  return m;
}

describe('text', () => {
  it('prints each finding with its verdict, code, step, call, message and stack, then the run verdict', () => {
    const text = renderFindingsText(machineFindings(staleRun()));
    const lines = text.split('\n');
    expect(lines[0]).toBe('latent  OWNERSHIP  step 3  by kernel');
    expect(lines[1]).toMatch(/^ {2}dmalab: nic0: CPU load of DMA memory the device owns/);
    expect(lines[2]).toBe('  mapped at: dma_map_single_attrs (step 2)');
    expect(lines[3]).toBe('  stack:');
    expect(lines[4]).toMatch(/^ {4}at kread test\/debug-kit\.ts:\d+:\d+$/);
    expect(lines[5]).toMatch(/^ {4}at staleRun src\/debug\/render\/render\.test\.ts:\d+:\d+$/);
    expect(text).toContain('\nbroken  STALE_DATA  step 3  by kernel\n');
    expect(lines.at(-2)).toBe('2 findings (1 broken, 1 latent) — verdict: broken');
    expect(text).not.toContain('\u001b[');
  });

  it('colours verdicts only when asked, and says so when there is nothing', () => {
    const colored = renderFindingsText(machineFindings(staleRun()), { color: true, stacks: false });
    expect(colored).toContain('\u001b[31mbroken\u001b[0m');
    expect(colored).toContain('\u001b[33mlatent\u001b[0m');
    expect(colored).not.toContain('stack:');
    expect(renderFindingsText([])).toBe('no findings — verdict: clean\n');
  });

  it('shows where a mapping was made when stacks are kept per mapping', () => {
    const text = renderFindingsText(machineFindings(staleRun('mappings')));
    expect(text).toMatch(
      / {2}mapped at: dma_map_single_attrs \(step 2\)\n {4}at .*staleRun .*render\.test\.ts:\d+:\d+/,
    );
  });
});

describe('JSON', () => {
  it('is byte-identical across runs, with sorted keys and no absolute paths', () => {
    // Two runs of the same code (from one call site: stacks name it).
    const [a, b] = [0, 1].map(() => renderFindingsJson(machineFindings(staleRun()))) as [string, string];
    expect(a).toBe(b);
    const parsed = JSON.parse(a) as { verdict: string; findings: Record<string, unknown>[] };
    expect(parsed.verdict).toBe('broken');
    expect(parsed.findings.map((f) => f.code)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    expect(Object.keys(parsed.findings[1]!)).toEqual([...Object.keys(parsed.findings[1]!)].sort());
    expect(a).not.toMatch(/"\/|file:/);
    expect(renderFindingsJson(machineFindings(staleRun()), { stacks: false })).not.toContain('"stack"');
  });

  it('keeps only the file name of a frame outside the repository', () => {
    expect(relative('file:///home/me/driver/nic.ts')).toBe('nic.ts');
    expect(relative('/abs/x.ts')).toBe('x.ts');
    expect(relative('src/x.ts')).toBe('src/x.ts');
    expect(parseFrame('probe file:///home/me/nic.ts:12:3')).toEqual({
      fn: 'probe',
      path: 'nic.ts',
      line: 12,
      column: 3,
    });
    const f: Finding = {
      code: 'WARN',
      severity: 'warning',
      verdict: 'api',
      message: 'x',
      step: 1,
      time: 0,
      stack: ['file:///home/me/nic.ts:12:3'],
    };
    expect(JSON.parse(renderFindingsJson([f])).findings[0].stack).toEqual(['nic.ts:12:3']);
  });
});

describe('SARIF', () => {
  it('is a SARIF 2.1.0 log: one rule per code, results located at the caller', () => {
    const log = JSON.parse(renderFindingsSarif(machineFindings(staleRun('mappings'))));
    expect(log.version).toBe('2.1.0');
    expect(log.$schema).toBe('https://json.schemastore.org/sarif-2.1.0.json');
    const run = log.runs[0];
    expect(run.tool.driver.name).toBe('dmalab');
    expect(run.tool.driver.rules.map((r: { id: string }) => r.id)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    expect(run.tool.driver.rules[1]).toMatchObject({
      defaultConfiguration: { level: 'error' },
      properties: { verdict: 'broken', layer: 'debug' },
    });
    const res = run.results[1];
    expect(res).toMatchObject({
      ruleId: 'STALE_DATA',
      ruleIndex: 1,
      level: 'error',
      properties: { verdict: 'broken', step: 3 },
    });
    const loc = res.locations[0].physicalLocation;
    expect(loc.artifactLocation.uri).toBe('test/debug-kit.ts');
    expect(res.stacks[0].frames[1].location.physicalLocation.artifactLocation.uri).toBe(
      'src/debug/render/render.test.ts',
    );
    expect(loc.region.startLine).toBeGreaterThan(0);
    expect(res.stacks.map((s: { message: { text: string } }) => s.message.text)).toEqual(['raised at']);
    expect(run.results[0].stacks.map((s: { message: { text: string } }) => s.message.text)).toEqual([
      'raised at',
      'mapped at',
    ]);
  });

  it('names the dma-debug check a rule stands for', () => {
    const { m, dev } = machine('x86_64');
    dmaUnmapSingle(dev, 0x1000 as never, 64, DMA_FROM_DEVICE);
    const rule = JSON.parse(renderFindingsSarif(machineFindings(m))).runs[0].tool.driver.rules[0];
    expect(rule).toMatchObject({
      id: 'DMA_FREE_NOT_ALLOCATED',
      properties: { dmaDebugCheck: 2, verdict: 'api' },
    });
  });

  it('holds several named runs, each with its own rules', () => {
    const stale = machineFindings(staleRun('findings'));
    const log = JSON.parse(
      renderSarifRuns([
        { id: 'rx/arm64-noncoherent', findings: stale },
        { id: 'rx/x86_64', findings: [] },
      ]),
    );
    expect(log.runs.map((r: { automationDetails: { id: string } }) => r.automationDetails.id)).toEqual([
      'rx/arm64-noncoherent',
      'rx/x86_64',
    ]);
    expect(log.runs[0].results.map((r: { ruleId: string }) => r.ruleId)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    expect(log.runs[1]).toMatchObject({ results: [], tool: { driver: { rules: [] } } });
    expect(JSON.parse(renderFindingsSarif(stale)).runs[0].automationDetails).toBeUndefined();
  });
});

describe('profile matrix', () => {
  const driver = (m: Machine) => {
    const d = addDevice(m, { name: 'nic0' });
    const buf = buffer(m);
    kwrite(m, buf, new Array(64).fill(0));
    const a = dmaMapSingle(d, buf, 64, DMA_FROM_DEVICE);
    dmaMappingError(d, a);
    deviceDmaWrite(d, a, new Uint8Array(64).fill(1));
    kread(m, buf, 4);
    dmaUnmapSingle(d, a, 64, DMA_FROM_DEVICE);
  };

  it('renders one run per profile with its verdict, codes and first divergence', () => {
    const r = runOnProfiles(driver, ['x86_64', 'arm64-noncoherent'], { ramBytes: 64 << 20 });
    expect(renderProfiles(r)).toBe(
      [
        'profile            verdict  findings',
        '-----------------  -------  ---------------------',
        'x86_64             latent   OWNERSHIP',
        'arm64-noncoherent  broken   OWNERSHIP, STALE_DATA',
        '',
        'first divergence: step 3 (cpu read by kernel)',
        '',
      ].join('\n'),
    );
  });

  it('renders scenarios × profiles', () => {
    const profiles = ['x86_64', 'arm64-noncoherent'];
    const out = renderMatrix({
      'rx without sync': runOnProfiles(driver, profiles, { ramBytes: 64 << 20 }),
      'nothing at all': runOnProfiles(() => {}, profiles, { ramBytes: 64 << 20 }),
    });
    expect(out).toBe(
      [
        'scenario         x86_64  arm64-noncoherent  diverges at',
        '---------------  ------  -----------------  ---------------------------',
        'rx without sync  latent  broken             step 3 (cpu read by kernel)',
        'nothing at all   clean   clean',
        '',
      ].join('\n'),
    );
    const marked = renderMatrix(
      { 'rx without sync': runOnProfiles(driver, profiles, { ramBytes: 64 << 20 }) },
      { expected: { 'rx without sync': { x86_64: 'latent' } } },
    );
    expect(marked.split('\n')[2]).toBe(
      'rx without sync  latent ✓  broken ✗ expected clean  step 3 (cpu read by kernel)',
    );
    expect(renderMatrix({ a: runOnProfiles(() => {}, ['x86_64']) }, { color: true })).toContain(
      '\u001b[32mclean\u001b[0m',
    );
  });

  it('marks a profile a scenario does not run on, and says what the mark means', () => {
    const out = renderMatrix({
      both: runOnProfiles(() => {}, ['x86_64', 'parisc'], { ramBytes: 64 << 20 }),
      'x86 only': runOnProfiles(() => {}, ['x86_64'], { ramBytes: 64 << 20 }),
    });
    expect(out.split('\n').slice(2)).toEqual([
      'both      clean   clean',
      'x86 only  clean   —',
      '—: not run on that profile (the scenario does not list it)',
      '',
    ]);
  });
});
