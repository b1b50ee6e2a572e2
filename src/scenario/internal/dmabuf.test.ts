import { describe, expect, it } from 'vitest';
import { PROFILE_NAMES } from '../../machine/index.js';
import { parseScenario } from '../parse.js';
import { runScenario } from '../run.js';

/** The timeline as `agent: op`, signals and waits left out. */
function steps(r: { timeline: readonly { agent: string; op: string }[] }): string[] {
  return r.timeline.map((t) => `${t.agent}: ${t.op}`).filter((x) => !/: (signal|wait) /.test(x));
}

/** A camera writes a frame into a heap buffer its driver imported; `cpu` is how the driver reads it. */
function camera(cpu: string, heap = 'heap: system', machine = ''): string {
  return `name: cam
intent: a camera fills a dma-buf its importing driver then reads
profiles: all
${machine}devices: [{ name: cam }]
buffers: [{ name: frame, kind: heap, ${heap}, size: 8192, fill: 0 }]
agents:
  - name: driver
    kind: kernel
    steps:
      - dmaBufAttach: { buffer: frame, device: cam, as: att }
      - dmaBufMapAttachment: { attachment: att, dir: DMA_FROM_DEVICE, as: capture }
      - signal: mapped
      - wait: captured
${cpu}      - dmaBufUnmapAttachment: { mapping: capture }
      - dmaBufDetach: { attachment: att }
  - name: cam
    kind: device
    device: cam
    steps:
      - wait: mapped
      - deviceDmaWrite: { at: capture, offset: 0, length: 8192, fill: 0x66, duration: 2000 }
      - signal: captured
final:
  - { read: frame, offset: 0, length: 8192, equals: 0x66 }
`;
}

const READ = '      - kernelRead: { buffer: frame, offset: 4064, length: 64, expect: 0x66 }\n';
const BRACKETED = `      - dmaBufBeginCpuAccess: { buffer: frame, dir: DMA_FROM_DEVICE }
${READ}      - dmaBufEndCpuAccess: { buffer: frame, dir: DMA_FROM_DEVICE }
`;

