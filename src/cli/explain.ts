/**
 * `dmalab explain`: the semantics table the model generates
 * (`explainSemantics`), as text — one detailed table for a single profile,
 * or calls × profiles side by side for several.
 */

import { stableStringify, textTable } from '../debug/index.js';
import { DmalabError, PROFILES } from '../machine/index.js';
import { explainSemantics, SEMANTICS_CALLS, type SemanticsRow } from '../scenario/index.js';

const LEGEND = [
  'cache: clean = dirty lines written back, kept (arm64 dc cvac);',
  '       flush = written back and dropped (arm64 dc civac, PA-RISC fdc);',
  '       invalidate = dropped, dirty bytes discarded (arm64 dc ivac, PA-RISC pdc "purge").',
  'bounce: to-slot / from-slot = swiotlb copies between the buffer and its bounce slot;',
  '        (slot) = maintenance done on the bounce slot instead of the buffer.',
  'bytes: the size mapped or allocated; 64 = a small kmalloc buffer, which may share a cache line',
  '       with its neighbour (arm64 bounces it for a non-coherent device); dma_*_sg map two pages;',
  '       dma_buf_* work on a one-page system-heap dma-buf with one importer (for the CPU access',
  '       brackets, mapped DMA_BIDIRECTIONAL; dir is the direction of the CPU access).',
  'mapping: the attribute of the CPU view an allocation returns, or of the user mapping dma_mmap_* makes.',
  'Every row is measured: the call runs on a fresh machine and the events it emits are read.',
];

/** `dmaMapSingle` or `dma_map_single` → the kernel name, checked against the probed calls. */
export function kernelCallName(name: string): string {
  const snake = name.includes('_') ? name : name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  if (!SEMANTICS_CALLS.includes(snake)) {
    throw new DmalabError(`unknown call '${name}' (known: ${SEMANTICS_CALLS.join(', ')})`, { field: 'CALL' });
  }
  return snake;
}

function cacheText(r: SemanticsRow): string {
  return r.cache.map((c) => (c.on === 'slot' ? `${c.op} (slot)` : c.op)).join(', ');
}

/** What a row does, in a few words, for the side-by-side view. */
function summary(r: SemanticsRow): string {
  const parts = [cacheText(r), ...r.bounce];
  if (r.mapping !== null) parts.push(r.mapping);
  if (r.result === 'DMA_MAPPING_ERROR' || r.result.startsWith('-') || r.result === 'NULL')
    parts.push(r.result);
  return parts.filter((p) => p !== '').join(', ') || '—';
}

function rowKey(r: SemanticsRow): string {
  return `${r.call}\u0000${r.dir ?? ''}\u0000${r.attrs}\u0000${r.size}`;
}

function detailed(profile: string, rows: readonly SemanticsRow[], color: boolean): string[] {
  const p = PROFILES[profile];
  const head = ['call', 'dir', 'attrs', 'bytes', 'cache', 'bounce', 'mapping', 'result'];
  const body = rows.map((r) => [
    r.call,
    r.dir ?? '',
    r.attrs,
    String(r.size),
    cacheText(r) || '—',
    r.bounce.join(', ') || '—',
    r.mapping ?? '',
    r.result,
  ]);
  return [`${profile}: ${p?.description ?? ''}`, '', ...textTable(head, body, color)];
}

function sideBySide(profiles: readonly string[], rows: readonly SemanticsRow[], color: boolean): string[] {
  const keys: string[] = [];
  const byKey = new Map<string, Map<string, SemanticsRow>>();
  for (const r of rows) {
    const k = rowKey(r);
    let m = byKey.get(k);
    if (m === undefined) {
      keys.push(k);
      m = new Map();
      byKey.set(k, m);
    }
    m.set(r.profile, r);
  }
  const body = keys.map((k) => {
    const [call, dir, attrs, size] = k.split('\u0000') as [string, string, string, string];
    const cells = byKey.get(k)!;
    return [call, dir, attrs, size, ...profiles.map((p) => summary(cells.get(p)!))];
  });
  return textTable(['call', 'dir', 'attrs', 'bytes', ...profiles], body, color);
}

/** Renders `explain`'s output: text (with a legend) or deterministic JSON. */
export function renderExplain(
  opts: { profiles: readonly string[]; call?: string },
  format: { json: boolean; color: boolean },
): string {
  const calls = opts.call === undefined ? undefined : [kernelCallName(opts.call)];
  const rows = explainSemantics({ profiles: opts.profiles, ...(calls !== undefined ? { calls } : {}) });
  if (format.json) return `${stableStringify(rows)}\n`;
  const lines =
    opts.profiles.length === 1
      ? detailed(opts.profiles[0]!, rows, format.color)
      : sideBySide(opts.profiles, rows, format.color);
  return `${[...lines, '', ...LEGEND].join('\n')}\n`;
}
