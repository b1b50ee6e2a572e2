/**
 * `createMachine`: the top of the house. It validates the options (API.md
 * §2), assembles the hardware, runs each kernel layer's initialiser in
 * dependency order, and ends the boot.
 */

import { initBo } from './bo/index.js';
import { attachChecker, firstDivergence, observedReads, type ProfilesResult } from './debug/index.js';
import { initDma } from './dma/index.js';
import { initDmaBufLayer } from './dmabuf/index.js';
import {
  type CaptureStacks,
  type CiPolicy,
  DmalabError,
  initEngine,
  initIommu,
  initPageAlloc,
  isMmapStrategy,
  type Machine,
  MMAP_STRATEGIES,
  type MmapStrategy,
  machineFindings,
  newMachineShell,
  PROFILE_NAMES,
  type Profile,
  type ResolvedOptions,
  resolveProfile,
  runVerdict,
} from './machine/index.js';
import { initMm } from './mm/index.js';

/** `createMachine`'s options; every one is optional. */
export interface MachineOptions {
  /** A profile name (`x86_64`, `arm64-noncoherent`, …) or a profile object. Default `x86_64`. */
  profile?: string | Profile;
  /** RAM in bytes, contiguous from physical 0; a multiple of 4096 from 8 MiB to 2^42. Default 1 GiB. */
  ramBytes?: number;
  /** Seed of every seeded choice. Default 0. */
  seed?: number;
  /** Run the checker. Default true. */
  check?: boolean;
  /** Throw a DmalabError at the first finding. Default false. */
  panicOnWarn?: boolean;
  /** When to take stacks. Default 'findings'. */
  captureStacks?: CaptureStacks;
  /** How `dma_mmap_coherent` maps memory to user space. Default: the profile's. */
  mmapStrategy?: MmapStrategy;
  /** swiotlb pool size. Default min(64 MiB, RAM/8). */
  swiotlbBytes?: number;
  /** arm64's bouncing of small kmalloc buffers. Default: the profile's. */
  kmallocBounce?: boolean;
  /** PA-RISC coherence index for page-less entries. Default 'kernel'. */
  ciPolicy?: CiPolicy;
  /** Seed 001's RFC mode: pmem and device memory have no struct page. Default false. */
  pagelessSg?: boolean;
  /** CMA area size (a dmalab extension). Default on arm64 min(32 MiB, RAM/16) in 4 MiB steps (defconfig), elsewhere 0. */
  cmaBytes?: number;
}

const MiB = 1024 * 1024;
const OPTION_NAMES: readonly (keyof MachineOptions)[] = [
  'profile',
  'ramBytes',
  'seed',
  'check',
  'panicOnWarn',
  'captureStacks',
  'mmapStrategy',
  'swiotlbBytes',
  'kmallocBounce',
  'ciPolicy',
  'pagelessSg',
  'cmaBytes',
];

function fail(field: string, message: string): never {
  throw new DmalabError(message, { field });
}

function bool(v: unknown, field: string, def: boolean): boolean {
  if (v === undefined) return def;
  if (typeof v !== 'boolean') fail(field, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function bytes(v: unknown, field: string, def: number, min: number, max: number, multiple: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max || v % multiple !== 0) {
    fail(field, `must be an integer multiple of ${multiple} from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[], def: T): T {
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    fail(field, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

/** Applies defaults and checks every option; unknown keys are rejected. */
export function resolveOptions(options: MachineOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new DmalabError('createMachine options must be an object');
  }
  for (const k of Object.keys(options)) {
    if (!(OPTION_NAMES as readonly string[]).includes(k)) {
      fail(k, `unknown createMachine option '${k}' (known: ${OPTION_NAMES.join(', ')})`);
    }
  }
  const profile = resolveProfile(options.profile ?? 'x86_64');
  const ramBytes = bytes(options.ramBytes, 'ramBytes', 1024 * MiB, 8 * MiB, 2 ** 42, 4096);
  const seed = options.seed ?? 0;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
    fail('seed', `must be an integer from 0 to 2^32-1, got ${JSON.stringify(seed)}`);
  }
  const mmapStrategy = options.mmapStrategy ?? profile.mmapStrategy;
  if (!isMmapStrategy(mmapStrategy)) {
    fail('mmapStrategy', `must be one of ${MMAP_STRATEGIES.join(', ')}, got ${JSON.stringify(mmapStrategy)}`);
  }
  const defSwiotlb = Math.min(64 * MiB, Math.floor(ramBytes / 8 / (256 * 1024)) * 256 * 1024);
  // arm64's defconfig reserves a 32 MiB CMA area; x86 distributions and parisc reserve none by default.
  const defCma =
    profile.arch === 'arm64' ? Math.min(32 * MiB, Math.floor(ramBytes / 16 / (4 * MiB)) * 4 * MiB) : 0;
  return {
    profile,
    ramBytes,
    seed,
    check: bool(options.check, 'check', true),
    panicOnWarn: bool(options.panicOnWarn, 'panicOnWarn', false),
    captureStacks: oneOf(
      options.captureStacks,
      'captureStacks',
      ['none', 'findings', 'mappings'],
      'findings',
    ),
    mmapStrategy,
    swiotlbBytes: bytes(options.swiotlbBytes, 'swiotlbBytes', defSwiotlb, 0, 2 ** 32, 2048),
    kmallocBounce: bool(options.kmallocBounce, 'kmallocBounce', profile.kmallocBounce),
    ciPolicy: oneOf(options.ciPolicy, 'ciPolicy', ['kernel', 'user', 'zero'], 'kernel'),
    pagelessSg: bool(options.pagelessSg, 'pagelessSg', false),
    cmaBytes: bytes(options.cmaBytes, 'cmaBytes', defCma, 0, 2 ** 32, 4 * MiB),
  };
}

/**
 * Builds a machine (API.md §2): the hardware of the profile, then each
 * kernel layer's initialiser, then the checker when `check` is on.
 */
export function createMachine(options: MachineOptions = {}): Machine {
  const m = newMachineShell(resolveOptions(options));
  initPageAlloc(m);
  initIommu(m);
  initEngine(m);
  // The DMA layer reserves its swiotlb pool with memblock, before anything allocates pages.
  initDma(m);
  initMm(m);
  initDmaBufLayer(m);
  initBo(m);
  if (m.options.check) attachChecker(m);
  m.booted = true;
  return m;
}

/**
 * Runs the same driver function on a fresh machine of each profile (API.md
 * §3) and returns each profile's verdict and findings, plus the first step
 * whose observed bytes differ between profiles (null when they all agree,
 * or when the checker is off and nothing was observed). A run stopped by
 * `panicOnWarn` keeps the findings up to the panic.
 */
export function runOnProfiles(
  fn: (m: Machine) => void,
  profiles: readonly (string | Profile)[] = PROFILE_NAMES,
  options: Omit<MachineOptions, 'profile'> = {},
): ProfilesResult {
  if ('profile' in (options as MachineOptions)) {
    throw new DmalabError('runOnProfiles takes the profiles as its second argument, not in the options', {
      field: 'profile',
    });
  }
  const rows: ProfilesResult['rows'] = [];
  const logs = [];
  for (const profile of profiles) {
    const m = createMachine({ ...options, profile });
    try {
      fn(m);
    } catch (err) {
      if (!(err instanceof DmalabError && err.message.startsWith('panic on warn:'))) throw err;
    }
    rows.push({ profile: m.profile.name, verdict: runVerdict(m), findings: machineFindings(m).slice() });
    logs.push(observedReads(m));
  }
  return { rows, divergence: firstDivergence(logs) };
}
