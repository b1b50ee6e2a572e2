/**
 * The schema of scenario files (docs/scenarios.md is the prose version).
 * A step is a one-key map: the operation's name — the dmalab function it
 * calls, or `signal`/`wait`/`sleep` between agents — and its arguments.
 */

import * as v from 'valibot';
import { MAX_PAGE_ORDER, PAGE_SIZE, PROFILE_NAMES } from '../machine/index.js';

const name = v.pipe(
  v.string(),
  v.regex(/^[a-z0-9][a-z0-9-_]*$/i, 'must be a name of letters, digits, - and _'),
);
const kebab = v.pipe(v.string(), v.regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, 'must be kebab-case (a-z, 0-9, -)'));
/** A scenario's RAM when its file names none (run.ts passes it to createMachine); buffers must fit in it. */
export const DEFAULT_RAM_BYTES = 256 * 1024 * 1024;
/** createMachine's unit of CMA area size. */
export const CMA_STEP = 4 * 1024 * 1024;
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
/** The largest block `allocPages` gives (MAX_PAGE_ORDER 10): a contiguous pages buffer fits in one. */
export const MAX_CONTIGUOUS_PAGES = 2 ** MAX_PAGE_ORDER;
const pageCount = v.pipe(
  v.number(),
  v.integer('must be an integer'),
  v.minValue(1, 'must be at least 1'),
  v.maxValue(MAX_BYTES / PAGE_SIZE, `must be at most ${MAX_BYTES / PAGE_SIZE}`),
);
const verdict = v.picklist(['clean', 'api', 'latent', 'broken']);
const profile = v.picklist(PROFILE_NAMES as string[]);
const direction = v.picklist(['DMA_TO_DEVICE', 'DMA_FROM_DEVICE', 'DMA_BIDIRECTIONAL']);
/** The words of a DMA_BUF_IOCTL_SYNC flags list, each a DMA_BUF_SYNC_* constant. */
export const SYNC_FLAG_WORDS = ['START', 'END', 'READ', 'WRITE', 'RW'] as const;
/**
 * A flags list the ioctl accepts, said in full: START or END (START is 0 in
 * the kernel, so the list must say which), and a direction.
 */
function validSyncFlags(flags: string[]): boolean {
  const has = (w: string) => flags.includes(w);
  if (new Set(flags).size !== flags.length) return false;
  if (has('START') === has('END')) return false;
  return has('READ') || has('WRITE') || has('RW');
}
const syncFlags = v.pipe(
  v.array(v.picklist(SYNC_FLAG_WORDS)),
  v.check(
    (flags) => validSyncFlags(flags),
    'must be START or END and a direction (READ, WRITE or RW), each once: [START, READ], [END, WRITE], [START, RW]',
  ),
);
/** The reservation object's usage classes (`DMA_RESV_USAGE_*`), weakest last. */
export const RESV_USAGES = ['KERNEL', 'WRITE', 'READ', 'BOOKKEEP'] as const;
const usage = v.picklist(RESV_USAGES);
/** The flags of DMA_BUF_IOCTL_EXPORT/IMPORT_SYNC_FILE: a non-empty set of READ and WRITE. */
const syncFileFlags = v.pipe(
  v.array(v.picklist(['READ', 'WRITE'])),
  v.check(
    (flags) => flags.length > 0 && new Set(flags).size === flags.length,
    'must be READ, WRITE or both, each once: [READ], [WRITE], [READ, WRITE]',
  ),
);
/** What a scheduler job does on its mapping: the bytes it writes or the bytes it reads. */
const jobWrite = v.strictObject({ offset: v.optional(nat), length: positive, fill: byte });
const jobRead = v.strictObject({ offset: v.optional(nat), length: positive, expect: v.optional(byte) });
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
  dmaMapSgtable: v.strictObject({ device: name, buffer: name, dir: direction, as: name }),
  dmaUnmapSgtable: v.strictObject({ mapping: name }),
  dmaSyncSgtableForCpu: v.strictObject({ mapping: name }),
  dmaSyncSgtableForDevice: v.strictObject({ mapping: name }),
  dmaBufAttach: v.strictObject({ buffer: name, device: name, as: name }),
  dmaBufMapAttachment: v.strictObject({ attachment: name, dir: direction, as: name }),
  dmaBufUnmapAttachment: v.strictObject({ mapping: name }),
  dmaBufDetach: v.strictObject({ attachment: name }),
  dmaBufBeginCpuAccess: v.strictObject({ buffer: name, dir: direction }),
  dmaBufEndCpuAccess: v.strictObject({ buffer: name, dir: direction }),
  dmaBufIoctlSync: v.strictObject({ buffer: name, flags: syncFlags }),
  drmSchedEntityPushJob: v.pipe(
    v.strictObject({
      mapping: name,
      write: v.optional(jobWrite),
      read: v.optional(jobRead),
      duration: nat,
      deps: v.optional(v.array(name), []),
      resv: v.optional(v.strictObject({ buffer: name, usage })),
      as: name,
    }),
    v.check(
      (o) => (o.write === undefined) !== (o.read === undefined),
      'a job either writes or reads: give write or read, not both',
    ),
  ),
  dmaResvAddFence: v.strictObject({ buffer: name, fence: name, usage }),
  dmaResvWaitTimeout: v.strictObject({ buffer: name, usage }),
  dmaFenceInit: v.strictObject({ as: name }),
  dmaFenceSignal: v.strictObject({ fence: name }),
  dmaFenceWait: v.strictObject({ fence: name }),
  dmaBufExportSyncFile: v.strictObject({ buffer: name, flags: syncFileFlags, as: name }),
  dmaBufImportSyncFile: v.strictObject({ buffer: name, syncFile: name, flags: syncFileFlags }),
  poll: v.strictObject({ syncFile: name }),
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
  dmaMapSgtable: ['kernel'],
  dmaUnmapSgtable: ['kernel'],
  dmaSyncSgtableForCpu: ['kernel'],
  dmaSyncSgtableForDevice: ['kernel'],
  dmaBufAttach: ['kernel'],
  dmaBufMapAttachment: ['kernel'],
  dmaBufUnmapAttachment: ['kernel'],
  dmaBufDetach: ['kernel'],
  dmaBufBeginCpuAccess: ['kernel'],
  dmaBufEndCpuAccess: ['kernel'],
  dmaBufIoctlSync: ['process'],
  drmSchedEntityPushJob: ['kernel'],
  dmaResvAddFence: ['kernel'],
  dmaResvWaitTimeout: ['kernel'],
  dmaFenceInit: ['kernel'],
  dmaFenceSignal: ['kernel'],
  dmaFenceWait: ['kernel'],
  dmaBufExportSyncFile: ['process'],
  dmaBufImportSyncFile: ['process'],
  poll: ['process'],
};

