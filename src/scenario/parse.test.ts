import { describe, expect, it } from 'vitest';
import { DmalabError } from '../machine/index.js';
import { parseScenario } from './parse.js';
import { runScenario } from './run.js';
import { STEP_OPS } from './schema.js';

const GOOD = `name: tiny
intent: a device writes a coherent buffer the kernel then reads
profiles: [x86_64, parisc]
expect:
  parisc: clean
devices:
  - name: dev0
buffers:
  - { name: buf, kind: coherent, device: dev0, size: 4096 }
agents:
  - name: engine
    kind: device
    device: dev0
    steps:
      - deviceDmaWrite: { at: buf, length: 8, fill: 0x5a }
final:
  - { read: buf, length: 8, equals: 0x5a }
`;

/** The DmalabError a bad file raises, as its location and message. */
function failure(text: string): { line?: number; column?: number; field?: string; message: string } {
  try {
    parseScenario('bad.yaml', text);
  } catch (e) {
    if (!(e instanceof DmalabError)) throw e;
    const { line, column, field } = e.location;
    return {
      ...(line !== undefined ? { line } : {}),
      ...(column !== undefined ? { column } : {}),
      ...(field !== undefined ? { field } : {}),
      message: e.message,
    };
  }
  throw new Error('expected a DmalabError');
}

