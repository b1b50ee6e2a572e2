import { describe, expect, it } from 'vitest';
import { PROFILE_NAMES } from '../../machine/index.js';
import { parseScenario } from '../parse.js';
import { runScenario } from '../run.js';

describe('pages buffers', () => {
  it('are filled, written and read at a logical offset across their pages through the linear map', () => {
    const text = `name: pages
intent: the kernel writes across a page boundary of a pages buffer and reads it back
profiles: all
buffers:
  - { name: p, kind: pages, pages: 3, fill: 0x11 }
  - { name: c, kind: pages, pages: 3, contiguous: true, fill: 0x12 }
agents:
  - name: k
    kind: kernel
    steps:
      - kernelWrite: { buffer: p, offset: 4000, length: 5000, fill: 0x33 }
      - kernelRead: { buffer: p, offset: 4000, length: 5000, expect: 0x33 }
      - kernelRead: { buffer: p, offset: 9000, length: 3288, expect: 0x11 }
      - kernelWrite: { buffer: c, offset: 8000, length: 300, fill: 0x34 }
final:
  - { read: p, offset: 0, length: 4000, equals: 0x11 }
  - { read: p, offset: 4000, length: 5000, equals: 0x33 }
  - { read: c, offset: 8000, length: 300, equals: 0x34 }
  - { read: c, offset: 8300, length: 3988, equals: 0x12 }
`;
    const s = parseScenario('pages.yaml', text);
    for (const profile of PROFILE_NAMES) {
      const r = runScenario(s, { profile });
      expect(r.findings, profile).toEqual([]);
      expect(r.bytes, profile).toEqual({ ok: true, detail: '6 byte condition(s) hold' });
    }
    const wrong = runScenario(parseScenario('pages.yaml', text.replace('equals: 0x33', 'equals: 0x35')), {
      profile: 'x86_64',
    });
    expect(wrong.bytes).toEqual({
      ok: false,
      detail: 'pages.yaml:17: final p+4000: expected 0x35 × 5000, got 0x33 at byte 0',
    });
  });
});

/** The kernel writes a heap buffer through its dma_buf_vmap mapping; a process then reads it through its mmap. */
function handover(bracket: boolean): string {
  const write = '      - kernelWrite: { buffer: frame, offset: 0, length: 4096, fill: 0x44 }\n';
  return `name: handover
intent: the kernel fills a dma-buf through dma_buf_vmap and a process reads it through its mmap
profiles: all
buffers: [{ name: frame, kind: heap, size: 8192, fill: 0x01 }]
agents:
  - name: k
    kind: kernel
    steps:
${
  bracket
    ? `      - dmaBufBeginCpuAccess: { buffer: frame, dir: DMA_TO_DEVICE }\n${write}      - dmaBufEndCpuAccess: { buffer: frame, dir: DMA_TO_DEVICE }\n`
    : write
}      - signal: written
  - name: app
    kind: process
    steps:
      - wait: written
      - mmap: { buffer: frame, as: view }
      - userRead: { map: view, offset: 0, length: 4096, expect: 0x44 }
      - userRead: { map: view, offset: 4096, length: 4096, expect: 0x01 }
final:
  - { read: frame, offset: 4096, length: 4096, equals: 0x01 }
`;
}

describe('heap buffers', () => {
  it('the exporter’s fill and the kernel’s writes through dma_buf_vmap reach the process’s mapping when bracketed', () => {
    const s = parseScenario('handover.yaml', handover(true));
    for (const profile of PROFILE_NAMES) {
      const r = runScenario(s, { profile });
      expect(r.findings, profile).toEqual([]);
      expect(r.bytes, profile).toEqual({ ok: true, detail: '3 byte condition(s) hold' });
    }
  });

  it('unbracketed, the vmap alias keeps the write from the user alias on PA-RISC’s virtually indexed cache', () => {
    const s = parseScenario('handover.yaml', handover(false));
    const seen = Object.fromEntries(
      PROFILE_NAMES.map((profile) => {
        const r = runScenario(s, { profile });
        return [profile, [r.verdict, ...r.findings.map((f) => f.code)]];
      }),
    );
    expect(seen).toEqual({
      x86_64: ['clean'],
      'arm64-coherent': ['clean'],
      'arm64-noncoherent': ['clean'],
      parisc: ['broken', 'STALE_DATA'],
      'parisc-pcxl': ['broken', 'STALE_DATA'],
      'swiotlb-force': ['clean'],
    });
  });
});
