/**
 * The scenario layer's data: a scenario (parsed from a YAML file or built in),
 * the result of running it on one profile, and the matrix of results over
 * several profiles. Everything here is plain data, so results serialise to
 * byte-identical JSON and a schedule can be replayed from the start.
 */

import type { Finding, Verdict } from '../machine/index.js';

export type { Verdict };

/** `createMachine` options a scenario may set (the rest keep their defaults). */
export interface ScenarioMachineOptions {
  readonly ramBytes?: number;
  readonly mmapStrategy?: 'remap' | 'fault' | 'congruent' | 'coherence-index' | 'refuse';
  readonly ciPolicy?: 'kernel' | 'user' | 'zero';
  readonly pagelessSg?: boolean;
  readonly kmallocBounce?: boolean;
  readonly swiotlbBytes?: number;
  /** The top of ZONE_DMA in bits on arm64 profiles, as firmware describes the platform (30 on a Raspberry Pi 4). */
  readonly zoneDmaBits?: number;
  /** The CMA area behind the `reserved` dma-heap (createMachine's; the arm64 profiles reserve one by default). */
  readonly cmaBytes?: number;
}

/** A scenario: a parsed YAML file or a built-in TypeScript one. */
export interface Scenario {
  /** Unique, kebab-case. */
  readonly name: string;
  /** One line: what the case shows. */
  readonly intent: string;
  /** The seed thread it comes from: '000' … '004'. */
  readonly seed?: string;
  /** Profiles it runs on by default. */
  readonly profiles: readonly string[];
  /** Expected verdict per profile; a profile not listed expects 'clean'. */
  readonly expect: Readonly<Record<string, Verdict>>;
  /** The file path as given, or `builtin:<name>`. */
  readonly source: string;
  /** Machine options every run of the scenario uses. */
  readonly machine: ScenarioMachineOptions;
  /** How to run it: a declarative body, or a registered TypeScript scenario. */
  readonly body: ScenarioBody;
}

/** A YAML scenario's runnable part (the step vocabulary is in docs/scenarios.md). */
export interface DeclarativeBody {
  readonly kind: 'declarative';
  readonly devices: readonly DeviceSetup[];
  readonly buffers: readonly BufferSetup[];
  readonly agents: readonly AgentSpec[];
  readonly final: readonly FinalCondition[];
}

/** A built-in scenario: its agents come from TypeScript generator functions registered by name. */
export interface BuiltinBody {
  readonly kind: 'builtin';
}

export type ScenarioBody = DeclarativeBody | BuiltinBody;

/** A device the setup adds (`addDevice` options). */
export interface DeviceSetup {
  readonly name: string;
  readonly dmaMaskBits?: number;
  readonly coherentDmaMaskBits?: number;
  readonly coherence?: 'snoop' | 'none' | 'ci';
  readonly iommu?: boolean;
  readonly busDmaLimitBits?: number;
  /** Devices named alike share a coherency domain (addDevice's; snooping devices default to the CPU's). */
  readonly coherencyDomain?: string;
  readonly deviceMemoryBytes?: number;
}

/** A buffer the setup allocates before any agent runs. */
export type BufferSetup = MemoryBufferSetup | PagesBufferSetup | HeapBufferSetup;

/** A buffer with one kernel address: `kmalloc`, or coherent DMA memory of a device. */
export interface MemoryBufferSetup {
  readonly name: string;
  readonly kind: 'coherent' | 'coherent-for-mmap' | 'kmalloc';
  /** The device a coherent buffer is allocated for (`coherent-for-mmap`: allocated when the device file is opened). */
  readonly device?: string;
  readonly size: number;
  /** Initial contents: every byte this value. */
  readonly fill?: number;
}

/** Pages from the page allocator with an sg_table over them, for `dmaMapSgtable`. */
export interface PagesBufferSetup {
  readonly name: string;
  readonly kind: 'pages';
  /** How many pages; the buffer is `pages` × 4096 bytes. */
  readonly pages: number;
  /** One higher-order block instead of separate order-0 pages. */
  readonly contiguous?: boolean;
  readonly fill?: number;
}

/** A dma-buf allocated from a dma-heap with DMA_HEAP_IOCTL_ALLOC. */
export interface HeapBufferSetup {
  readonly name: string;
  readonly kind: 'heap';
  /** `system` (scattered pages) or `reserved` (the CMA area). */
  readonly heap: 'system' | 'reserved';
  readonly size: number;
  readonly fill?: number;
}

/** One agent of a declarative scenario: a kernel task, a user process or a device engine. */
export interface AgentSpec {
  readonly name: string;
  readonly kind: 'kernel' | 'process' | 'device';
  /** The device a device agent drives. */
  readonly device?: string;
  readonly steps: readonly StepSpec[];
}

/** One step: an operation name from the vocabulary and its arguments, with where it was written. */
export interface StepSpec {
  readonly op: string;
  readonly args: Readonly<Record<string, unknown>>;
  /** 1-based line of the step in its file (0 for built-ins). */
  readonly line: number;
  /** 1-based column of the step's operation in its file (absent for built-ins). */
  readonly column?: number;
}

/** A condition on bytes checked when every agent has finished. */
export interface FinalCondition {
  /** Who reads: a buffer through the kernel, or a named user mapping. */
  readonly read: string;
  readonly offset: number;
  readonly length: number;
  /** Every byte must equal this value. */
  readonly equals: number;
  readonly line: number;
}

/** One step an agent took. */
export interface TimelineEntry {
  /** Model time (ns) when the step ended. */
  readonly time: number;
  /** The machine's step counter when the step ended. */
  readonly step: number;
  readonly agent: string;
  /** What the step did, e.g. `dma_map_single(ring, 4096, DMA_TO_DEVICE) = 0x1000`. */
  readonly op: string;
}

/** The result of one scenario on one profile. */
export interface ScenarioResult {
  readonly scenario: string;
  readonly profile: string;
  readonly seed: number;
  readonly verdict: Verdict;
  readonly expected: Verdict;
  readonly matches: boolean;
  /** The machine's findings, in order. */
  readonly findings: readonly Finding[];
  /** One line for a non-clean cell: the first worst finding's code and message, short. */
  readonly explanation: string | null;
  readonly timeline: readonly TimelineEntry[];
  /** The final condition on bytes; null when the scenario has none. */
  readonly bytes: { readonly ok: boolean; readonly detail: string } | null;
  /** The scheduler's choices (agent index per step): replaying them reproduces the run. */
  readonly schedule: readonly number[];
}

/** One scenario on several profiles. */
export interface MatrixRow {
  readonly scenario: string;
  readonly cells: readonly ScenarioResult[];
  /** The first operation whose observed bytes differ between profiles. */
  readonly divergence: { readonly step: number; readonly call: string } | null;
}

export interface MatrixResult {
  readonly profiles: readonly string[];
  readonly rows: readonly MatrixRow[];
}

/** `runScenario`'s options. */
export interface RunOptions {
  readonly profile: string;
  /** Scheduler seed (default 0); also the machine's seed. */
  readonly seed?: number;
  /** Replay these scheduler choices (agent indices), then go on drawing from the seed. */
  readonly schedule?: readonly number[];
}

/** `runMatrix`'s options. */
export interface ScenarioMatrixOptions {
  /** Default: every scenario's own profiles, in the built-in profile order. */
  readonly profiles?: readonly string[];
  readonly seed?: number;
  readonly onProgress?: (done: number, total: number) => void;
}