describe('parseScenario', () => {
  it('reads a good file into a scenario', () => {
    const s = parseScenario('tiny.yaml', GOOD);
    expect(s).toMatchObject({
      name: 'tiny',
      profiles: ['x86_64', 'parisc'],
      expect: { parisc: 'clean' },
      source: 'tiny.yaml',
      machine: {},
    });
    expect(s.body).toEqual({
      kind: 'declarative',
      devices: [{ name: 'dev0' }],
      buffers: [{ name: 'buf', kind: 'coherent', device: 'dev0', size: 4096 }],
      agents: [
        {
          name: 'engine',
          kind: 'device',
          device: 'dev0',
          steps: [{ op: 'deviceDmaWrite', args: { at: 'buf', length: 8, fill: 0x5a }, line: 15, column: 9 }],
        },
      ],
      final: [{ read: 'buf', offset: 0, length: 8, equals: 0x5a, line: 17 }],
    });
  });

  it('"profiles: all" is every built-in profile', () => {
    const s = parseScenario('t.yaml', GOOD.replace('profiles: [x86_64, parisc]', 'profiles: all'));
    expect(s.profiles).toHaveLength(6);
  });

  it('names file, line, column and field for bad YAML', () => {
    const f = failure('name: x\nintent: [unclosed\n');
    expect(f.message).toMatch(/^bad\.yaml:\d+:\d+: \(file\): not valid YAML: /);
  });

  it('refuses an empty file, a list, duplicate keys and several documents, each at its place', () => {
    expect(failure('').message).toBe(
      'bad.yaml:1:1: (file): a scenario file is a map of fields (name, intent, agents, …)',
    );
    expect(failure('- a\n').message).toMatch(/^bad\.yaml:1:1: \(file\): a scenario file is a map/);
    expect(failure('name: x\nname: y\n').message).toBe(
      'bad.yaml:2:1: (file): not valid YAML: Map keys must be unique',
    );
    expect(failure('a: 1\n---\nb: 2\n').message).toBe(
      'bad.yaml:2:1: (file): one scenario per file, and this file holds several YAML documents',
    );
  });

  it('names an unknown field at its key', () => {
    expect(failure(GOOD.replace('  - name: dev0', '  - name: dev0\n    colour: red'))).toEqual({
      line: 8,
      column: 5,
      field: 'devices[0].colour',
      message: 'bad.yaml:8:5: devices[0].colour: unknown field',
    });
  });

  it('names an unknown profile', () => {
    const f = failure(GOOD.replace('[x86_64, parisc]', '[x86_64, sparc]'));
    expect(f).toMatchObject({ line: 3, column: 20, field: 'profiles[1]' });
    expect(f.message).toContain('got "sparc"');
  });

  it('names a wrong type, a missing field and a bad verdict', () => {
    expect(failure(GOOD.replace('size: 4096', 'size: big'))).toMatchObject({
      line: 9,
      field: 'buffers[0].size',
    });
    expect(
      failure(GOOD.replace('intent: a device writes a coherent buffer the kernel then reads\n', '')),
    ).toMatchObject({
      line: 1,
      field: 'intent',
    });
    expect(failure(GOOD.replace('parisc: clean', 'parisc: fine'))).toMatchObject({
      line: 5,
      column: 11,
      field: 'expect.parisc',
    });
  });

  it('names an unknown step, a step the agent cannot take, and bad step arguments', () => {
    expect(failure(GOOD.replace('deviceDmaWrite:', 'deviceDmaScribble:')).message).toMatch(
      /^bad\.yaml:15:9: agents\[0\]\.steps\[0\]\.deviceDmaScribble: unknown step 'deviceDmaScribble'/,
    );
    expect(
      failure(
        GOOD.replace(
          'deviceDmaWrite: { at: buf, length: 8, fill: 0x5a }',
          'kernelRead: { buffer: buf, length: 8 }',
        ),
      ).message,
    ).toContain("a device agent cannot take a 'kernelRead' step (kernel only)");
    expect(failure(GOOD.replace('fill: 0x5a }', 'fill: 300 }'))).toMatchObject({
      line: 15,
      field: 'agents[0].steps[0].deviceDmaWrite.fill',
    });
  });

  it('names references to things that do not exist', () => {
    expect(failure(GOOD.replace('at: buf', 'at: nothing'))).toMatchObject({
      field: 'agents[0].steps[0].deviceDmaWrite.at',
      message: expect.stringContaining("no DMA mapping or coherent buffer named 'nothing'"),
    });
    expect(failure(GOOD.replace('device: dev0\n    steps', 'device: dev9\n    steps'))).toMatchObject({
      line: 13,
      field: 'agents[0].device',
    });
    expect(failure(GOOD.replace('read: buf', 'read: elsewhere'))).toMatchObject({
      line: 17,
      field: 'final[0].read',
    });
  });

  it('refuses a device access to a kmalloc buffer that was never mapped', () => {
    const text = GOOD.replace('kind: coherent, device: dev0,', 'kind: kmalloc,');
    expect(failure(text).message).toBe(
      "bad.yaml:15:31: agents[0].steps[0].deviceDmaWrite.at: no DMA mapping or coherent buffer named 'buf' (a kmalloc buffer has no bus address until dmaMapSingle maps it)",
    );
  });

  it('refuses an expectation on a profile the scenario does not run on', () => {
    expect(failure(GOOD.replace('parisc: clean', 'arm64-coherent: clean'))).toMatchObject({
      line: 5,
      field: 'expect.arm64-coherent',
    });
  });

  it('refuses an alias bomb as bad YAML rather than expanding it', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]']
      .concat(['b', 'c', 'd'].map((k, i) => `${k}: &${k} [${Array(10).fill(`*${'abc'[i]}`).join(', ')}]`))
      .concat([`e: [${Array(10).fill('*d').join(', ')}]`])
      .join('\n');
    expect(failure(bomb).message).toMatch(/^bad\.yaml:1:1: \(file\): not valid YAML: .*alias/i);
  });

  it('bounds offset + length by the buffer, the mapping and the user mapping, and sizes by RAM', () => {
    expect(failure(GOOD.replace('length: 8, fill', 'length: 5000000000, fill'))).toEqual({
      line: 15,
      column: 44,
      field: 'agents[0].steps[0].deviceDmaWrite.length',
      message: expect.stringContaining("offset + length is 5000000000, past the end of 'buf' (4096 bytes)"),
    });
    expect(failure(GOOD.replace('length: 8, equals', 'offset: 4090, length: 8, equals')).message).toContain(
      "final[0].length: offset + length is 4098, past the end of 'buf' (4096 bytes)",
    );
    expect(failure(GOOD.replace('size: 4096', 'size: 1000000000000')).message).toContain(
      `buffers[0].size: 1000000000000 bytes is more than the machine's ${2 ** 28} bytes of RAM`,
    );
    expect(failure(GOOD.replace('size: 4096', 'size: 5000000000000')).message).toContain(
      'buffers[0].size: must be at most 4398046511104',
    );
    const mapped = `name: m
intent: a kmalloc buffer mapped in part, then the device writes past the mapping
devices: [{ name: d }]
buffers: [{ name: k, kind: kmalloc, size: 4096 }]
agents:
  - name: drv
    kind: kernel
    steps:
      - dmaMapSingle: { device: d, buffer: k, offset: 4000, size: 200, dir: DMA_FROM_DEVICE, as: m }
`;
    expect(failure(mapped).message).toContain(
      "agents[0].steps[0].dmaMapSingle.size: offset + size is 4200, past the end of 'k' (4096 bytes)",
    );
    const dev = `${mapped.replace('offset: 4000, size: 200', 'size: 64')}  - name: eng
    kind: device
    device: d
    steps:
      - deviceDmaWrite: { at: m, offset: 32, length: 64, fill: 1 }
`;
    expect(failure(dev).message).toContain(
      "agents[1].steps[0].deviceDmaWrite.length: offset + length is 96, past the end of 'm' (64 bytes)",
    );
  });

  it("checks machine options by createMachine's rules at their line, and a run names the file", () => {
    const withMachine = (m: string): string => GOOD.replace('devices:', `machine: { ${m} }\ndevices:`);
    expect(failure(withMachine('ramBytes: 1')).message).toMatch(
      /^bad\.yaml:6:\d+: machine\.ramBytes: must be at least 8 MiB/,
    );
    expect(failure(withMachine('ramBytes: 8392704, swiotlbBytes: 5')).message).toMatch(
      /^bad\.yaml:6:\d+: machine\.swiotlbBytes: must be a multiple of 2048/,
    );
    const s = parseScenario('tiny.yaml', GOOD);
    const bad = { ...s, machine: { ...s.machine, ramBytes: 1 } };
    expect(() => runScenario(bad, { profile: 'x86_64' })).toThrow(/^tiny\.yaml: ramBytes: /);
  });

  it('refuses a wait that no agent signals, at the wait', () => {
    expect(failure(GOOD.replace('    steps:\n', '    steps:\n      - wait: never\n'))).toMatchObject({
      line: 15,
      field: 'agents[0].steps[0].wait',
      message: expect.stringContaining("waits for 'never', which no agent signals"),
    });
  });
});

