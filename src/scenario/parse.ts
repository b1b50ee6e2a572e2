/**
 * Scenario files: YAML text → a validated `Scenario`. Every error is a
 * `DmalabError` naming the file, line, column and field, so the command line
 * can print it and exit 2 without a stack trace.
 */

import * as v from 'valibot';
import { type Document, isMap, isPair, isScalar, LineCounter, type Node, parseDocument } from 'yaml';
import { resolveOptions } from '../boot.js';
import { IO_TLB_SEGSIZE, IO_TLB_SIZE } from '../dma/index.js';
import {
  DmalabError,
  KERNEL_RODATA_END,
  MAX_PAGE_ORDER,
  PAGE_SIZE,
  PROFILE_NAMES,
  resolveProfile,
} from '../machine/index.js';
import {
  type BufferKind,
  CMA_STEP,
  DEFAULT_RAM_BYTES,
  MAX_CONTIGUOUS_PAGES,
  SCENARIO_FILE,
  type ScenarioFile,
  STEP_AGENTS,
  STEP_ARGS,
  STEP_BUFFER_KINDS,
  STEP_OPS,
  type StepOp,
} from './schema.js';
import type { AgentSpec, FinalCondition, Scenario, StepSpec } from './types.js';

type Key = string | number;

class Located {
  constructor(
    readonly file: string,
    readonly doc: Document,
    readonly lines: LineCounter,
  ) {}

  /** The YAML node at `path`, or the nearest ancestor that exists. */
  private node(path: readonly Key[]): { node: Node | null; exact: boolean } {
    for (let n = path.length; n >= 0; n--) {
      const got = this.doc.getIn(path.slice(0, n), true) as Node | undefined;
      if (got !== undefined && got !== null) return { node: got, exact: n === path.length };
    }
    return { node: null, exact: false };
  }

  /** The position of a map's key (a field) rather than its value, when there is one. */
  private keyOffset(path: readonly Key[]): number | null {
    if (path.length === 0) return null;
    const parent = this.doc.getIn(path.slice(0, -1), true);
    if (!isMap(parent)) return null;
    const last = path[path.length - 1];
    for (const item of parent.items) {
      if (isPair(item) && isScalar(item.key) && item.key.value === last) return item.key.range?.[0] ?? null;
    }
    return null;
  }

  fail(path: readonly Key[], message: string, atKey = false): never {
    const { node } = this.node(path);
    const off = (atKey ? this.keyOffset(path) : null) ?? node?.range?.[0] ?? 0;
    const pos = this.lines.linePos(off);
    throw new DmalabError(message, {
      file: this.file,
      line: Math.max(1, pos.line),
      column: Math.max(1, pos.col),
      field: fieldName(path),
    });
  }

  line(path: readonly Key[]): number {
    return this.pos(path).line;
  }

  /** 1-based line and column where the node at `path` starts. */
  pos(path: readonly Key[]): { line: number; column: number } {
    const { node } = this.node(path);
    const p = this.lines.linePos(node?.range?.[0] ?? 0);
    return { line: Math.max(1, p.line), column: Math.max(1, p.col) };
  }
}

type Defined<T> = { [K in keyof T]: Exclude<T[K], undefined> };

/** The object without its undefined fields (the schema's optional fields, under exactOptionalPropertyTypes). */
function compact<T extends object>(o: T): Defined<T> {
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) if (x !== undefined) out[k] = x;
  return out as Defined<T>;
}

function fieldName(path: readonly Key[]): string {
  let out = '';
  for (const k of path) out += typeof k === 'number' ? `[${k}]` : out === '' ? k : `.${k}`;
  return out === '' ? '(file)' : out;
}

function issuePath(issue: v.BaseIssue<unknown>): Key[] {
  return (issue.path ?? []).map((p) => p.key as Key);
}

function issueMessage(issue: v.BaseIssue<unknown>): string {
  // valibot's default wording names the expectation ("Invalid type: Expected number but received "x""): keep it.
  if (issue.kind === 'schema' && issue.type === 'strict_object' && issue.expected === 'never') {
    return 'unknown field';
  }
  if (issue.type === 'picklist' || issue.type === 'union' || issue.type === 'variant') {
    // valibot wraps (and, for a variant, nests) the alternatives in parentheses: one flat list reads better.
    return `must be one of ${(issue.expected ?? '?').replace(/[()]/g, '')}, got ${issue.received}`;
  }
  return issue.message;
}

