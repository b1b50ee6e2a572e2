import { describe, expect, it } from 'vitest';
import { DmalabError } from '../machine/index.js';
import { parseScenario } from './parse.js';
import { runScenario } from './run.js';

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
          steps: [{ op: 'deviceDmaWrite', args: { at: 'buf', length: 8, fill: 0x5a }, line: 15 }],
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
