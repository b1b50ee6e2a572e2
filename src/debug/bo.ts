/**
 * Buffer objects under user mappings (seed 004): the one virtual pointer a
 * process holds must always reach the object's current backing. The
 * checker learns each object's fake offset (`bo-init`), the frames backing
 * it after every move (`bo-move`), and the processes' mappings of DRM
 * files (`vma-map`/`vma-unmap`). A user access through such a mapping that
 * reaches another frame went through a PTE the move did not shoot down:
 * a write there is lost to the object, a read sees bytes the object no
 * longer has — BO_STALE_PTE (broken), once per object and move.
 */

import {
  type BoDestroyEvent,
  type BoInitEvent,
  type BoMoveEvent,
  type CpuAccessEvent,
  formatHex,
  type Machine,
  PAGE_SIZE,
  type VmaMapEvent,
  type VmaUnmapEvent,
} from '../machine/index.js';
import { BO_STALE_PTE } from './codes.js';
import { raise } from './report.js';
import type { DebugState } from './state.js';

interface BoObj {
  path: string;
  pgoff: number;
  pages: number;
  pfns: number[];
  placement: string;
  /** Step of the last move, and whether its user PTEs were shot down. */
  movedAt: number;
  unmapped: boolean;
  reportedAt: number;
}

interface BoUserMap {
  owner: string;
  pid: number;
  start: number;
  end: number;
  pgoff: number;
  path: string;
}

export interface BoCheckState {
  objs: Map<number, BoObj>;
  paths: string[];
  maps: BoUserMap[];
}

export function emptyBoCheck(): BoCheckState {
  return { objs: new Map(), paths: [], maps: [] };
}

export function onBoInit(st: DebugState, ev: BoInitEvent): void {
  const s = st.bo;
  if (!s.paths.includes(ev.path)) s.paths.push(ev.path);
  const pages = Math.ceil(ev.size / PAGE_SIZE);
  // An object whose fake offset this one reuses was released (it may live on as a zombie until its
  // moves complete): no mapping can reach it any more.
  for (const [id, o] of s.objs) {
    if (o.path === ev.path && o.pgoff < ev.pgoff + pages && ev.pgoff < o.pgoff + o.pages) s.objs.delete(id);
  }
  s.objs.set(ev.bo, {
    path: ev.path,
    pgoff: ev.pgoff,
    pages,
    pfns: [],
    placement: 'none',
    movedAt: ev.step,
    unmapped: true,
    reportedAt: -1,
  });
}

export function onBoMove(st: DebugState, ev: BoMoveEvent): void {
  const o = st.bo.objs.get(ev.bo);
  if (o === undefined) return;
  o.pfns = ev.pfns.slice();
  o.placement = ev.to;
  if (ev.reason !== 'populate') {
    o.movedAt = ev.step;
    o.unmapped = ev.unmapped;
  }
}

export function onBoDestroy(st: DebugState, ev: BoDestroyEvent): void {
  st.bo.objs.delete(ev.bo);
}

export function onBoVmaMap(st: DebugState, ev: VmaMapEvent): void {
  const s = st.bo;
  if (ev.file === null || !s.paths.includes(ev.file)) return;
  s.maps.push({ owner: ev.owner, pid: ev.pid, start: ev.start, end: ev.end, pgoff: ev.pgoff, path: ev.file });
}

export function onBoVmaUnmap(st: DebugState, ev: VmaUnmapEvent): void {
  const s = st.bo;
  if (s.maps.length === 0) return;
  // A split re-announces both pieces with vma-map, so every overlap goes.
  s.maps = s.maps.filter((u) => u.pid !== ev.pid || u.end <= ev.start || u.start >= ev.end);
}

function objAt(s: BoCheckState, path: string, pgoff: number): [number, BoObj] | undefined {
  for (const [id, o] of s.objs)
    if (o.path === path && pgoff >= o.pgoff && pgoff < o.pgoff + o.pages) return [id, o];
  return undefined;
}

/**
 * A user access (the process's own, or uaccess on its behalf): through a
 * buffer object's mapping, it must reach the object's current frames. The
 * mapping is found by address space (`mm` is the pid), never by name: two
 * processes of one name map different objects at the same addresses.
 */
export function boCpuAccess(m: Machine, st: DebugState, ev: CpuAccessEvent): void {
  const s = st.bo;
  if (s.maps.length === 0 || ev.mm === 0) return;
  for (const u of s.maps) {
    if (u.pid !== ev.mm || ev.va < u.start || ev.va >= u.end) continue;
    const fake = u.pgoff + Math.floor((ev.va - u.start) / PAGE_SIZE);
    const hit = objAt(s, u.path, fake);
    if (hit === undefined) return;
    const [id, o] = hit;
    const want = o.pfns[fake - o.pgoff] ?? -1;
    const got = Math.floor(ev.pa / PAGE_SIZE);
    if (want === got || o.reportedAt === o.movedAt) return;
    o.reportedAt = o.movedAt;
    const what = ev.write ? 'write lost' : 'stale read';
    const now =
      want < 0
        ? `now ${o.placement}, with no frame behind that page`
        : `now in ${o.placement} at frame ${formatHex(want)}`;
    // copy_to/from_user goes through the same PTEs: name the process it ran for.
    const who = ev.agent === u.owner ? ev.agent : `${ev.agent} (for ${u.owner}[${u.pid}])`;
    const why = o.unmapped
      ? 'a PTE survived the move'
      : `the move at step ${o.movedAt} did not shoot down the user PTEs first (ttm_bo_unmap_virtual → unmap_mapping_range)`;
    raise(
      m,
      st,
      BO_STALE_PTE,
      -1,
      `${what}: ${who} ${ev.write ? 'wrote' : 'read'} ${ev.len} bytes of buffer object ${id} at ${formatHex(ev.va)} through a PTE to frame ${formatHex(got)}, which no longer backs it (${now}): ${why}`,
      {
        bo: id,
        pid: u.pid,
        va: ev.va,
        pa: ev.pa,
        len: ev.len,
        write: ev.write,
        frame: got,
        current: want,
        movedAt: o.movedAt,
      },
      ev.agent,
    );
    return;
  }
}