/**
 * A union's most specific sub-issue (the alternative that got furthest),
 * with its path from the union's value; else the issue itself.
 */
function deepest(issue: v.BaseIssue<unknown>): { issue: v.BaseIssue<unknown>; path: Key[] } {
  const here = issuePath(issue);
  let best = { issue, path: here };
  if (issue.type !== 'union' || issue.issues === undefined) return best;
  for (const sub of issue.issues) {
    const d = deepest(sub);
    if (d.path.length > 0) {
      const path = [...here, ...d.path];
      if (path.length > best.path.length) best = { issue: d.issue, path };
    }
  }
  return best;
}

function validate<T>(
  at: Located,
  base: readonly Key[],
  schema: v.GenericSchema<unknown, T>,
  value: unknown,
  hint: (path: readonly Key[]) => string | undefined = () => undefined,
): T {
  const r = v.safeParse(schema, value);
  if (r.success) return r.output;
  const { issue, path: rel } = deepest(r.issues[0]);
  const path = [...base, ...rel];
  // An unknown field is reported at the key; a bad value at the value.
  const unknownField =
    issue.kind === 'schema' && issue.type === 'strict_object' && issue.expected === 'never';
  const why = unknownField ? hint(path) : undefined;
  at.fail(path, why === undefined ? issueMessage(issue) : `unknown field: ${why}`, unknownField);
}

/** Why a buffer of one kind has no such field, where a field of another kind was likely meant. */
const BUFFER_FIELD_HINTS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  pages: {
    size: 'a pages buffer is pages × 4096 bytes (pages: N)',
    device: 'a pages buffer belongs to no device; dmaMapSgtable maps it for one',
    heap: 'only a heap buffer comes from a dma-heap',
  },
  heap: {
    device: 'a dma-buf belongs to no device; importers attach it with dmaBufAttach',
    pages: 'a heap buffer has a size in bytes',
    contiguous: "the 'reserved' heap's buffers are the contiguous ones (heap: reserved)",
  },
  other: {
    pages: 'only a pages buffer has pages (kind: pages)',
    contiguous: 'only a pages buffer may be contiguous (kind: pages)',
    heap: 'only a heap buffer comes from a dma-heap (kind: heap)',
  },
};

/** The hint for an unknown field of a buffer (`buffers[i].field`) in the raw file, if there is one. */
function bufferFieldHint(raw: unknown): (path: readonly Key[]) => string | undefined {
  return (path) => {
    if (path.length !== 3 || path[0] !== 'buffers' || typeof path[1] !== 'number') return undefined;
    const list = (raw as { buffers?: unknown }).buffers;
    const kind = Array.isArray(list) ? (list[path[1]] as { kind?: unknown } | undefined)?.kind : undefined;
    const hints = BUFFER_FIELD_HINTS[kind === 'pages' || kind === 'heap' ? kind : 'other']!;
    return hints[String(path[2])];
  };
}

/** The three kinds of DMA mapping a step may name, by the step that makes them. */
type MappingKind = 'single' | 'sgtable' | 'dmabuf';

const MAPPING_KINDS: Readonly<Record<MappingKind, { readonly made: string; readonly takes: string }>> = {
  single: { made: 'dmaMapSingle', takes: 'dmaUnmapSingle and dmaSyncSingleFor{Cpu,Device} take' },
  sgtable: { made: 'dmaMapSgtable', takes: 'dmaUnmapSgtable and dmaSyncSgtableFor{Cpu,Device} take' },
  dmabuf: { made: 'dmaBufMapAttachment', takes: 'dmaBufUnmapAttachment takes' },
};

/** The kind of mapping each step on a `mapping` needs. */
const MAPPING_OPS: Partial<Readonly<Record<StepOp, MappingKind>>> = {
  dmaUnmapSingle: 'single',
  dmaSyncSingleForCpu: 'single',
  dmaSyncSingleForDevice: 'single',
  dmaUnmapSgtable: 'sgtable',
  dmaSyncSgtableForCpu: 'sgtable',
  dmaSyncSgtableForDevice: 'sgtable',
  dmaBufUnmapAttachment: 'dmabuf',
};

/** Why a buffer named where a bus address is needed (`at`, `mapping`) has none. */
const NO_BUS_ADDRESS: Readonly<Record<BufferKind, string>> = {
  kmalloc: 'a kmalloc buffer has no bus address until dmaMapSingle maps it',
  pages: 'a pages buffer has no bus address until dmaMapSgtable maps it',
  heap: 'a heap buffer is reached through an attachment mapped with dmaBufMapAttachment',
  coherent: 'a coherent buffer is not a mapping: name it in at',
  'coherent-for-mmap': 'a coherent buffer is not a mapping: name it in at',
};