export type BufferKind = 'kmalloc' | 'coherent' | 'coherent-for-mmap' | 'pages' | 'heap';

/**
 * The buffer kinds a step's `buffer` may name, where not every kind will do,
 * and what to use instead on the others.
 */
export const STEP_BUFFER_KINDS: Partial<
  Readonly<Record<StepOp, { readonly kinds: readonly BufferKind[]; readonly hint: string }>>
> = {
  dmaMapSingle: {
    kinds: ['kmalloc', 'coherent', 'coherent-for-mmap'],
    hint: 'a pages buffer is mapped with dmaMapSgtable, a heap buffer through dmaBufAttach',
  },
  dmaMapSgtable: {
    kinds: ['pages'],
    hint: 'only a pages buffer has an sg_table; map a kmalloc buffer with dmaMapSingle',
  },
  mmap: {
    kinds: ['coherent', 'coherent-for-mmap', 'heap'],
    hint: 'only a coherent buffer (/dev/<name>) or a heap buffer (its dma-buf fd) has a file to mmap',
  },
  dmaBufAttach: { kinds: ['heap'], hint: 'only a heap buffer is a dma-buf' },
  dmaBufBeginCpuAccess: { kinds: ['heap'], hint: 'only a heap buffer is a dma-buf' },
  dmaBufEndCpuAccess: { kinds: ['heap'], hint: 'only a heap buffer is a dma-buf' },
  dmaBufIoctlSync: { kinds: ['heap'], hint: 'only a heap buffer has a dma-buf fd' },
  dmaResvAddFence: { kinds: ['heap'], hint: 'only a heap buffer is a dma-buf with a reservation object' },
  dmaResvWaitTimeout: { kinds: ['heap'], hint: 'only a heap buffer is a dma-buf with a reservation object' },
  dmaBufExportSyncFile: { kinds: ['heap'], hint: 'only a heap buffer has a dma-buf fd' },
  dmaBufImportSyncFile: { kinds: ['heap'], hint: 'only a heap buffer has a dma-buf fd' },
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
      cmaBytes: v.optional(
        v.pipe(
          nat,
          v.maxValue(2 ** 32, 'must be at most 4 GiB (4294967296)'),
          v.multipleOf(CMA_STEP, 'must be a multiple of 4 MiB (4194304)'),
        ),
      ),
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
        coherencyDomain: v.optional(name),
      }),
    ),
    [],
  ),
  buffers: v.optional(
    v.array(
      v.variant('kind', [
        v.strictObject({
          name,
          kind: v.picklist(['coherent', 'coherent-for-mmap', 'kmalloc']),
          device: v.optional(name),
          size: positive,
          fill: v.optional(byte),
        }),
        v.strictObject({
          name,
          kind: v.literal('pages'),
          pages: pageCount,
          contiguous: v.optional(v.boolean()),
          fill: v.optional(byte),
        }),
        v.strictObject({
          name,
          kind: v.literal('heap'),
          heap: v.optional(v.picklist(['system', 'reserved']), 'system'),
          size: positive,
          fill: v.optional(byte),
        }),
      ]),
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
