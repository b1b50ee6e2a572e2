/**
 * Memory-attribute aliases (DESIGN.md §2: the class of bug behind several
 * GPU and virtio corruptions): one physical page seen through a cached
 * view and through an uncached or write-combined one. On x86 the uncached
 * access snoops the caches and nothing shows; on arm64 and PA-RISC it does
 * not, so a dirty line of the cached view hides writes from the uncached
 * one, and a late write-back of it overwrites what was written uncached.
 *
 * Views come from page-table events (the mm layer's PTE installs and
 * removals); the kernel linear map is always a cached view of RAM, and is
 * only held against a page when it is used while an uncached view lives.
 * ATTR_ALIAS (latent) is raised when an uncached view is created over dirty
 * lines, when views of both kinds live at once, and when a cached access
 * touches a page that has a live uncached view.
 */

import {
  type CpuAccessEvent,
  cacheDirtyLines,
  formatHex,
  type Machine,
  PAGE_SIZE,
  type PteInstallEvent,
  type PteRemoveEvent,
} from '../machine/index.js';
import { ATTR_ALIAS } from './codes.js';
import { raise } from './report.js';
import type { DebugState, PageViews } from './state.js';

const MISMATCHED = 1;
const DIRTY_LINES = 2;
const CACHED_ACCESS = 4;

function views(st: DebugState, pfn: number): PageViews {
  let v = st.views.get(pfn);
  if (v === undefined) {
    v = { cached: 0, uncached: 0, lastCached: '', lastUncached: '', reported: 0 };
    st.views.set(pfn, v);
  }
  return v;
}

function describe(space: string, va: number, attr: string): string {
  return `${attr} ${space === 'kernel' ? 'kernel' : `${space} user`} mapping at ${formatHex(va)}`;
}

/** A PTE range installed: count the views, flag mixed attributes and dirty lines under an uncached view. */
export function onPteInstall(m: Machine, st: DebugState, ev: PteInstallEvent): void {
  const uncached = ev.attr !== 'cached';
  let dirtyPages = 0;
  let dirtyFirst = -1;
  let mixedFirst = -1;
  let mixedWith = '';
  for (let k = 0; k < ev.pages; k++) {
    const pfn = ev.pfn + k;
    const v = views(st, pfn);
    const desc = describe(ev.owner, ev.va + k * PAGE_SIZE, ev.attr);
    if (uncached) {
      if (cacheDirtyLines(m, pfn * PAGE_SIZE, PAGE_SIZE) > 0) {
        dirtyPages++;
        if (dirtyFirst < 0) dirtyFirst = pfn;
      }
      if (v.cached > 0 && mixedFirst < 0) {
        mixedFirst = pfn;
        mixedWith = v.lastCached;
      }
      v.uncached++;
      v.lastUncached = desc;
    } else {
      if (v.uncached > 0 && mixedFirst < 0) {
        mixedFirst = pfn;
        mixedWith = v.lastUncached;
      }
      v.cached++;
      v.lastCached = desc;
    }
    v.reported = 0;
  }
  const view = describe(ev.owner, ev.va, ev.attr);
  if (dirtyFirst >= 0) {
    views(st, dirtyFirst).reported |= DIRTY_LINES;
    raise(
      m,
      st,
      ATTR_ALIAS,
      -1,
      `${view} created while dirty cache lines of a cached alias remain [pfn=${formatHex(dirtyFirst)}] [pages with dirty lines=${dirtyPages}]: a later write-back overwrites what is written through the uncached view, and uncached reads miss the dirty bytes; write back and invalidate the cached alias first (arch_dma_prep_coherent)`,
      {
        kind: 'dirty-lines',
        pfn: dirtyFirst,
        pages: dirtyPages,
        view: { owner: ev.owner, va: ev.va, attr: ev.attr },
      },
    );
  }
  if (mixedFirst >= 0) {
    views(st, mixedFirst).reported |= MISMATCHED;
    raise(
      m,
      st,
      ATTR_ALIAS,
      -1,
      `${view} aliases a page that also has a ${mixedWith} [pfn=${formatHex(mixedFirst)}]: one page with cached and uncached views`,
      {
        kind: 'mismatched-views',
        pfn: mixedFirst,
        view: { owner: ev.owner, va: ev.va, attr: ev.attr },
        other: mixedWith,
      },
    );
  }
}

export function onPteRemove(st: DebugState, ev: PteRemoveEvent): void {
  for (let k = 0; k < ev.pages; k++) {
    const v = st.views.get(ev.pfn + k);
    if (v === undefined) continue;
    if (ev.attr === 'cached') v.cached = Math.max(0, v.cached - 1);
    else v.uncached = Math.max(0, v.uncached - 1);
    v.reported = 0;
    if (v.cached === 0 && v.uncached === 0) st.views.delete(ev.pfn + k);
  }
}

/** A cached CPU access to a page with a live uncached view. */
export function aliasCpuAccess(m: Machine, st: DebugState, ev: CpuAccessEvent): void {
  if (st.views.size === 0 || ev.attr !== 'cached') return;
  const first = Math.floor(ev.pa / PAGE_SIZE);
  const last = Math.floor((ev.pa + ev.len - 1) / PAGE_SIZE);
  for (let pfn = first; pfn <= last; pfn++) {
    const v = st.views.get(pfn);
    if (v === undefined || v.uncached === 0 || (v.reported & CACHED_ACCESS) !== 0) continue;
    v.reported |= CACHED_ACCESS;
    raise(
      m,
      st,
      ATTR_ALIAS,
      -1,
      `cached ${ev.write ? 'store' : 'load'} through ${formatHex(ev.va)} to a page that has a ${v.lastUncached} [pfn=${formatHex(pfn)}] [len=${ev.len}] [agent=${ev.agent}]: the two views do not see each other's bytes on non-snooping machines`,
      {
        kind: 'cached-access',
        pfn,
        access: { agent: ev.agent, va: ev.va, phys: ev.pa, len: ev.len },
        other: v.lastUncached,
      },
      ev.agent,
    );
    return;
  }
}