/** A mapping name bound by a step: its kind, and its size (a dma-buf mapping's is its attachment's buffer's). */
interface MappingBind {
  readonly kind: MappingKind;
  readonly size?: number;
  readonly attachment?: string;
}

/** A name a step uses, checked once every agent is read (a binding may come in a later agent). */
interface Use {
  readonly path: Key[];
  readonly kind: 'mapping' | 'map' | 'at' | 'attachment';
  readonly name: string;
  readonly end?: number;
  readonly span?: Key[];
  /** For `mapping`: the kind of mapping the step needs, and the step. */
  readonly want?: MappingKind;
  readonly op?: string;
}

/** A fence name bound by a step's `as`: a scheduler job's finished fence, a software fence, or a sync_file fd. */
interface FenceBind {
  readonly kind: 'sched' | 'sw' | 'syncFile';
  readonly agent: number;
  readonly step: number;
  readonly line: number;
}

/** What each kind of fence name is made by, for messages. */
const FENCE_MADE: Readonly<Record<FenceBind['kind'], string>> = {
  sched: 'a drmSchedEntityPushJob fence',
  sw: 'a dmaFenceInit fence',
  syncFile: 'a dmaBufExportSyncFile sync_file',
};

/** A fence name a step uses: which kinds will do there. */
interface FenceUse {
  readonly path: Key[];
  readonly name: string;
  readonly agent: number;
  readonly step: number;
  readonly kinds: readonly FenceBind['kind'][];
  readonly why: string;
}

/**
 * The `reserved` heap is the machine's CMA area: every profile the scenario
 * runs on must have one (createMachine's default gives one to arm64 only),
 * large enough for the reserved buffers together.
 */
function cmaCheck(at: Located, f: ScenarioFile): { take(i: number, bytes: number): void } {
  const profiles = f.profiles === 'all' ? PROFILE_NAMES : f.profiles;
  const ramBytes = f.machine?.ramBytes ?? DEFAULT_RAM_BYTES;
  const cmaBytes = f.machine?.cmaBytes;
  const areas = profiles.map((profile) => ({
    profile,
    size: resolveOptions({ profile, ramBytes, ...(cmaBytes !== undefined ? { cmaBytes } : {}) }).cmaBytes,
  }));
  let used = 0;
  return {
    take(i, bytes) {
      const none = areas.filter((a) => a.size === 0).map((a) => a.profile);
      if (none.length > 0) {
        const why =
          cmaBytes === undefined
            ? `${none.join(', ')} reserve${none.length === 1 ? 's' : ''} none by default: set machine.cmaBytes (a multiple of 4 MiB)`
            : 'machine.cmaBytes is 0';
        at.fail(['buffers', i, 'heap'], `the reserved heap is the machine's CMA area, and ${why}`);
      }
      used += Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE;
      const least = Math.min(...areas.map((a) => a.size));
      if (used > least) {
        at.fail(
          ['buffers', i, 'size'],
          `the reserved heap's buffers take ${used} bytes up to here, more than the CMA area's ${least}`,
        );
      }
    },
  };
}

/**
 * The swiotlb pool must fit where createMachine reserves it (initSwiotlb in
 * src/dma/swiotlb.ts): whole segments of slots, top-down below 4 GiB (arm64:
 * the top of ZONE_DMA) in RAM, above the kernel image and beside the CMA area
 * placed before it; only on a profile that sets a pool up at all.
 */