/** A file with every new buffer kind and step: a pages buffer mapped for a NIC, a heap buffer shared with a display. */
const SG = `name: sg-and-dmabuf
intent: a scatter-gather receive and a dma-buf frame in one file
profiles: [x86_64]
devices:
  - name: nic
  - name: disp
buffers:
  - { name: rx, kind: pages, pages: 4, fill: 0 }
  - { name: frame, kind: heap, size: 8192 }
  - { name: k, kind: kmalloc, size: 4096 }
agents:
  - name: driver
    kind: kernel
    steps:
      - dmaMapSgtable: { device: nic, buffer: rx, dir: DMA_FROM_DEVICE, as: rxmap }
      - dmaBufAttach: { buffer: frame, device: nic, as: crtc }
      - dmaBufMapAttachment: { attachment: crtc, dir: DMA_TO_DEVICE, as: scanout }
      - signal: mapped
      - wait: done
      - dmaSyncSgtableForCpu: { mapping: rxmap }
      - dmaBufBeginCpuAccess: { buffer: frame, dir: DMA_TO_DEVICE }
      - dmaBufEndCpuAccess: { buffer: frame, dir: DMA_TO_DEVICE }
      - dmaUnmapSgtable: { mapping: rxmap }
      - dmaBufUnmapAttachment: { mapping: scanout }
      - dmaBufDetach: { attachment: crtc }
  - name: app
    kind: process
    steps:
      - mmap: { buffer: frame, as: fb }
      - dmaBufIoctlSync: { buffer: frame, flags: [START, WRITE] }
      - userWrite: { map: fb, length: 8192, fill: 1 }
      - dmaBufIoctlSync: { buffer: frame, flags: [END, WRITE] }
  - name: eng
    kind: device
    device: nic
    steps:
      - wait: mapped
      - deviceDmaWrite: { at: rxmap, offset: 4000, length: 200, fill: 2 }
      - deviceDmaRead: { at: scanout, length: 8192 }
      - signal: done
final:
  - { read: rx, offset: 4000, length: 200, equals: 2 }
`;

/** SG with `from` replaced by `to` (it must be there). */
function sg(from: string, to: string, text = SG): string {
  if (!text.includes(from)) throw new Error(`not in the file: ${from}`);
  return text.replace(from, to);
}

/** `bad.yaml:LINE:COLUMN` of `token`, found right after `before` on the first line holding both. */
function at(text: string, before: string, token: string): string {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.includes(before + token));
  if (i < 0) throw new Error(`not in the file: ${before}${token}`);
  return `bad.yaml:${i + 1}:${lines[i]!.indexOf(before + token) + before.length + 1}`;
}

