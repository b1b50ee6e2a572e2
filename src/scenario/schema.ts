/**
 * The schema of scenario files (docs/scenarios.md is the prose version).
 * A step is a one-key map: the operation's name — the dmalab function it
 * calls, or `signal`/`wait`/`sleep` between agents — and its arguments.
 */

import * as v from 'valibot';
import { PROFILE_NAMES } from '../machine/index.js';

const name = v.pipe(
  v.string(),
  v.regex(/^[a-z0-9][a-z0-9-_]*$/i, 'must be a name of letters, digits, - and _'),
);
const kebab = v.pipe(v.string(), v.regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, 'must be kebab-case (a-z, 0-9, -)'));
/** A scenario's RAM when its file names none (run.ts passes it to createMachine); buffers must fit in it. */
export const DEFAULT_RAM_BYTES = 256 * 1024 * 1024;
/** createMachine's largest RAM: no size, offset or length in a file can usefully exceed it. */
const MAX_BYTES = 2 ** 42;
const nat = v.pipe(
  v.number(),
  v.integer('must be an integer'),
  v.minValue(0, 'must not be negative'),
  v.maxValue(MAX_BYTES, `must be at most ${MAX_BYTES}`),
);
const positive = v.pipe(
  v.number(),
  v.integer('must be an integer'),
  v.minValue(1, 'must be at least 1'),
  v.maxValue(MAX_BYTES, `must be at most ${MAX_BYTES}`),
);
const byte = v.pipe(
  v.number(),
  v.integer('must be an integer'),
  v.minValue(0),
  v.maxValue(255, 'must be a byte'),
);
const bits = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(12, 'must be 12 to 64 bits'),
  v.maxValue(64, 'must be 12 to 64 bits'),
);
const verdict = v.picklist(['clean', 'api', 'latent', 'broken']);
const profile = v.picklist(PROFILE_NAMES as string[]);
const direction = v.picklist(['DMA_TO_DEVICE', 'DMA_FROM_DEVICE', 'DMA_BIDIRECTIONAL']);
const errno = v.pipe(v.string(), v.regex(/^-E[A-Z0-9]+$/, "must be a negated errno name such as '-ENXIO'"));

/** Arguments of each step operation, by operation name. */
export const STEP_ARGS = {
  signal: name,
  wait: name,
  sleep: nat,
  kernelWrite: v.strictObject({ buffer: name, offset: v.optional(nat), length: positive, fill: byte }),
  kernelRead: v.strictObject({
    buffer: name,
    offset: v.optional(nat),
    length: positive,
    expect: v.optional(byte),
  }),
  dmaMapSingle: v.strictObject({
    device: name,
    buffer: name,
    offset: v.optional(nat),
    size: positive,
    dir: direction,
    as: name,
  }),
  dmaUnmapSingle: v.strictObject({ mapping: name }),
  dmaSyncSingleForCpu: v.strictObject({ mapping: name }),
  dmaSyncSingleForDevice: v.strictObject({ mapping: name }),
  mmap: v.strictObject({ buffer: name, as: name, expect: v.optional(errno) }),
  userWrite: v.strictObject({ map: name, offset: v.optional(nat), length: positive, fill: byte }),
  userRead: v.strictObject({
    map: name,
    offset: v.optional(nat),
    length: positive,
    expect: v.optional(byte),
  }),
  deviceDmaWrite: v.strictObject({
    at: name,
    offset: v.optional(nat),
    length: positive,
    fill: byte,
    duration: v.optional(nat),
  }),
  deviceDmaRead: v.strictObject({
    at: name,
    offset: v.optional(nat),
    length: positive,
    expect: v.optional(byte),
    duration: v.optional(nat),
  }),
} as const;

export type StepOp = keyof typeof STEP_ARGS;
export const STEP_OPS = Object.keys(STEP_ARGS) as StepOp[];

/** Which agents may take each step. */
export const STEP_AGENTS: Readonly<Record<StepOp, readonly ('kernel' | 'process' | 'device')[]>> = {
  signal: ['kernel', 'process', 'device'],
  wait: ['kernel', 'process', 'device'],
  sleep: ['kernel', 'process', 'device'],
  kernelWrite: ['kernel'],
  kernelRead: ['kernel'],
  dmaMapSingle: ['kernel'],
  dmaUnmapSingle: ['kernel'],
  dmaSyncSingleForCpu: ['kernel'],
  dmaSyncSingleForDevice: ['kernel'],
  mmap: ['process'],
  userWrite: ['process'],
  userRead: ['process'],
  deviceDmaWrite: ['device'],
  deviceDmaRead: ['device'],
};

const step = v.pipe(
  v.record(v.string(), v.unknown()),
  v.check((o) => Object.keys(o).length === 1, 'a step is a map with exactly one operation'),
);

/** The whole file. */
export const SCENARIO_FILE = v.strictObject({
  name: kebab,
  intent: v.pipe(v.string(), v.minLength(1, 'must not be empty'), v.regex(/^[^\n]*$/, 'must be one line')),
  seed: v.optional(v.picklist(['000', '001', '002', '003', '004'])),
  profiles: v.optional(v.union([v.literal('all'), v.pipe(v.array(profile), v.minLength(1))]), 'all'),
  expect: v.optional(v.record(profile, verdict), {}),
  machine: v.optional(
    v.strictObject({
      // createMachine's rules (src/boot.ts), checked here so the error names the file's line.
      ramBytes: v.optional(
        v.pipe(
          positive,
          v.minValue(8 * 1024 * 1024, 'must be at least 8 MiB (8388608)'),
          v.multipleOf(4096, 'must be a multiple of 4096 (whole pages)'),
        ),
      ),
      mmapStrategy: v.optional(v.picklist(['remap', 'fault', 'congruent', 'coherence-index', 'refuse'])),
      ciPolicy: v.optional(v.picklist(['kernel', 'user', 'zero'])),
      pagelessSg: v.optional(v.boolean()),
      kmallocBounce: v.optional(v.boolean()),
      swiotlbBytes: v.optional(
        v.pipe(
          nat,
          v.maxValue(2 ** 32, 'must be at most 4 GiB (4294967296)'),
          v.multipleOf(2048, 'must be a multiple of 2048 (whole swiotlb slots)'),
        ),
      ),
      zoneDmaBits: v.optional(v.pipe(v.number(), v.integer(), v.minValue(24), v.maxValue(32))),
    }),
    {},
  ),
  devices: v.optional(
    v.array(
      v.strictObject({
        name,
        dmaMaskBits: v.optional(bits),
        coherentDmaMaskBits: v.optional(bits),
        coherence: v.optional(v.picklist(['snoop', 'none', 'ci'])),
        iommu: v.optional(v.boolean()),
        busDmaLimitBits: v.optional(bits),
      }),
    ),
    [],
  ),
  buffers: v.optional(
    v.array(
      v.strictObject({
        name,
        kind: v.picklist(['coherent', 'coherent-for-mmap', 'kmalloc']),
        device: v.optional(name),
        size: positive,
        fill: v.optional(byte),
      }),
    ),
    [],
  ),
  agents: v.pipe(
    v.array(
      v.strictObject({
        name,
        kind: v.picklist(['kernel', 'process', 'device']),
        device: v.optional(name),
        steps: v.array(step),
      }),
    ),
    v.minLength(1, 'a scenario needs at least one agent'),
  ),
  final: v.optional(
    v.array(v.strictObject({ read: name, offset: v.optional(nat), length: positive, equals: byte })),
    [],
  ),
});

export type ScenarioFile = v.InferOutput<typeof SCENARIO_FILE>;
