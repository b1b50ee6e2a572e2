/**
 * dma-buf mappings after a move (DMABUF_MOVED_MAPPING). A dynamic
 * exporter that moves a buffer first calls `dma_buf_move_notify`; every
 * dynamic importer must then drop its mappings and map again before its
 * device next touches the buffer, because the old table points at memory
 * that no longer holds it. The checker learns each attachment's mappings
 * (`dmabuf-map`/`dmabuf-unmap`, their DMA segments), marks them stale at
 * `dmabuf-move-notify`, and reports a device access through a stale one:
 * a write there is lost to the buffer (broken), a read sees the bytes of
 * the old place (latent: they differ once the buffer is written). Once per
 * mapping for reads and once for writes.
 */

import {
  type DeviceAccessEvent,
  type DmaBufDetachEvent,
  type DmaBufMapEvent,
  type DmaBufMoveNotifyEvent,
  type DmaBufUnmapEvent,
  formatHex,
  type Machine,
} from '../machine/index.js';
import { DMABUF_MOVED_MAPPING } from './codes.js';
import { raise } from './report.js';
import type { DebugState } from './state.js';

interface AttMapping {
  buf: number;
  attachment: number;
  device: string;
  /** Flat [dma address, length, …]. */
  segs: number[];
  /** Step of the move_notify that made it stale, -1 while valid. */
  staleSince: number;
  /** Kinds reported: 1 a read, 2 a write. */
  reported: number;
}

export interface DmaBufCheckState {
  maps: AttMapping[];
}

export function emptyDmaBufCheck(): DmaBufCheckState {
  return { maps: [] };
}

function segsOf(dmaAddrs: readonly number[], dmaLengths: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < dmaAddrs.length; i++) out.push(dmaAddrs[i]!, dmaLengths[i]!);
  return out;
}

/** A mapping handed to an importer. */
export function onDmaBufMap(st: DebugState, ev: DmaBufMapEvent): void {
  if (ev.ret !== 0) return;
  st.dmabuf.maps.push({
    buf: ev.buf,
    attachment: ev.attachment,
    device: ev.device,
    segs: segsOf(ev.dmaAddrs, ev.dmaLengths),
    staleSince: -1,
    reported: 0,
  });
}

/** The importer gave a mapping back: the oldest of the attachment with those segments. */
export function onDmaBufUnmap(st: DebugState, ev: DmaBufUnmapEvent): void {
  const segs = segsOf(ev.dmaAddrs, ev.dmaLengths);
  const maps = st.dmabuf.maps;
  const i = maps.findIndex(
    (r) =>
      r.attachment === ev.attachment &&
      r.segs.length === segs.length &&
      r.segs.every((v, k) => v === segs[k]),
  );
  if (i >= 0) maps.splice(i, 1);
}

export function onDmaBufDetach(st: DebugState, ev: DmaBufDetachEvent): void {
  st.dmabuf.maps = st.dmabuf.maps.filter((r) => r.attachment !== ev.attachment);
}

export function onDmaBufMoveNotify(st: DebugState, ev: DmaBufMoveNotifyEvent): void {
  for (const r of st.dmabuf.maps) {
    if (ev.attachments.includes(r.attachment) && r.staleSince < 0) r.staleSince = ev.step;
  }
}

/** DMABUF_MOVED_MAPPING for a device access through a mapping made stale by a move. */
export function dmaBufDeviceAccess(m: Machine, st: DebugState, dev: number, ev: DeviceAccessEvent): void {
  const maps = st.dmabuf.maps;
  if (maps.length === 0) return;
  for (const r of maps) {
    const kind = ev.write ? 2 : 1;
    if (r.staleSince < 0 || (r.reported & kind) !== 0 || r.device !== ev.device) continue;
    const s = r.segs;
    for (let i = 0; i < s.length; i += 2) {
      if (ev.bus + ev.len <= s[i]! || ev.bus >= s[i]! + s[i + 1]!) continue;
      r.reported |= kind;
      raise(
        m,
        st,
        DMABUF_MOVED_MAPPING,
        dev,
        `device ${ev.write ? 'write' : 'read'} through a dma-buf mapping the exporter invalidated [dma-buf=${r.buf}] [attachment=${r.attachment}] [bus address=${formatHex(ev.bus)}] [len=${ev.len}] [phys=${formatHex(ev.pa)}]: move_notify at step ${r.staleSince} said the buffer moves; unmap and map the attachment again before the device uses it`,
        {
          kind: ev.write ? 'moved-write' : 'moved-read',
          buf: r.buf,
          attachment: r.attachment,
          movedAt: r.staleSince,
          access: { agent: ev.device, bus: ev.bus, phys: ev.pa, len: ev.len, write: ev.write },
        },
        ev.device,
        ev.write ? 'broken' : 'latent',
      );
      break;
    }
  }
}