function swiotlbCheck(at: Located, f: ScenarioFile): void {
  const mc = f.machine ?? {};
  const ramBytes = mc.ramBytes ?? DEFAULT_RAM_BYTES;
  for (const name of f.profiles === 'all' ? PROFILE_NAMES : f.profiles) {
    const base = resolveProfile(name);
    const profile =
      mc.zoneDmaBits !== undefined && base.arch === 'arm64' ? { ...base, zoneDmaBits: mc.zoneDmaBits } : base;
    const o = resolveOptions({
      profile,
      ramBytes,
      ...(mc.swiotlbBytes !== undefined ? { swiotlbBytes: mc.swiotlbBytes } : {}),
      ...(mc.cmaBytes !== undefined ? { cmaBytes: mc.cmaBytes } : {}),
      ...(mc.kmallocBounce !== undefined ? { kmallocBounce: mc.kmallocBounce } : {}),
    });
    // swiotlbWanted (src/dma/swiotlb.ts), the arch's swiotlb_init decision.
    const wanted =
      profile.forceSwiotlb ||
      (profile.arch === 'x86' && ramBytes > 2 ** 32) ||
      (profile.arch === 'arm64' && (o.kmallocBounce || ramBytes > 2 ** profile.zoneDmaBits));
    if (!wanted || o.swiotlbBytes === 0) continue;
    const seg = IO_TLB_SIZE * IO_TLB_SEGSIZE;
    const pool = Math.max(seg, Math.floor(o.swiotlbBytes / seg) * seg);
    const lowBits = profile.arch === 'arm64' ? Math.min(32, profile.zoneDmaBits) : 32;
    const top = Math.floor(Math.min(ramBytes, 2 ** lowBits) / PAGE_SIZE);
    // The reserved ranges below the pool's limit: the firmware and kernel image, then the CMA area (initCma).
    const taken: [number, number][] = [[0, KERNEL_RODATA_END / PAGE_SIZE]];
    if (o.cmaBytes > 0) {
      const cmaTop = Math.floor(Math.min(ramBytes, 2 ** 32) / PAGE_SIZE);
      const cmaPages = o.cmaBytes / PAGE_SIZE;
      const start = Math.floor((cmaTop - cmaPages) / (CMA_STEP / PAGE_SIZE)) * (CMA_STEP / PAGE_SIZE);
      taken.push([start, start + cmaPages]);
    }
    // memblock's top-down search finds the pool a place in any free gap large enough.
    let gap = 0;
    let end = top;
    for (const [start, stop] of taken.sort((x, y) => y[0] - x[0])) {
      if (stop < end) gap = Math.max(gap, end - stop);
      end = Math.min(end, start);
    }
    const room = Math.floor((gap * PAGE_SIZE) / seg) * seg;
    if (pool > room) {
      at.fail(
        mc.swiotlbBytes !== undefined ? ['machine', 'swiotlbBytes'] : ['machine'],
        `a ${o.swiotlbBytes}-byte swiotlb pool does not fit below 2^${lowBits} on ${name} with ${ramBytes} bytes of RAM${o.cmaBytes > 0 ? ` and a ${o.cmaBytes}-byte CMA area` : ''}: at most ${room}`,
      );
    }
  }
}

/** The keys valibot's records skip, as keys that would reach the prototype (its `_isValidObjectKey`). */
const PROTO_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];

