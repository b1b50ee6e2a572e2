import { describe, expect, it } from 'vitest';
import { DmalabError } from './errors.js';
import { EVENT_TYPES, EventBus, type MachineEvent } from './events.js';

describe('EventBus', () => {
  it('runs the listeners of the type, then those of every type, in subscription order', () => {
    const clock = { step: 7, time: 1000 };
    const bus = new EventBus(clock);
    const seen: string[] = [];
    bus.on('*', (ev) => seen.push(`any:${ev.type}`));
    bus.on('time', (ev) => seen.push(`time1:${ev.from}->${ev.to}`));
    bus.on('time', () => seen.push('time2'));
    expect(bus.wants.time).toBe(true);
    bus.emit({ type: 'time', from: 1, to: 2 } as never);
    bus.emitTo(bus.listeners.time, { type: 'time', from: 2, to: 3, step: 8, time: 1001 });
    expect(seen).toEqual(['time1:1->2', 'time2', 'any:time', 'time1:2->3', 'time2', 'any:time']);
  });

  it('stamps step and time in emit, and keeps the given stamp in emitTo', () => {
    const clock = { step: 3, time: 40 };
    const bus = new EventBus(clock);
    const got: MachineEvent[] = [];
    bus.on('page-free', (ev) => got.push({ ...ev }));
    bus.emit({ type: 'page-free', pfn: 9, order: 0 } as never);
    bus.emitTo(bus.listeners['page-free'], { type: 'page-free', pfn: 10, order: 1, step: 99, time: 5 });
    expect(got).toEqual([
      { type: 'page-free', pfn: 9, order: 0, step: 3, time: 40 },
      { type: 'page-free', pfn: 10, order: 1, step: 99, time: 5 },
    ]);
  });

  it('tracks wants per type through subscribe and unsubscribe', () => {
    const bus = new EventBus({ step: 0, time: 0 });
    for (const t of EVENT_TYPES) expect(bus.wants[t]).toBe(false);
    const offMap = bus.on('dma-map', () => {});
    expect(bus.wants['dma-map']).toBe(true);
    expect(bus.wants['dma-unmap']).toBe(false);
    const offAny = bus.on('*', () => {});
    expect(EVENT_TYPES.every((t) => bus.wants[t])).toBe(true);
    offAny();
    expect(bus.wants['dma-unmap']).toBe(false);
    expect(bus.wants['dma-map']).toBe(true);
    offMap();
    expect(bus.wants['dma-map']).toBe(false);
    expect(bus.listeners['dma-map']).toEqual([]);
  });

  it('a listener added during an emission runs from the next one', () => {
    const bus = new EventBus({ step: 0, time: 0 });
    let late = 0;
    bus.on('time', () => {
      if (late === 0) bus.on('time', () => late++);
    });
    bus.emit({ type: 'time', from: 0, to: 1 } as never);
    expect(late).toBe(0);
    bus.emit({ type: 'time', from: 1, to: 2 } as never);
    expect(late).toBe(1);
  });

  it('refuses an unknown event type with a DmalabError', () => {
    const bus = new EventBus({ step: 0, time: 0 });
    expect(() => bus.on('dma-mapp' as never, () => {})).toThrow(DmalabError);
    expect(() => bus.on('dma-mapp' as never, () => {})).toThrow(/unknown event type 'dma-mapp'/);
  });
});