describe('heap buffers and the importing driver’s steps', () => {
  it('an attachment mapped after its detach is a use after free: a DmalabError at the step, not a stack trace', () => {
    const text = camera(BRACKETED).replace(
      '      - signal: mapped\n',
      '      - dmaBufDetach: { attachment: att }\n      - dmaBufMapAttachment: { attachment: att, dir: DMA_TO_DEVICE, as: again }\n      - signal: mapped\n',
    );
    expect(() => runScenario(parseScenario('cam.yaml', text), { profile: 'x86_64' })).toThrow(
      /^cam\.yaml:13:9: dmaBufMapAttachment: dma-buf attachment \d+ no longer exists \(a use after free in the kernel\)$/,
    );
  });

  it('allocates with DMA_HEAP_IOCTL_ALLOC, attaches, maps, and reads through dma_buf_vmap inside the CPU bracket', () => {
    const s = parseScenario('cam.yaml', camera(BRACKETED));
    for (const profile of PROFILE_NAMES) {
      const r = runScenario(s, { profile });
      expect(r.findings, profile).toEqual([]);
      expect(r.bytes, profile).toEqual({ ok: true, detail: '2 byte condition(s) hold' });
    }
    expect(steps(runScenario(s, { profile: 'x86_64' }))).toEqual([
      'driver: dma_buf_attach(frame, cam) = att',
      'driver: dma_buf_map_attachment_unlocked(att, DMA_FROM_DEVICE) = 2 DMA segments from 0x1005000',
      'cam: cam writes 4096 at 0x1005000 (capture segment 1 of 2), a job of 1000 ns',
      'cam: cam writes 4096 at 0x1006000 (capture segment 2 of 2), a job of 1000 ns',
      'driver: dma_buf_begin_cpu_access(frame, DMA_FROM_DEVICE) = 0',
      'driver: kernelRead(frame+4064, 64)',
      'driver: dma_buf_end_cpu_access(frame, DMA_FROM_DEVICE) = 0',
      'driver: dma_buf_unmap_attachment_unlocked(cam, frame, DMA_FROM_DEVICE)',
      'driver: dma_buf_detach(frame, cam)',
    ]);
  });

  it('without begin_cpu_access the driver reads device-owned memory: stale where the cache kept the cleared lines', () => {
    const s = parseScenario('cam.yaml', camera(READ));
    const seen = Object.fromEntries(
      ['x86_64', 'arm64-noncoherent', 'swiotlb-force'].map((profile) => {
        const r = runScenario(s, { profile });
        return [profile, [r.verdict, ...r.findings.map((f) => f.code)]];
      }),
    );
    expect(seen).toEqual({
      x86_64: ['latent', 'OWNERSHIP'],
      'arm64-noncoherent': ['broken', 'OWNERSHIP', 'STALE_DATA', 'STALE_DATA'],
      'swiotlb-force': ['broken', 'OWNERSHIP', 'STALE_DATA', 'STALE_DATA'],
    });
    expect(runScenario(s, { profile: 'arm64-noncoherent' }).bytes).toEqual({
      ok: false,
      detail: 'cam.yaml:14: kernelRead(frame+4064, 64): expected 0x66 × 64, got 0x00 at byte 0',
    });
  });

  it('the reserved heap is one contiguous run: one DMA segment', () => {
    const arm = parseScenario(
      'cam.yaml',
      camera(BRACKETED, 'heap: reserved').replace('profiles: all', 'profiles: [arm64-noncoherent]'),
    );
    const r = runScenario(arm, { profile: 'arm64-noncoherent' });
    expect(r.findings).toEqual([]);
    expect(steps(r).filter((x) => x.startsWith('cam:'))).toEqual([
      'cam: cam writes 8192 at 0xf000000 (capture segment 1 of 1), a job of 2000 ns',
    ]);
    // x86 reserves no CMA area unless the scenario sets one.
    const x86 = parseScenario(
      'cam.yaml',
      camera(BRACKETED, 'heap: reserved', 'machine: { cmaBytes: 4194304 }\n').replace(
        'profiles: all',
        'profiles: [x86_64]',
      ),
    );
    const rx = runScenario(x86, { profile: 'x86_64' });
    expect(rx.findings).toEqual([]);
    expect(rx.bytes?.ok).toBe(true);
    expect(steps(rx)).toContain(
      'driver: dma_buf_map_attachment_unlocked(att, DMA_FROM_DEVICE) = 1 DMA segment from 0xfc00000',
    );
  });

  it('an attachment named before dmaBufAttach ran is a DmalabError at the using step', () => {
    const text = camera(BRACKETED)
      .replace('      - dmaBufAttach: { buffer: frame, device: cam, as: att }\n', '')
      .replace(
        '  - name: cam\n',
        '  - name: attacher\n    kind: kernel\n    steps:\n      - dmaBufAttach: { buffer: frame, device: cam, as: att }\n  - name: cam\n',
      );
    const errors = [0, 1, 2, 3, 4, 5].flatMap((seed) => {
      try {
        runScenario(parseScenario('cam.yaml', text), { profile: 'x86_64', seed });
        return [];
      } catch (e) {
        return [String(e)];
      }
    });
    expect(errors.length).toBeGreaterThan(0);
    for (const e of errors) {
      expect(e).toBe(
        "DmalabError: cam.yaml:10:9: attachment: attachment 'att' used before the step that makes it (wait for a signal first)",
      );
    }
  });
});

