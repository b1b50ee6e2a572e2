import { describe, expect, it } from 'vitest';
import { type Io, progress, wantsColour } from './io.js';

function fakeIo(over: Partial<Io> & { clock?: { t: number } } = {}): Io & { bars: number[][] } {
  const clock = over.clock ?? { t: 0 };
  const bars: number[][] = [];
  return {
    out: () => {},
    err: () => {},
    stdoutIsTTY: true,
    stderrIsTTY: true,
    env: {},
    now: () => clock.t,
    readText: () => '',
    listDir: () => null,
    writeText: () => {},
    progressBar() {
      const updates: number[] = [];
      bars.push(updates);
      return { update: (d: number) => updates.push(d), stop: () => updates.push(-1) };
    },
    bars,
    ...over,
  };
}

describe('colour', () => {
  it('only on a terminal, never with a non-empty NO_COLOR or TERM=dumb', () => {
    expect(wantsColour(fakeIo(), 'stdout')).toBe(true);
    expect(wantsColour(fakeIo({ stdoutIsTTY: false }), 'stdout')).toBe(false);
    expect(wantsColour(fakeIo({ stdoutIsTTY: false }), 'stderr')).toBe(true);
    expect(wantsColour(fakeIo({ env: { NO_COLOR: '1' } }), 'stdout')).toBe(false);
    expect(wantsColour(fakeIo({ env: { NO_COLOR: '' } }), 'stdout')).toBe(true);
    expect(wantsColour(fakeIo({ env: { TERM: 'dumb' } }), 'stdout')).toBe(false);
    expect(wantsColour(fakeIo({ stdoutIsTTY: false, env: { FORCE_COLOR: '1' } }), 'stdout')).toBe(false);
  });
});

describe('progress', () => {
  it('stays hidden for the first second, then draws a bar on a terminal', () => {
    const clock = { t: 1000 };
    const io = fakeIo({ clock });
    const p = progress(io);
    p.onProgress(1, 10);
    clock.t = 1999;
    p.onProgress(2, 10);
    expect(io.bars).toEqual([]);
    clock.t = 2000;
    p.onProgress(3, 10);
    p.onProgress(4, 10);
    p.stop();
    expect(io.bars).toEqual([[3, 4, -1]]);
  });

  it('never draws when stderr is not a terminal, nor for a run that ends within the second', () => {
    const clock = { t: 0 };
    const piped = fakeIo({ clock, stderrIsTTY: false });
    const p = progress(piped);
    clock.t = 5000;
    p.onProgress(1, 2);
    p.stop();
    expect(piped.bars).toEqual([]);
    const quick = fakeIo({ clock: { t: 0 } });
    const q = progress(quick);
    q.onProgress(2, 2);
    q.stop();
    expect(quick.bars).toEqual([]);
  });
});