/** The message a variant of SG fails with, and where it points, checked against the text itself. */
function refused(text: string, before: string, token: string, field: string, message: string): void {
  expect(failure(text).message).toBe(`${at(text, before, token)}: ${field}: ${message}`);
}

describe('parseScenario: pages and heap buffers, sg_table and dma-buf steps', () => {
  it('reads the new buffer kinds and steps', () => {
    const s = parseScenario('sg.yaml', SG);
    if (s.body.kind !== 'declarative') throw new Error('declarative');
    expect(s.body.buffers).toEqual([
      { name: 'rx', kind: 'pages', pages: 4, fill: 0 },
      { name: 'frame', kind: 'heap', heap: 'system', size: 8192 },
      { name: 'k', kind: 'kmalloc', size: 4096 },
    ]);
    expect(s.body.agents[1]!.steps[1]).toEqual({
      op: 'dmaBufIoctlSync',
      args: { buffer: 'frame', flags: ['START', 'WRITE'] },
      line: 30,
      column: 9,
    });
    expect(s.body.agents[0]!.steps.map((x) => x.op)).toEqual([
      'dmaMapSgtable',
      'dmaBufAttach',
      'dmaBufMapAttachment',
      'signal',
      'wait',
      'dmaSyncSgtableForCpu',
      'dmaBufBeginCpuAccess',
      'dmaBufEndCpuAccess',
      'dmaUnmapSgtable',
      'dmaBufUnmapAttachment',
      'dmaBufDetach',
    ]);
  });

  it('refuses a pages buffer of no pages, of more pages than RAM, or a contiguous block past MAX_PAGE_ORDER', () => {
    const zero = sg('pages: 4,', 'pages: 0,');
    expect(failure(zero)).toEqual({
      line: 8,
      column: 37,
      field: 'buffers[0].pages',
      message: 'bad.yaml:8:37: buffers[0].pages: must be at least 1',
    });
    refused(sg('pages: 4,', 'pages: 2.5,'), 'pages: ', '2.5', 'buffers[0].pages', 'must be an integer');
    refused(
      sg('pages: 4,', 'pages: 65537,'),
      'pages: ',
      '65537',
      'buffers[0].pages',
      `65537 pages (268439552 bytes) is more than the machine's ${2 ** 28} bytes of RAM`,
    );
    refused(
      sg('pages: 4,', 'pages: 1025, contiguous: true,'),
      'pages: ',
      '1025',
      'buffers[0].pages',
      'a contiguous block is at most 1024 pages (order 10, MAX_PAGE_ORDER)',
    );
    expect(parseScenario('ok.yaml', sg('pages: 4,', 'pages: 1024, contiguous: true,')).name).toBe(
      'sg-and-dmabuf',
    );
  });

  it('names a field that belongs to another kind of buffer, with what to write instead', () => {
    refused(
      sg('pages: 4,', 'pages: 4, size: 16384,'),
      'pages: 4, ',
      'size',
      'buffers[0].size',
      'unknown field: a pages buffer is pages × 4096 bytes (pages: N)',
    );
    refused(
      sg('kind: heap,', 'kind: heap, device: disp,'),
      'heap, ',
      'device',
      'buffers[1].device',
      'unknown field: a dma-buf belongs to no device; importers attach it with dmaBufAttach',
    );
    refused(
      sg('kind: kmalloc,', 'kind: kmalloc, contiguous: true,'),
      'kmalloc, ',
      'contiguous',
      'buffers[2].contiguous',
      'unknown field: only a pages buffer may be contiguous (kind: pages)',
    );
    refused(
      sg('kind: pages,', 'kind: slab,'),
      'kind: ',
      'slab',
      'buffers[0].kind',
      'must be one of "coherent" | "coherent-for-mmap" | "kmalloc" | "pages" | "heap", got "slab"',
    );
  });

  it('refuses heap sizes out of range, an unknown heap, and the reserved heap where a profile has no CMA area', () => {
    refused(sg('size: 8192 }', 'size: 0 }'), 'size: ', '0 }', 'buffers[1].size', 'must be at least 1');
    refused(
      sg('size: 8192 }', 'size: 300000000 }'),
      'size: ',
      '300000000',
      'buffers[1].size',
      `300000000 bytes is more than the machine's ${2 ** 28} bytes of RAM`,
    );
    refused(
      sg('kind: heap,', 'kind: heap, heap: carveout,'),
      'heap: ',
      'carveout',
      'buffers[1].heap',
      'must be one of "system" | "reserved", got "carveout"',
    );
    const reserved = sg('kind: heap,', 'kind: heap, heap: reserved,');
    expect(failure(reserved)).toMatchObject({ line: 9, field: 'buffers[1].heap' });
    refused(
      reserved,
      'heap: ',
      'reserved',
      'buffers[1].heap',
      "the reserved heap is the machine's CMA area, and x86_64 reserves none by default: set machine.cmaBytes (a multiple of 4 MiB)",
    );
    // arm64 reserves RAM/16 by default (16 MiB of a scenario's 256 MiB); machine.cmaBytes sets it anywhere.
    const arm = sg('profiles: [x86_64]', 'profiles: [arm64-noncoherent]', reserved);
    expect(parseScenario('ok.yaml', arm).name).toBe('sg-and-dmabuf');
    refused(
      sg('size: 8192 }', 'size: 16781312 }', arm),
      'size: ',
      '16781312',
      'buffers[1].size',
      "the reserved heap's buffers take 16781312 bytes up to here, more than the CMA area's 16777216",
    );
    const x86 = sg('devices:', 'machine: { cmaBytes: 4194304 }\ndevices:', reserved);
    expect(parseScenario('ok.yaml', x86).machine).toEqual({ cmaBytes: 4194304 });
    refused(
      sg('cmaBytes: 4194304', 'cmaBytes: 1000', x86),
      'cmaBytes: ',
      '1000',
      'machine.cmaBytes',
      'must be a multiple of 4 MiB (4194304)',
    );
    refused(
      sg('cmaBytes: 4194304', 'cmaBytes: 268435456', x86),
      'cmaBytes: ',
      '268435456',
      'machine.cmaBytes',
      'must leave room for the kernel and swiotlb: at most half the RAM below 4 GiB (134217728)',
    );
    // The largest area the rule allows boots on every profile.
    const half = parseScenario('ok.yaml', sg('cmaBytes: 4194304', 'cmaBytes: 134217728', x86));
    expect(runScenario(half, { profile: 'x86_64' }).findings).toEqual([]);
  });

  it('refuses a step on a buffer of the wrong kind, saying which step fits', () => {
    const kmallocSg = sg('buffer: rx, dir: DMA_FROM_DEVICE', 'buffer: k, dir: DMA_FROM_DEVICE');
    expect(failure(kmallocSg)).toEqual({
      line: 15,
      column: 47,
      field: 'agents[0].steps[0].dmaMapSgtable.buffer',
      message:
        "bad.yaml:15:47: agents[0].steps[0].dmaMapSgtable.buffer: 'k' is a kmalloc buffer: only a pages buffer has an sg_table; map a kmalloc buffer with dmaMapSingle",
    });
    refused(
      sg(
        '      - signal: mapped\n',
        '      - dmaMapSingle: { device: nic, buffer: rx, size: 64, dir: DMA_TO_DEVICE, as: s }\n      - signal: mapped\n',
      ),
      'buffer: ',
      'rx, size',
      'agents[0].steps[3].dmaMapSingle.buffer',
      "'rx' is a pages buffer: a pages buffer is mapped with dmaMapSgtable, a heap buffer through dmaBufAttach",
    );
    refused(
      sg('buffer: frame, device: nic', 'buffer: rx, device: nic'),
      'buffer: ',
      'rx, device',
      'agents[0].steps[1].dmaBufAttach.buffer',
      "'rx' is a pages buffer: only a heap buffer is a dma-buf",
    );
    refused(
      sg('mmap: { buffer: frame', 'mmap: { buffer: rx'),
      'mmap: { buffer: ',
      'rx',
      'agents[1].steps[0].mmap.buffer',
      "'rx' is a pages buffer: only a coherent buffer (/dev/<name>) or a heap buffer (its dma-buf fd) has a file to mmap",
    );
    refused(
      sg('{ buffer: frame, flags: [START', '{ buffer: k, flags: [START'),
      'buffer: ',
      'k, flags',
      'agents[1].steps[1].dmaBufIoctlSync.buffer',
      "'k' is a kmalloc buffer: only a heap buffer has a dma-buf fd",
    );
  });

  it('refuses an unknown attachment, and a mapping named by a step of another kind of mapping', () => {
    refused(
      sg('attachment: crtc, dir', 'attachment: crtx, dir'),
      'attachment: ',
      'crtx',
      'agents[0].steps[2].dmaBufMapAttachment.attachment',
      "no attachment named 'crtx' (dmaBufAttach … as)",
    );
    refused(
      sg('dmaBufDetach: { attachment: crtc }', 'dmaBufDetach: { attachment: rxmap }'),
      'attachment: ',
      'rxmap',
      'agents[0].steps[10].dmaBufDetach.attachment',
      "no attachment named 'rxmap' (dmaBufAttach … as)",
    );
    refused(
      sg('dmaSyncSgtableForCpu: { mapping: rxmap }', 'dmaSyncSingleForCpu: { mapping: rxmap }'),
      'mapping: ',
      'rxmap',
      'agents[0].steps[5].dmaSyncSingleForCpu.mapping',
      "'rxmap' is a dmaMapSgtable mapping, which dmaUnmapSgtable and dmaSyncSgtableFor{Cpu,Device} take, not dmaSyncSingleForCpu",
    );
    refused(
      sg('dmaUnmapSgtable: { mapping: rxmap }', 'dmaUnmapSgtable: { mapping: scanout }'),
      'mapping: ',
      'scanout',
      'agents[0].steps[8].dmaUnmapSgtable.mapping',
      "'scanout' is a dmaBufMapAttachment mapping, which dmaBufUnmapAttachment takes, not dmaUnmapSgtable",
    );
    refused(
      sg('dmaBufUnmapAttachment: { mapping: scanout }', 'dmaBufUnmapAttachment: { mapping: nothing }'),
      'mapping: ',
      'nothing',
      'agents[0].steps[9].dmaBufUnmapAttachment.mapping',
      "no DMA mapping named 'nothing'",
    );
    refused(
      sg('dir: DMA_TO_DEVICE, as: scanout', 'dir: DMA_TO_DEVICE, as: rxmap'),
      'DMA_TO_DEVICE, as: ',
      'rxmap',
      'agents[0].steps[2].dmaBufMapAttachment.as',
      "'rxmap' already names a dmaMapSgtable mapping",
    );
  });

  it('refuses a flags list that is not a DMA_BUF_SYNC_* combination', () => {
    const rule =
      'must be START or END and a direction (READ, WRITE or RW), each once: [START, READ], [END, WRITE], [START, RW]';
    const field = 'agents[1].steps[1].dmaBufIoctlSync.flags';
    const flags = (f: string) => sg('flags: [START, WRITE]', `flags: ${f}`);
    for (const bad of ['[START, END, READ]', '[READ]', '[START]', '[START, READ, READ]', '[]']) {
      refused(flags(bad), 'flags: ', bad, field, rule);
    }
    refused(
      flags('[START, SYNC]'),
      'START, ',
      'SYNC',
      `${field}[1]`,
      'must be one of "START" | "END" | "READ" | "WRITE" | "RW", got "SYNC"',
    );
    expect(failure(flags('START')).message).toMatch(
      /^bad\.yaml:30:\d+: agents\[1\]\.steps\[1\]\.dmaBufIoctlSync\.flags: .*Expected Array/,
    );
    for (const ok of ['[START, READ]', '[END, RW]', '[START, READ, WRITE]', '[WRITE, END]']) {
      expect(parseScenario('ok.yaml', flags(ok)).name, ok).toBe('sg-and-dmabuf');
    }
  });

  it('bounds a device transfer by the buffer behind an sg_table or dma-buf mapping, and names buffers with no bus address', () => {
    refused(
      sg('offset: 4000, length: 200', 'offset: 16000, length: 400'),
      'length: ',
      '400',
      'agents[2].steps[1].deviceDmaWrite.length',
      "offset + length is 16400, past the end of 'rxmap' (16384 bytes)",
    );
    refused(
      sg('at: scanout, length: 8192', 'at: scanout, length: 8193'),
      'length: ',
      '8193',
      'agents[2].steps[2].deviceDmaRead.length',
      "offset + length is 8193, past the end of 'scanout' (8192 bytes)",
    );
    refused(
      sg('at: rxmap,', 'at: rx,'),
      'at: ',
      'rx,',
      'agents[2].steps[1].deviceDmaWrite.at',
      "no DMA mapping or coherent buffer named 'rx' (a pages buffer has no bus address until dmaMapSgtable maps it)",
    );
    refused(
      sg('at: scanout,', 'at: frame,'),
      'at: ',
      'frame',
      'agents[2].steps[2].deviceDmaRead.at',
      "no DMA mapping or coherent buffer named 'frame' (a heap buffer is reached through an attachment mapped with dmaBufMapAttachment)",
    );
    refused(
      sg('offset: 4000, length: 200, equals', 'offset: 16000, length: 400, equals'),
      'length: ',
      '400, equals',
      'final[0].length',
      "offset + length is 16400, past the end of 'rx' (16384 bytes)",
    );
  });

  it('lets only the kernel take dma-buf driver steps and only a process the sync ioctl', () => {
    refused(
      sg(
        '      - mmap: { buffer: frame, as: fb }\n',
        '      - dmaBufBeginCpuAccess: { buffer: frame, dir: DMA_BIDIRECTIONAL }\n',
      ),
      '- ',
      'dmaBufBeginCpuAccess: { buffer: frame, dir: DMA_BI',
      'agents[1].steps[0].dmaBufBeginCpuAccess',
      "a process agent cannot take a 'dmaBufBeginCpuAccess' step (kernel only)",
    );
    expect(
      failure(
        sg(
          '      - signal: mapped\n',
          '      - dmaBufIoctlSync: { buffer: frame, flags: [START, READ] }\n      - signal: mapped\n',
        ),
      ).message,
    ).toContain(
      "agents[0].steps[3].dmaBufIoctlSync: a kernel agent cannot take a 'dmaBufIoctlSync' step (process only)",
    );
  });
});