/** A process reads, through its mmap of the dma-buf fd, what a camera wrote; `sync` brackets the read. */
function viewer(sync: boolean): string {
  const read = '      - userRead: { map: view, offset: 0, length: 64, expect: 0x66 }\n';
  return `name: viewer
intent: a process reads a captured frame through its mmap of the dma-buf
profiles: all
devices: [{ name: cam }]
buffers: [{ name: frame, kind: heap, size: 8192, fill: 0 }]
agents:
  - name: driver
    kind: kernel
    steps:
      - dmaBufAttach: { buffer: frame, device: cam, as: att }
      - dmaBufMapAttachment: { attachment: att, dir: DMA_FROM_DEVICE, as: capture }
      - signal: mapped
  - name: app
    kind: process
    steps:
      - mmap: { buffer: frame, as: view }
      - userRead: { map: view, offset: 0, length: 64 }
      - signal: looked
      - wait: captured
${sync ? `      - dmaBufIoctlSync: { buffer: frame, flags: [START, READ] }\n${read}      - dmaBufIoctlSync: { buffer: frame, flags: [END, READ] }\n` : read}  - name: cam
    kind: device
    device: cam
    steps:
      - wait: mapped
      - wait: looked
      - deviceDmaWrite: { at: capture, offset: 0, length: 8192, fill: 0x66 }
      - signal: captured
`;
}

describe('a process’s mmap of a heap buffer and DMA_BUF_IOCTL_SYNC', () => {
  it('the process gets its own fd for the buffer, maps it, and the sync ioctl brackets its read', () => {
    const r = runScenario(parseScenario('viewer.yaml', viewer(true)), { profile: 'arm64-noncoherent' });
    expect(r.findings).toEqual([]);
    expect(r.bytes).toEqual({ ok: true, detail: '1 byte condition(s) hold' });
    expect(steps(r).filter((x) => x.startsWith('app:'))).toEqual([
      'app: mmap(dma-buf frame fd 3, 8192) = 0x7ffeffffe000',
      'app: userRead(view+0, 64)',
      'app: ioctl(frame fd 3, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_START|DMA_BUF_SYNC_READ) = 0',
      'app: userRead(view+0, 64)',
      'app: ioctl(frame fd 3, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END|DMA_BUF_SYNC_READ) = 0',
    ]);
  });

  it('without the ioctl the process reads its stale line where the device does not snoop', () => {
    const s = parseScenario('viewer.yaml', viewer(false));
    const seen = Object.fromEntries(
      PROFILE_NAMES.map((profile) => {
        const r = runScenario(s, { profile });
        return [profile, [r.verdict, ...new Set(r.findings.map((f) => f.code))]];
      }),
    );
    expect(seen).toEqual({
      x86_64: ['latent', 'OWNERSHIP'],
      'arm64-coherent': ['latent', 'OWNERSHIP'],
      'arm64-noncoherent': ['broken', 'OWNERSHIP', 'STALE_DATA'],
      parisc: ['broken', 'OWNERSHIP', 'STALE_DATA'],
      'parisc-pcxl': ['broken', 'OWNERSHIP', 'STALE_DATA'],
      'swiotlb-force': ['broken', 'OWNERSHIP', 'STALE_DATA'],
    });
  });
});

/** A driver publishes a software fence as the heap buffer's writer and signals it 1000 ns later; `reader` then waits for it. */
function fencedLater(reader: string): string {
  return `name: later
intent: a CPU access bracket waits for a writer's fence another agent signals later
profiles: [x86_64]
buffers: [{ name: h, kind: heap, size: 4096 }]
agents:
  - name: drv
    kind: kernel
    steps:
      - dmaFenceInit: { as: f }
      - dmaResvAddFence: { buffer: h, fence: f, usage: WRITE }
      - signal: added
      - sleep: 1000
      - dmaFenceSignal: { fence: f }
${reader}`;
}

/** The timeline as `time agent: op`. */
function timed(r: { timeline: readonly { time: number; agent: string; op: string }[] }): string[] {
  return r.timeline.map((t) => `${t.time} ${t.agent}: ${t.op}`);
}