function plain(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * The file's two records (`expect` and each step) checked for the keys
 * valibot would silently drop, before it sees them: such a key is neither a
 * profile nor a step. The strict objects elsewhere refuse them already.
 */
function protoKeysCheck(at: Located, raw: unknown): void {
  if (!plain(raw)) return;
  if (plain(raw.expect)) {
    for (const k of Object.keys(raw.expect)) {
      if (PROTO_KEYS.includes(k)) {
        at.fail(
          ['expect', k],
          `must be one of ${PROFILE_NAMES.map((p) => `"${p}"`).join(' | ')}, got "${k}"`,
        );
      }
    }
  }
  if (!Array.isArray(raw.agents)) return;
  raw.agents.forEach((a: unknown, ai) => {
    if (!plain(a) || !Array.isArray(a.steps)) return;
    a.steps.forEach((st: unknown, si) => {
      if (!plain(st)) return;
      for (const k of Object.keys(st)) {
        if (PROTO_KEYS.includes(k)) {
          at.fail(
            ['agents', ai, 'steps', si, k],
            `unknown step '${k}' (known: ${STEP_OPS.join(', ')})`,
            true,
          );
        }
      }
    });
  });
}

/** What a step's `as` binds, by step (a name keeps one of these for the whole file). */
const AS_BINDS: Partial<Record<StepOp, string>> = {
  dmaMapSingle: 'a DMA mapping',
  dmaMapSgtable: 'a DMA mapping',
  dmaBufMapAttachment: 'a DMA mapping',
  mmap: 'a user mapping',
  dmaBufAttach: 'an attachment',
  drmSchedEntityPushJob: 'a fence or sync_file',
  dmaFenceInit: 'a fence or sync_file',
  dmaBufExportSyncFile: 'a fence or sync_file',
};

/**
 * Parses and validates a scenario file's text (`file` is only used in
 * messages and as the scenario's `source`).
 */
export function parseScenario(file: string, text: string): Scenario {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = new Located(file, doc, lines);
  const err = doc.errors[0];
  if (err !== undefined) {
    const pos = lines.linePos(err.pos[0]);
    // The library's wording, but not its advice to call another of its functions.
    const what =
      err.code === 'MULTIPLE_DOCS'
        ? 'one scenario per file, and this file holds several YAML documents'
        : `not valid YAML: ${err.message.split('\n')[0]}`;
    throw new DmalabError(what, {
      file,
      line: Math.max(1, pos.line),
      column: Math.max(1, pos.col),
      field: '(file)',
    });
  }
  if (!isMap(doc.contents)) at.fail([], 'a scenario file is a map of fields (name, intent, agents, …)');
  let raw: unknown;
  try {
    // yaml refuses documents whose aliases expand past its limit (a "billion laughs" file) by throwing.
    raw = doc.toJS();
  } catch (e) {
    const message = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new DmalabError(`not valid YAML: ${message}`, { file, line: 1, column: 1, field: '(file)' });
  }
  protoKeysCheck(at, raw);
  const f = validate(at, [], SCENARIO_FILE, raw, bufferFieldHint(raw));

  const devices = new Set<string>();
  f.devices.forEach((d, i) => {
    if (devices.has(d.name)) at.fail(['devices', i, 'name'], `a device named '${d.name}' already exists`);
    devices.add(d.name);
  });
  const buffers = new Map<string, BufferKind>();
  // Sizes bound a step's offset + length here, before any machine allocates a byte for it.
  const sizes = new Map<string, number>();
  const ram = f.machine?.ramBytes ?? DEFAULT_RAM_BYTES;
  // createMachine places the CMA area below 4 GiB beside the kernel and swiotlb; half of that always fits.
  const cmaRoom = Math.floor(Math.min(ram, 2 ** 32) / 2 / CMA_STEP) * CMA_STEP;
  if ((f.machine?.cmaBytes ?? 0) > cmaRoom) {
    at.fail(
      ['machine', 'cmaBytes'],
      `must leave room for the kernel and swiotlb: at most half the RAM below 4 GiB (${cmaRoom})`,
    );
  }
  const cma = cmaCheck(at, f);
  swiotlbCheck(at, f);
  /**
   * Every name bound in the file, by what it names: a step's `as` may not take
   * a buffer's name or one another kind of step bound, so that a step's `at`
   * or a final condition's `read` names one thing, whichever is looked up first.
   */
  const names = new Map<string, { what: string; line: number }>();
  const claim = (path: Key[], name: string, what: string): void => {
    const had = names.get(name);
    if (had !== undefined && had.what !== what) {
      at.fail(path, `'${name}' already names ${had.what} (line ${had.line}): a name binds one kind of thing`);
    }
    if (had === undefined) names.set(name, { what, line: at.line(path) });
  };
  f.buffers.forEach((b, i) => {
    if (buffers.has(b.name)) at.fail(['buffers', i, 'name'], `a buffer named '${b.name}' already exists`);
    buffers.set(b.name, b.kind);
    claim(['buffers', i, 'name'], b.name, 'a buffer');
    if (b.kind === 'pages') {
      const bytes = b.pages * PAGE_SIZE;
      sizes.set(b.name, bytes);
      if (bytes > ram) {
        at.fail(
          ['buffers', i, 'pages'],
          `${b.pages} pages (${bytes} bytes) is more than the machine's ${ram} bytes of RAM`,
        );
      }
      if (b.contiguous === true && b.pages > MAX_CONTIGUOUS_PAGES) {
        at.fail(
          ['buffers', i, 'pages'],
          `a contiguous block is at most ${MAX_CONTIGUOUS_PAGES} pages (order ${MAX_PAGE_ORDER}, MAX_PAGE_ORDER)`,
        );
      }
      return;
    }
    sizes.set(b.name, b.size);
    if (b.size > ram) {
      at.fail(['buffers', i, 'size'], `${b.size} bytes is more than the machine's ${ram} bytes of RAM`);
    }
    if (b.kind === 'heap') {
      if (b.heap === 'reserved') cma.take(i, b.size);
      return;
    }
    if (b.kind !== 'kmalloc' && b.device === undefined) {
      at.fail(['buffers', i], `a ${b.kind} buffer needs the device it is allocated for`);
    }
    if (b.device !== undefined && !devices.has(b.device)) {
      at.fail(['buffers', i, 'device'], `no device named '${b.device}' in devices`);
    }
  });

  // Names bound by steps (`as`), checked against their uses after every agent is read.
  const mappings = new Map<string, MappingBind>();
  const attachments = new Map<string, string>();
  const maps = new Map<string, number>();
  const uses: Use[] = [];
  /** The step's last byte past its target, checked against the size of what it names. */
  const within = (path: Key[], what: string, size: number | undefined, end: number, field: string): void => {
    if (size !== undefined && end > size) {
      at.fail(path, `offset + ${field} is ${end}, past the end of '${what}' (${size} bytes)`);
    }
  };
  /** Binds a mapping name; a name keeps one kind of mapping (it may be mapped again after an unmap). */
  const bindMapping = (path: Key[], name: string, bind: MappingBind): void => {
    const had = mappings.get(name);
    if (had !== undefined && had.kind !== bind.kind) {
      at.fail(path, `'${name}' already names a ${MAPPING_KINDS[had.kind].made} mapping`);
    }
    mappings.set(name, bind);
  };
  const fences = new Map<string, FenceBind>();
  const fenceUses: FenceUse[] = [];
  const agentNames = new Set<string>();
  // A wait on something no agent signals would block its agent for ever: refused at the wait.
  const signals = new Map<string, { agent: number; step: number; line: number }[]>();
  const waits: { path: Key[]; name: string; agent: number; step: number }[] = [];
  /** Binds and records the fence names of a fence or sync_file step, and checks its buffers and ranges. */
  const fenceSteps = (
    op: StepOp,
    obj: Record<string, unknown>,
    base: Key[],
    ai: number,
    si: number,
  ): void => {
    const bind = (kind: FenceBind['kind']): void => {
      const name = obj.as as string;
      const had = fences.get(name);
      if (had !== undefined) {
        at.fail([...base, 'as'], `'${name}' already names ${FENCE_MADE[had.kind]} (line ${had.line})`);
      }
      fences.set(name, { kind, agent: ai, step: si, line: at.line(['agents', ai, 'steps', si]) });
    };
    const use = (path: Key[], name: string, kinds: FenceBind['kind'][], why: string): void => {
      fenceUses.push({ path, name, agent: ai, step: si, kinds, why });
    };
    switch (op) {
      case 'drmSchedEntityPushJob': {
        const deps = obj.deps as string[];
        deps.forEach((d, i) => {
          use([...base, 'deps', i], d, ['sched', 'sw', 'syncFile'], 'any fence will do');
        });
        const resv = obj.resv as { buffer: string } | undefined;
        if (resv !== undefined) {
          const kind = buffers.get(resv.buffer);
          if (kind === undefined)
            at.fail([...base, 'resv', 'buffer'], `no buffer named '${resv.buffer}' in buffers`);
          if (kind !== 'heap') {
            at.fail(
              [...base, 'resv', 'buffer'],
              `'${resv.buffer}' is a ${kind} buffer: only a heap buffer is a dma-buf with a reservation object`,
            );
          }
        }
        const which = obj.write !== undefined ? 'write' : 'read';
        const range = obj[which] as { offset?: number; length: number };
        uses.push({
          path: [...base, 'mapping'],
          kind: 'mapping',
          name: obj.mapping as string,
          end: (range.offset ?? 0) + range.length,
          span: [...base, which, 'length'],
        });
        bind('sched');
        return;
      }
      case 'dmaFenceInit':
        bind('sw');
        return;
      case 'dmaBufExportSyncFile':
        bind('syncFile');
        return;
      case 'dmaFenceSignal':
        use(
          [...base, 'fence'],
          obj.fence as string,
          ['sw'],
          "only a software fence is signalled by a step (a job's fence signals when the device completes it)",
        );
        return;
      case 'dmaFenceWait':
      case 'dmaResvAddFence':
        use(
          [...base, 'fence'],
          obj.fence as string,
          ['sched', 'sw'],
          "a kernel step takes a fence (a driver gets a sync_file's fence through deps)",
        );
        return;
      case 'dmaBufImportSyncFile':
      case 'poll':
        use(
          [...base, 'syncFile'],
          obj.syncFile as string,
          ['syncFile'],
          'a process holds only sync_file fds',
        );
        return;
    }
  };
  const agents: AgentSpec[] = f.agents.map((a, ai) => {
    if (agentNames.has(a.name)) at.fail(['agents', ai, 'name'], `an agent named '${a.name}' already exists`);
    agentNames.add(a.name);
    if (a.kind === 'device') {
      if (a.device === undefined) at.fail(['agents', ai], 'a device agent needs the device it drives');
      if (!devices.has(a.device!))
        at.fail(['agents', ai, 'device'], `no device named '${a.device}' in devices`);
    } else if (a.device !== undefined) {
      at.fail(['agents', ai, 'device'], 'only a device agent names a device');
    }
    const steps: StepSpec[] = a.steps.map((s, si) => {
      const op = Object.keys(s)[0]!;
      const base: Key[] = ['agents', ai, 'steps', si, op];
      if (!(STEP_OPS as string[]).includes(op)) {
        at.fail(base, `unknown step '${op}' (known: ${STEP_OPS.join(', ')})`, true);
      }
      const known = op as StepOp;
      if (!STEP_AGENTS[known].includes(a.kind)) {
        at.fail(
          base,
          `a ${a.kind} agent cannot take a '${op}' step (${STEP_AGENTS[known].join(' or ')} only)`,
          true,
        );
      }
      const args = validate(at, base, STEP_ARGS[known] as v.GenericSchema, s[op]) as unknown;
      const obj = (typeof args === 'object' && args !== null ? args : { value: args }) as Record<
        string,
        unknown
      >;
      if ('buffer' in obj) {
        const kind = buffers.get(obj.buffer as string);
        if (kind === undefined)
          at.fail([...base, 'buffer'], `no buffer named '${String(obj.buffer)}' in buffers`);
        const allowed = STEP_BUFFER_KINDS[known];
        if (allowed !== undefined && !allowed.kinds.includes(kind!)) {
          at.fail([...base, 'buffer'], `'${String(obj.buffer)}' is a ${kind} buffer: ${allowed.hint}`);
        }
      }
      if ('device' in obj && !devices.has(obj.device as string)) {
        at.fail([...base, 'device'], `no device named '${String(obj.device)}' in devices`);
      }
      const offset = typeof obj.offset === 'number' ? obj.offset : 0;
      const span = 'length' in obj ? 'length' : 'size';
      const end = offset + (typeof obj[span] === 'number' ? (obj[span] as number) : 0);
      if ('buffer' in obj && span in obj) {
        within([...base, span], obj.buffer as string, sizes.get(obj.buffer as string), end, span);
      }
      const as = [...base, 'as'];
      const binds = AS_BINDS[known];
      if (binds !== undefined) claim(as, obj.as as string, binds);
      fenceSteps(known, obj, base, ai, si);
      if (known === 'signal') {
        const by = signals.get(args as string) ?? [];
        by.push({ agent: ai, step: si, line: at.line(['agents', ai, 'steps', si]) });
        signals.set(args as string, by);
      }
      if (known === 'wait') waits.push({ path: base, name: args as string, agent: ai, step: si });
      if (known === 'dmaMapSingle')
        bindMapping(as, obj.as as string, { kind: 'single', size: obj.size as number });
      if (known === 'dmaMapSgtable') {
        bindMapping(as, obj.as as string, { kind: 'sgtable', size: sizes.get(obj.buffer as string)! });
      }
      if (known === 'dmaBufMapAttachment') {
        bindMapping(as, obj.as as string, { kind: 'dmabuf', attachment: obj.attachment as string });
      }
      if (known === 'dmaBufAttach') attachments.set(obj.as as string, obj.buffer as string);
      if (known === 'mmap') maps.set(obj.as as string, sizes.get(obj.buffer as string) ?? 0);
      if ('attachment' in obj) {
        uses.push({ path: [...base, 'attachment'], kind: 'attachment', name: obj.attachment as string });
      }
      if ('mapping' in obj) {
        const want = MAPPING_OPS[known];
        uses.push({
          path: [...base, 'mapping'],
          kind: 'mapping',
          name: obj.mapping as string,
          ...(want !== undefined ? { want, op: known } : {}),
        });
      }
      if ('map' in obj)
        uses.push({
          path: [...base, 'map'],
          kind: 'map',
          name: obj.map as string,
          end,
          span: [...base, span],
        });
      if ('at' in obj)
        uses.push({ path: [...base, 'at'], kind: 'at', name: obj.at as string, end, span: [...base, span] });
      return { op, args: obj, ...at.pos(['agents', ai, 'steps', si]) };
    });
    return { name: a.name, kind: a.kind, ...(a.device !== undefined ? { device: a.device } : {}), steps };
  });
  for (const u of fenceUses) {
    const bound = fences.get(u.name);
    if (bound === undefined) {
      at.fail(
        u.path,
        `no fence or sync_file named '${u.name}' (drmSchedEntityPushJob, dmaFenceInit or dmaBufExportSyncFile … as)`,
      );
      continue;
    }
    if (!u.kinds.includes(bound.kind)) at.fail(u.path, `'${u.name}' is ${FENCE_MADE[bound.kind]}: ${u.why}`);
    if (bound.kind === 'syncFile' && u.kinds.length === 1 && bound.agent !== u.agent) {
      at.fail(
        u.path,
        `'${u.name}' is an fd of agent '${f.agents[bound.agent]!.name}': a sync_file fd belongs to the process that made it`,
      );
    }
    if (bound.agent === u.agent && bound.step >= u.step) {
      at.fail(u.path, `'${u.name}' is used before the step that makes it (line ${bound.line})`);
    }
  }
  // Attachments first: a dma-buf mapping's size is its attachment's buffer's.
  for (const u of uses) {
    if (u.kind === 'attachment' && !attachments.has(u.name)) {
      at.fail(u.path, `no attachment named '${u.name}' (dmaBufAttach … as)`);
    }
  }
  const mappingSize = (name: string): number | undefined => {
    const b = mappings.get(name);
    if (b === undefined) return undefined;
    return b.size ?? sizes.get(attachments.get(b.attachment!)!);
  };
  for (const u of uses) {
    if (u.kind === 'attachment') continue;
    const bound = mappings.get(u.name);
    const kind = buffers.get(u.name);
    const ok =
      u.kind === 'mapping'
        ? bound !== undefined
        : u.kind === 'map'
          ? maps.has(u.name)
          : bound !== undefined || kind === 'coherent' || kind === 'coherent-for-mmap';
    if (!ok) {
      const what =
        u.kind === 'map'
          ? 'user mapping (mmap … as)'
          : u.kind === 'mapping'
            ? 'DMA mapping'
            : 'DMA mapping or coherent buffer';
      const hint = kind === undefined || u.kind === 'map' ? '' : ` (${NO_BUS_ADDRESS[kind]})`;
      at.fail(u.path, `no ${what} named '${u.name}'${hint}`);
    }
    if (u.kind === 'mapping' && u.want !== undefined && bound!.kind !== u.want) {
      const made = MAPPING_KINDS[bound!.kind];
      at.fail(u.path, `'${u.name}' is a ${made.made} mapping, which ${made.takes}, not ${u.op}`);
    }
    if (u.end !== undefined && u.span !== undefined) {
      const size = u.kind === 'map' ? maps.get(u.name) : (mappingSize(u.name) ?? sizes.get(u.name));
      within(u.span, u.name, size, u.end, 'length');
    }
  }
  for (const w of waits) {
    const by = signals.get(w.name);
    if (by === undefined) at.fail(w.path, `waits for '${w.name}', which no agent signals`);
    // Certain only when every signaller is a later step of the waiting agent: the wait blocks before any runs.
    else if (by.every((x) => x.agent === w.agent && x.step > w.step)) {
      at.fail(
        w.path,
        `waits for '${w.name}', which only a later step of this agent signals (line ${by[0]!.line}): it would wait for ever`,
      );
    }
  }
  const final: FinalCondition[] = f.final.map((c, i) => {
    if (!buffers.has(c.read) && !maps.has(c.read)) {
      at.fail(['final', i, 'read'], `no buffer or user mapping named '${c.read}'`);
    }
    within(
      ['final', i, 'length'],
      c.read,
      maps.get(c.read) ?? sizes.get(c.read),
      (c.offset ?? 0) + c.length,
      'length',
    );
    return {
      read: c.read,
      offset: c.offset ?? 0,
      length: c.length,
      equals: c.equals,
      line: at.line(['final', i]),
    };
  });
  for (const p of Object.keys(f.expect)) {
    if (f.profiles !== 'all' && !f.profiles.includes(p)) {
      at.fail(['expect', p], `expects a verdict on '${p}', which is not among the scenario's profiles`, true);
    }
  }
  return {
    name: f.name,
    intent: f.intent,
    ...(f.seed !== undefined ? { seed: f.seed } : {}),
    profiles: f.profiles === 'all' ? PROFILE_NAMES.slice() : f.profiles,
    expect: f.expect,
    source: file,
    machine: compact(f.machine),
    body: {
      kind: 'declarative',
      devices: f.devices.map(compact),
      buffers: f.buffers.map(compact),
      agents,
      final,
    },
  };
}