describe('one name, one thing', () => {
  /** A kmalloc buffer `k`, a coherent `c`, and the steps of a kernel agent then a process. */
  const names = (kernel: string, proc = '      - sleep: 1\n'): string => `name: names
intent: names bound by steps
profiles: [x86_64]
devices: [{ name: nic }]
buffers:
  - { name: k, kind: kmalloc, size: 64 }
  - { name: c, kind: coherent, device: nic, size: 4096 }
  - { name: h, kind: heap, size: 4096 }
agents:
  - name: drv
    kind: kernel
    steps:
${kernel}  - name: app
    kind: process
    steps:
${proc}`;

  it('refuses a mapping named as a buffer, where a device step would have found the buffer', () => {
    expect(
      failure(
        names('      - dmaMapSingle: { device: nic, buffer: k, size: 64, dir: DMA_FROM_DEVICE, as: c }\n'),
      ),
    ).toEqual({
      line: 13,
      column: 85,
      field: 'agents[0].steps[0].dmaMapSingle.as',
      message:
        "bad.yaml:13:85: agents[0].steps[0].dmaMapSingle.as: 'c' already names a buffer (line 7): a name binds one kind of thing",
    });
  });

  it('refuses a user map named as a buffer, where the final condition would have read the other', () => {
    expect(failure(names('      - sleep: 1\n', '      - mmap: { buffer: c, as: k }\n'))).toEqual({
      line: 17,
      column: 32,
      field: 'agents[1].steps[0].mmap.as',
      message:
        "bad.yaml:17:32: agents[1].steps[0].mmap.as: 'k' already names a buffer (line 6): a name binds one kind of thing",
    });
  });

  it('refuses an attachment, a fence or a sync_file named as another kind of thing', () => {
    const attach = '      - dmaBufAttach: { buffer: h, device: nic, as: att }\n';
    expect(failure(names(`${attach}      - dmaFenceInit: { as: att }\n`)).message).toBe(
      "bad.yaml:14:29: agents[0].steps[1].dmaFenceInit.as: 'att' already names an attachment (line 13): a name binds one kind of thing",
    );
    expect(
      failure(
        names(
          `${attach}      - dmaBufMapAttachment: { attachment: att, dir: DMA_FROM_DEVICE, as: m }\n`,
          '      - dmaBufExportSyncFile: { buffer: h, flags: [READ], as: m }\n',
        ),
      ).message,
    ).toBe(
      "bad.yaml:18:63: agents[1].steps[0].dmaBufExportSyncFile.as: 'm' already names a DMA mapping (line 14): a name binds one kind of thing",
    );
    expect(
      failure(
        names(
          `${attach}      - dmaMapSingle: { device: nic, buffer: k, size: 64, dir: DMA_TO_DEVICE, as: att }\n`,
        ),
      ).message,
    ).toBe(
      "bad.yaml:14:83: agents[0].steps[1].dmaMapSingle.as: 'att' already names an attachment (line 13): a name binds one kind of thing",
    );
  });

  it('still lets a mapping be made again under its name after an unmap', () => {
    const map = '      - dmaMapSingle: { device: nic, buffer: k, size: 64, dir: DMA_TO_DEVICE, as: m }\n';
    const s = parseScenario('ok.yaml', names(`${map}      - dmaUnmapSingle: { mapping: m }\n${map}`));
    expect(s.body.kind === 'declarative' && s.body.agents[0]!.steps.map((x) => x.op)).toEqual([
      'dmaMapSingle',
      'dmaUnmapSingle',
      'dmaMapSingle',
    ]);
  });
});

