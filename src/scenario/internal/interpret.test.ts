import { describe, expect, it } from 'vitest';
import { parseScenario } from '../parse.js';
import { runScenario } from '../run.js';

/** A receive buffer the device fills; `sync` adds the dma_sync_single_for_cpu a correct driver makes. */
function rx(sync: boolean): string {
  return `name: rx-${sync ? 'synced' : 'unsynced'}
intent: a device fills a streaming receive buffer that the CPU then reads
profiles: [x86_64, arm64-noncoherent]
devices:
  - { name: nic }
buffers:
  - { name: buf, kind: kmalloc, size: 2048 }
agents:
  - name: driver
    kind: kernel
    steps:
      - kernelRead: { buffer: buf, length: 64 }
      - dmaMapSingle: { device: nic, buffer: buf, size: 2048, dir: DMA_FROM_DEVICE, as: rxmap }
      - signal: mapped
      - wait: written
${sync ? '      - dmaSyncSingleForCpu: { mapping: rxmap }\n' : ''}      - kernelRead: { buffer: buf, length: 64, expect: 0x5a }
      - dmaUnmapSingle: { mapping: rxmap }
  - name: nic
    kind: device
    device: nic
    steps:
      - wait: mapped
      - deviceDmaWrite: { at: rxmap, length: 64, fill: 0x5a, duration: 1000 }
      - signal: written
`;
}

describe('declarative scenarios', () => {
  it('run a receive path: stale without the sync where the device does not snoop, clean with it', () => {
    const bad = parseScenario('rx.yaml', rx(false));
    const x86 = runScenario(bad, { profile: 'x86_64' });
    expect(x86.findings.map((f) => f.code)).toEqual(['OWNERSHIP']);
    expect(x86.bytes).toEqual({ ok: true, detail: '1 byte condition(s) hold' });
    const arm = runScenario(bad, { profile: 'arm64-noncoherent' });
    expect(arm.verdict).toBe('broken');
    expect(arm.findings.map((f) => f.code)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    expect(arm.bytes).toEqual({
      ok: false,
      detail: 'rx.yaml:16: kernelRead(buf+0, 64): expected 0x5a × 64, got 0x00 at byte 0',
    });
    const good = parseScenario('rx.yaml', rx(true));
    for (const profile of ['x86_64', 'arm64-noncoherent']) {
      const r = runScenario(good, { profile });
      expect(r.findings, profile).toEqual([]);
      expect(r.matches).toBe(true);
    }
  });

  it('the device transfer runs as a job while the driver waits, and completes in model time', () => {
    const r = runScenario(parseScenario('rx.yaml', rx(true)), { profile: 'x86_64' });
    const ops = r.timeline.map((t) => `${t.time} ${t.agent}: ${t.op}`);
    expect(ops).toContain('0 nic: nic writes 64 × 0x5a at 0x1000000 (rxmap), a job of 1000 ns');
    expect(ops).toContain('1000 nic: signal written');
    expect(ops.at(-1)).toBe('1000 driver: dma_unmap_single(nic, 0x1000000, 2048, DMA_FROM_DEVICE)');
  });

  it('a case expected clean whose bytes come out wrong does not match, even without findings', () => {
    const text = rx(true).replace('expect: 0x5a', 'expect: 0x5b');
    const r = runScenario(parseScenario('rx.yaml', text), { profile: 'x86_64' });
    expect(r.verdict).toBe('clean');
    expect(r.bytes?.ok).toBe(false);
    expect(r.matches).toBe(false);
  });

  it('an mmap refused where it was expected to work is a failed condition, and later steps on it are skipped', () => {
    const text = `name: refused
intent: mmap of a coherent buffer under the refuse strategy
profiles: [x86_64]
machine: { mmapStrategy: refuse }
devices: [{ name: snd }]
buffers: [{ name: ring, kind: coherent, device: snd, size: 8192 }]
agents:
  - name: app
    kind: process
    steps:
      - mmap: { buffer: ring, as: pcm }
      - userWrite: { map: pcm, length: 4, fill: 1 }
`;
    const r = runScenario(parseScenario('refused.yaml', text), { profile: 'x86_64' });
    expect(r.bytes).toEqual({
      ok: false,
      detail: 'refused.yaml:11: mmap(/dev/ring) returned -ENXIO, expected an address',
    });
    expect(r.timeline.map((t) => t.op)).toEqual([
      'mmap(/dev/ring, 8192) = -ENXIO',
      'userWrite skipped (pcm was not mapped)',
    ]);
    expect(r.matches).toBe(false);
  });

  it('a wait for what no agent signals is refused at the wait, before anything runs', () => {
    // Deadlocks between agents that do signal are the runtime's (runtime.test.ts).
    const text = rx(true).replace('      - signal: written\n', '');
    expect(() => parseScenario('rx.yaml', text)).toThrow(
      "rx.yaml:15:15: agents[0].steps[3].wait: waits for 'written', which no agent signals",
    );
  });

  it('a mapping used before the step that makes it is a DmalabError at the using step', () => {
    const text = rx(true).replace('      - wait: mapped\n', '');
    // With no wait, the device may run first: it then names the mapping it cannot have yet.
    const seeds = [0, 1, 2, 3, 4, 5, 6, 7].filter((seed) => {
      try {
        runScenario(parseScenario('rx.yaml', text), { profile: 'x86_64', seed });
        return false;
      } catch (e) {
        expect(String(e)).toContain(
          "rx.yaml:23: at: mapping 'rxmap' used before the step that makes it (wait for a signal first)",
        );
        return true;
      }
    });
    expect(seeds.length).toBeGreaterThan(0);
  });
});