describe('CPU access brackets block the agent on the reservation object’s fences', () => {
  it('DMA_BUF_IOCTL_SYNC START blocks the process until the writer’s fence signals; END waits for nothing', () => {
    const text = fencedLater(`  - name: app
    kind: process
    steps:
      - wait: added
      - dmaBufIoctlSync: { buffer: h, flags: [START, READ] }
      - dmaBufIoctlSync: { buffer: h, flags: [END, READ] }
`);
    const r = runScenario(parseScenario('later.yaml', text), { profile: 'x86_64' });
    expect(r.findings).toEqual([]);
    expect(timed(r)).toEqual([
      '0 drv: dma_fence_init = f (fence 1:1)',
      '0 app: wait added',
      '0 drv: dma_resv_add_fence(h, f, DMA_RESV_USAGE_WRITE)',
      '0 drv: signal added',
      '0 drv: sleep 1000 ns',
      "0 app: blocks on h's fence 1:1",
      '1000 drv: dma_fence_signal(f)',
      '1000 app: ioctl(h fd 3, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_START|DMA_BUF_SYNC_READ) = 0',
      '1000 app: ioctl(h fd 3, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_END|DMA_BUF_SYNC_READ) = 0',
    ]);
  });

  it('dma_buf_begin_cpu_access blocks the kernel agent until the writer’s fence signals', () => {
    const text = fencedLater(`  - name: reader
    kind: kernel
    steps:
      - wait: added
      - dmaBufBeginCpuAccess: { buffer: h, dir: DMA_FROM_DEVICE }
      - dmaBufEndCpuAccess: { buffer: h, dir: DMA_FROM_DEVICE }
`);
    const r = runScenario(parseScenario('later.yaml', text), { profile: 'x86_64' });
    expect(r.findings).toEqual([]);
    expect(timed(r)).toEqual([
      '0 drv: dma_fence_init = f (fence 1:1)',
      '0 reader: wait added',
      '0 drv: dma_resv_add_fence(h, f, DMA_RESV_USAGE_WRITE)',
      '0 drv: signal added',
      '0 drv: sleep 1000 ns',
      "0 reader: blocks on h's fence 1:1",
      '1000 drv: dma_fence_signal(f)',
      '1000 reader: dma_buf_begin_cpu_access(h, DMA_FROM_DEVICE) = 0',
      '1000 reader: dma_buf_end_cpu_access(h, DMA_FROM_DEVICE) = 0',
    ]);
  });
});

describe('a CPU access bracket on a fence nothing signals', () => {
  /** The fence is published as the writer's and never signalled: the wait ends at khungtaskd's 120 s. */
  const never = (reader: string): string =>
    fencedLater(reader).replace('      - sleep: 1000\n      - dmaFenceSignal: { fence: f }\n', '');

  it('DMA_BUF_IOCTL_SYNC START returns -ERESTARTSYS, named as the kernel names it', () => {
    const r = runScenario(
      parseScenario(
        'never.yaml',
        never(`  - name: app
    kind: process
    steps:
      - wait: added
      - dmaBufIoctlSync: { buffer: h, flags: [START, READ] }
`),
      ),
      { profile: 'x86_64' },
    );
    expect(r.findings.map((f) => f.code)).toEqual(['HUNG_TASK']);
    expect(timed(r).at(-1)).toBe(
      '120000000000 app: ioctl(h fd 3, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_START|DMA_BUF_SYNC_READ) = -ERESTARTSYS',
    );
    expect(r.bytes).toEqual({
      ok: false,
      detail:
        'never.yaml:16: ioctl(h fd 3, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC_START|DMA_BUF_SYNC_READ) = -ERESTARTSYS',
    });
  });

  it('dma_buf_begin_cpu_access returns -ERESTARTSYS, named as the kernel names it', () => {
    const r = runScenario(
      parseScenario(
        'never.yaml',
        never(`  - name: reader
    kind: kernel
    steps:
      - wait: added
      - dmaBufBeginCpuAccess: { buffer: h, dir: DMA_TO_DEVICE }
`),
      ),
      { profile: 'x86_64' },
    );
    expect(r.findings.map((f) => f.code)).toEqual(['HUNG_TASK']);
    expect(timed(r).at(-1)).toBe(
      '120000000000 reader: dma_buf_begin_cpu_access(h, DMA_TO_DEVICE) = -ERESTARTSYS',
    );
    expect(r.bytes).toEqual({
      ok: false,
      detail: 'never.yaml:16: dma_buf_begin_cpu_access(h, DMA_TO_DEVICE) = -ERESTARTSYS',
    });
  });
});
