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
          "rx.yaml:23:9: at: mapping 'rxmap' used before the step that makes it (wait for a signal first)",
        );
        return true;
      }
    });
    expect(seeds.length).toBeGreaterThan(0);
  });
});

/** A receive into four pages: the NIC writes 200 bytes across the first two; `extra` steps go before the unmap. */
function sgRx(opts: { extra?: string; pages?: string; nic?: string; machine?: string } = {}): string {
  return `name: sg-rx
intent: a device writes across the DMA segments of a pages buffer
profiles: all
${opts.machine ?? ''}devices: [{ name: nic${opts.nic ?? ''} }]
buffers: [{ name: rx, kind: pages, ${opts.pages ?? 'pages: 4'}, fill: 0 }]
agents:
  - name: driver
    kind: kernel
    steps:
      - dmaMapSgtable: { device: nic, buffer: rx, dir: DMA_FROM_DEVICE, as: rxmap }
      - signal: mapped
      - wait: written
      - dmaSyncSgtableForCpu: { mapping: rxmap }
      - kernelRead: { buffer: rx, offset: 4000, length: 200, expect: 0x77 }
      - kernelRead: { buffer: rx, offset: 3990, length: 10, expect: 0 }
      - kernelRead: { buffer: rx, offset: 4200, length: 10, expect: 0 }
${opts.extra ?? ''}      - dmaUnmapSgtable: { mapping: rxmap }
  - name: nic
    kind: device
    device: nic
    steps:
      - wait: mapped
      - deviceDmaWrite: { at: rxmap, offset: 4000, length: 200, fill: 0x77 }
      - signal: written
`;
}

/** The timeline's ops that match `re`. */
function ops(r: { timeline: readonly { op: string }[] }, re: RegExp): string[] {
  return r.timeline.map((t) => t.op).filter((op) => re.test(op));
}

