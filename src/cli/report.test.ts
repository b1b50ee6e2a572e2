import { describe, expect, it } from 'vitest';
import { builtinScenarios, runScenario, type ScenarioResult } from '../scenario/index.js';
import { renderRuns, replayCommand, whyLine } from './report.js';

/** The first seed-suite cell declared broken whose worst finding is stale data. */
function staleCell(): ScenarioResult {
  for (const s of builtinScenarios()) {
    for (const [profile, v] of Object.entries(s.expect)) {
      if (v !== 'broken') continue;
      const r = runScenario(s, { profile });
      if (r.findings.find((f) => f.verdict === 'broken')?.code === 'STALE_DATA') return r;
    }
  }
  throw new Error('no seed scenario is broken by stale data');
}

describe('report', () => {
  const stale = staleCell();

  it('says in one line who missed whose write and what hid it', () => {
    expect(whyLine(stale)).toMatch(
      /^STALE_DATA at step \d+: \S+ missed \S+'s (CPU store|DMA write) of step \d+, hidden by [^;]+$/,
    );
  });

  it("falls back to the scenario's explanation, then to the bytes", () => {
    const plain = { ...stale, findings: [], explanation: 'WARN: something' };
    expect(whyLine(plain)).toBe('WARN: something');
    expect(whyLine({ ...plain, explanation: null, bytes: { ok: false, detail: 'got 0x00' } })).toBe(
      'got 0x00',
    );
  });

  it('replays with the exact arguments, quoted for a shell when needed', () => {
    expect(replayCommand("my case's.yaml", { ...stale, profile: 'parisc', seed: 3 })).toBe(
      `dmalab run 'my case'\\''s.yaml' --profile parisc --seed 3`,
    );
  });

  it('renders a run: head line with the verdict against the expectation, findings, bytes, summary', () => {
    const text = renderRuns([stale, { ...stale, expected: 'clean', matches: false }], {
      color: false,
      stacks: false,
      timeline: false,
    });
    expect(text).toContain(
      `${stale.scenario} on ${stale.profile} (seed 0): broken — as expected\n  broken  STALE_DATA`,
    );
    expect(text).toContain(`${stale.scenario} on ${stale.profile} (seed 0): broken — expected clean\n`);
    expect(text).toMatch(/\n2 runs \(2 broken\): 1 differs from the declared expectation\n$/);
    expect(text).not.toContain('\u001b[');
  });
});