describe('errors found at parse time that the run found without a line', () => {
  const agentsOnly = (machine: string, steps: string): string => `name: t
intent: x
profiles: [x86_64, swiotlb-force]
${machine}agents:
  - name: a
    kind: kernel
    steps:
${steps}  - name: b
    kind: kernel
    steps:
      - signal: y
`;

  it('refuses a wait whose only signals are later steps of the same agent, at the wait', () => {
    expect(failure(agentsOnly('', '      - wait: x\n      - signal: x\n'))).toEqual({
      line: 8,
      column: 15,
      field: 'agents[0].steps[0].wait',
      message:
        "bad.yaml:8:15: agents[0].steps[0].wait: waits for 'x', which only a later step of this agent signals (line 9): it would wait for ever",
    });
    // An earlier signal of its own, or another agent's, lets it proceed.
    expect(() =>
      parseScenario('ok.yaml', agentsOnly('', '      - signal: x\n      - wait: x\n')),
    ).not.toThrow();
    expect(() =>
      parseScenario('ok.yaml', agentsOnly('', '      - wait: y\n      - signal: y\n')),
    ).not.toThrow();
  });

  it('refuses a swiotlb pool createMachine could not place below 4 GiB, at machine.swiotlbBytes', () => {
    expect(
      failure(agentsOnly('machine: { ramBytes: 8388608, swiotlbBytes: 67108864 }\n', '      - sleep: 1\n')),
    ).toEqual({
      line: 4,
      column: 45,
      field: 'machine.swiotlbBytes',
      message:
        'bad.yaml:4:45: machine.swiotlbBytes: a 67108864-byte swiotlb pool does not fit below 2^32 on swiotlb-force with 8388608 bytes of RAM: at most 5242880',
    });
    expect(
      failure(
        agentsOnly('machine: { ramBytes: 8589934592, swiotlbBytes: 4294967296 }\n', '      - sleep: 1\n'),
      ).message,
    ).toBe(
      'bad.yaml:4:48: machine.swiotlbBytes: a 4294967296-byte swiotlb pool does not fit below 2^32 on x86_64 with 8589934592 bytes of RAM: at most 4291821568',
    );
    // The largest pool that fits boots.
    const s = parseScenario(
      'ok.yaml',
      agentsOnly('machine: { ramBytes: 8388608, swiotlbBytes: 5242880 }\n', '      - sleep: 1\n'),
    );
    expect(runScenario(s, { profile: 'swiotlb-force' }).findings).toEqual([]);
  });
});