describe('scatter-gather steps', () => {
  it('a pages buffer has one sg entry per page; the device writes across the DMA segments the backend made', () => {
    const s = parseScenario('sg.yaml', sgRx());
    const seen = Object.fromEntries(
      ['x86_64', 'parisc', 'swiotlb-force'].map((profile) => {
        const r = runScenario(s, { profile });
        expect(r.findings, profile).toEqual([]);
        expect(r.bytes, profile).toEqual({ ok: true, detail: '3 byte condition(s) hold' });
        return [profile, ops(r, /^dma_map_sgtable|^nic writes/)];
      }),
    );
    expect(seen).toEqual({
      x86_64: [
        'dma_map_sgtable(nic, rx, DMA_FROM_DEVICE) = 0: 4 sg entries, 4 DMA segments',
        'nic writes 200 × 0x77 at rxmap+4000 (2 pieces of 4 DMA segments): 96 at 0x1000fa0, 104 at 0x1001000',
      ],
      // The IOMMU merges the four pages into one IOVA range.
      parisc: [
        'dma_map_sgtable(nic, rx, DMA_FROM_DEVICE) = 0: 4 sg entries, 1 DMA segment',
        'nic writes 200 × 0x77 at rxmap+4000 (1 piece of 1 DMA segment): 200 at 0x4fa0',
      ],
      // Each entry bounces through its own slot; the device writes the slots.
      'swiotlb-force': [
        'dma_map_sgtable(nic, rx, DMA_FROM_DEVICE) = 0: 4 sg entries, 4 DMA segments',
        'nic writes 200 × 0x77 at rxmap+4000 (2 pieces of 4 DMA segments): 96 at 0xe000fa0, 104 at 0xe001000',
      ],
    });
  });

  it('a contiguous pages buffer is one sg entry from sg_alloc_table_from_pages', () => {
    const r = runScenario(parseScenario('sg.yaml', sgRx({ pages: 'pages: 4, contiguous: true' })), {
      profile: 'x86_64',
    });
    expect(r.findings).toEqual([]);
    expect(ops(r, /^dma_map_sgtable|^nic writes/)).toEqual([
      'dma_map_sgtable(nic, rx, DMA_FROM_DEVICE) = 0: 1 sg entry, 1 DMA segment',
      'nic writes 200 × 0x77 at rxmap+4000 (1 piece of 1 DMA segment): 200 at 0x1000fa0',
    ]);
  });

  it('without dma_sync_sgtable_for_cpu the read is stale where the cache or a bounce slot hides the write', () => {
    const s = parseScenario(
      'sg.yaml',
      sgRx().replace('      - dmaSyncSgtableForCpu: { mapping: rxmap }\n', ''),
    );
    const codes = Object.fromEntries(
      ['x86_64', 'arm64-noncoherent', 'swiotlb-force'].map((profile) => {
        const r = runScenario(s, { profile });
        return [profile, [r.verdict, ...r.findings.map((f) => f.code)]];
      }),
    );
    // One ownership finding for the mapping; the 200 bytes span two pages, so two stale reads.
    expect(codes).toEqual({
      x86_64: ['latent', 'OWNERSHIP'],
      'arm64-noncoherent': ['broken', 'OWNERSHIP', 'STALE_DATA', 'STALE_DATA'],
      'swiotlb-force': ['broken', 'OWNERSHIP', 'STALE_DATA', 'STALE_DATA'],
    });
    const arm = runScenario(s, { profile: 'arm64-noncoherent' });
    expect(arm.bytes).toEqual({
      ok: false,
      detail: 'sg.yaml:13: kernelRead(rx+4000, 200): expected 0x77 × 200, got 0x00 at byte 0',
    });
  });

  it('dma_sync_sgtable_for_device hands the CPU’s writes back to the device; without it they stay in the cache', () => {
    const text = (sync: boolean) =>
      sgRx({
        extra: `      - kernelWrite: { buffer: rx, offset: 8192, length: 64, fill: 0x22 }
${sync ? '      - dmaSyncSgtableForDevice: { mapping: rxmap }\n' : ''}      - signal: rewritten
      - wait: reread
`,
      })
        .replace('dir: DMA_FROM_DEVICE', 'dir: DMA_BIDIRECTIONAL')
        .concat(
          '      - wait: rewritten\n',
          '      - deviceDmaRead: { at: rxmap, offset: 8192, length: 64, expect: 0x22 }\n',
          '      - signal: reread\n',
        );
    for (const profile of ['x86_64', 'arm64-noncoherent']) {
      const good = runScenario(parseScenario('sg.yaml', text(true)), { profile });
      expect(good.findings, profile).toEqual([]);
      expect(good.bytes?.ok).toBe(true);
    }
    const bad = runScenario(parseScenario('sg.yaml', text(false)), { profile: 'arm64-noncoherent' });
    expect(bad.findings.map((f) => f.code)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    expect(bad.bytes?.detail).toMatch(
      /nic reads 64 at rxmap\+8192 .*expected 0x22 × 64, got 0x00 at byte 0$/,
    );
  });

  it('a timed transfer is one job per piece, each taking its share of the duration', () => {
    const text = `name: tx
intent: a device reads a pages buffer across three segments in 1000 ns
profiles: [x86_64]
devices: [{ name: nic }]
buffers: [{ name: tx, kind: pages, pages: 3, fill: 0x5a }]
agents:
  - name: driver
    kind: kernel
    steps:
      - dmaMapSgtable: { device: nic, buffer: tx, dir: DMA_TO_DEVICE, as: txmap }
      - signal: mapped
  - name: nic
    kind: device
    device: nic
    steps:
      - wait: mapped
      - deviceDmaRead: { at: txmap, length: 10000, expect: 0x5a, duration: 1000 }
      - signal: read
`;
    const r = runScenario(parseScenario('tx.yaml', text), { profile: 'x86_64' });
    expect(r.findings).toEqual([]);
    expect(r.bytes).toEqual({ ok: true, detail: '1 byte condition(s) hold' });
    const wrong = runScenario(parseScenario('tx.yaml', text.replace('expect: 0x5a', 'expect: 0x5b')), {
      profile: 'x86_64',
    });
    expect(wrong.bytes).toEqual({
      ok: false,
      detail:
        'tx.yaml:17: nic reads 10000 at txmap+0 (3 pieces of 3 DMA segments): expected 0x5b × 10000, got 0x5a at byte 0',
    });
    expect(r.timeline.filter((t) => t.agent === 'nic').map((t) => `${t.time} ${t.op}`)).toEqual([
      '0 wait mapped',
      // Each piece is submitted when the one before completes (the time is the step's, at submission).
      '0 nic reads 4096 at 0x1000000 (txmap segment 1 of 3), a job of 409 ns',
      '409 nic reads 4096 at 0x1001000 (txmap segment 2 of 3), a job of 410 ns',
      '819 nic reads 1808 at 0x1002000 (txmap segment 3 of 3), a job of 181 ns',
      '1000 signal read',
    ]);
  });

  it('a mapping that failed is a failed condition, and every later step on it is skipped', () => {
    const text = `name: fail
intent: mappings a 24-bit device cannot have, with no swiotlb to bounce through
profiles: [x86_64]
machine: { swiotlbBytes: 0 }
devices: [{ name: nic, dmaMaskBits: 24 }]
buffers:
  - { name: rx, kind: pages, pages: 2 }
  - { name: frame, kind: heap, size: 8192 }
agents:
  - name: driver
    kind: kernel
    steps:
      - dmaMapSgtable: { device: nic, buffer: rx, dir: DMA_FROM_DEVICE, as: rxmap }
      - dmaBufAttach: { buffer: frame, device: nic, as: att }
      - dmaBufMapAttachment: { attachment: att, dir: DMA_FROM_DEVICE, as: fm }
      - signal: mapped
      - wait: done
      - dmaSyncSgtableForCpu: { mapping: rxmap }
      - dmaUnmapSgtable: { mapping: rxmap }
      - dmaBufUnmapAttachment: { mapping: fm }
      - dmaBufDetach: { attachment: att }
  - name: eng
    kind: device
    device: nic
    steps:
      - wait: mapped
      - deviceDmaWrite: { at: rxmap, length: 64, fill: 1 }
      - deviceDmaRead: { at: fm, length: 64, duration: 100 }
      - signal: done
`;
    const r = runScenario(parseScenario('fail.yaml', text), { profile: 'x86_64' });
    expect(r.verdict).toBe('api');
    expect(r.findings.map((f) => f.code)).toEqual(['WARN']);
    expect(r.bytes).toEqual({
      ok: false,
      detail: 'fail.yaml:13: dma_map_sgtable(nic, rx, DMA_FROM_DEVICE) = -EIO',
    });
    expect(r.timeline.map((t) => `${t.agent}: ${t.op}`).filter((x) => !/signal|wait/.test(x))).toEqual([
      'driver: dma_map_sgtable(nic, rx, DMA_FROM_DEVICE) = -EIO',
      'driver: dma_buf_attach(frame, nic) = att',
      'driver: dma_buf_map_attachment_unlocked(att, DMA_FROM_DEVICE) = -EIO',
      'eng: deviceDmaWrite skipped (rxmap has no bus address: it failed)',
      'eng: deviceDmaRead skipped (fm has no bus address: it failed)',
      'driver: dma_sync_sgtable_for_cpu skipped (rxmap failed)',
      'driver: dma_unmap_sgtable skipped (rxmap failed)',
      'driver: dma_buf_unmap_attachment_unlocked skipped (fm failed)',
      'driver: dma_buf_detach(frame, nic)',
    ]);
  });
});