describe('keys a JavaScript object keeps off its own fields', () => {
  const file = (expect: string, step: string): string => `name: t
intent: x
expect: ${expect}
agents:
  - name: a
    kind: kernel
    steps:
      - ${step}
`;

  it('refuses __proto__ among the expected verdicts instead of dropping it', () => {
    expect(failure(file('{ x86_64: clean, __proto__: broken }', 'sleep: 1'))).toEqual({
      line: 3,
      column: 37,
      field: 'expect.__proto__',
      message:
        'bad.yaml:3:37: expect.__proto__: must be one of "x86_64" | "arm64-coherent" | "arm64-noncoherent" | "parisc" | "parisc-pcxl" | "swiotlb-force", got "__proto__"',
    });
  });

  it('names constructor, __proto__ and prototype as unknown steps', () => {
    for (const k of ['constructor', '__proto__', 'prototype']) {
      expect(failure(file('{}', `${k}: 1`))).toEqual({
        line: 8,
        column: 9,
        field: `agents[0].steps[0].${k}`,
        message: `bad.yaml:8:9: agents[0].steps[0].${k}: unknown step '${k}' (known: ${STEP_OPS.join(', ')})`,
      });
    }
    // Beside a real operation it is no less unknown.
    expect(failure(file('{}', '{ sleep: 1, constructor: 1 }')).field).toBe('agents[0].steps[0].constructor');
  });
});
