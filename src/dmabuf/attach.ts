/**
 * The importer side of drivers/dma-buf/dma-buf.c: attaching a device,
 * pinning, mapping an attachment for its device, move notification and
 * detaching.
 *
 * As in mainline since 6.15, attaching maps nothing and the core keeps no
 * table: every map calls the exporter under the reservation lock, and a
 * static importer's map of a movable buffer (the exporter has `pin`) pins
 * it until the matching unmap. dmalab models CONFIG_DMABUF_MOVE_NOTIFY on:
 * a dynamic importer's map does not pin.
 */

import type { SgTable } from '../lib/index.js';
import { forEachSgtableDmaSg, forEachSgtableSg, sgPhys } from '../lib/index.js';
import {
  apiCall,
  type Device,
  DmalabError,
  EINVAL,
  ENOMEM,
  type Machine,
  reportFinding,
  WARN,
} from '../machine/index.js';
import { assertPlainData, tableId } from '../mm/index.js';
import { lockHeld, waitForKernelFences, withResvLock } from './resv-link.js';
import {
  type AttachmentState,
  attachmentHandle,
  DMA_BUF_ATTACH_OPS_MEMBERS,
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufAttachOps,
  type DmaBufState,
  dmabufState,
} from './state.js';

/** `dma_buf_is_dynamic()`: the exporter has `pin`, so it may move the buffer. */
export function dmaBufIsDynamic(dmabuf: DmaBuf): boolean {
  return dmabuf.ops.pin !== undefined;
}

/** `dma_buf_attachment_is_dynamic()`: the importer gave `importer_ops`. */
export function dmaBufAttachmentIsDynamic(attach: DmaBufAttachment): boolean {
  return attach.state.importerOps >= 0;
}

export function warn(m: Machine, message: string, device?: string): void {
  reportFinding(m, WARN.code, message, device === undefined ? {} : { device });
}

/** The DMA-side and CPU-side pieces of a table, for events. */
function tablePieces(sgt: SgTable): {
  phys: number[];
  lengths: number[];
  dmaAddrs: number[];
  dmaLengths: number[];
} {
  const phys: number[] = [];
  const lengths: number[] = [];
  const dmaAddrs: number[] = [];
  const dmaLengths: number[] = [];
  for (const sg of forEachSgtableSg(sgt)) {
    phys.push(sgPhys(sg));
    lengths.push(sg.length);
  }
  for (const sg of forEachSgtableDmaSg(sgt)) {
    dmaAddrs.push(sg.dmaAddress);
    dmaLengths.push(sg.dmaLength);
  }
  return { phys, lengths, dmaAddrs, dmaLengths };
}

function emitMap(at: DmaBufAttachment, dir: number, r: SgTable | number): void {
  const m = at.machine;
  if (!m.bus.wants['dmabuf-map']) return;
  const p = typeof r === 'number' ? { phys: [], lengths: [], dmaAddrs: [], dmaLengths: [] } : tablePieces(r);
  m.bus.emit({
    type: 'dmabuf-map',
    buf: at.state.buf,
    attachment: at.id,
    device: at.dev.name,
    dir,
    ret: typeof r === 'number' ? r : 0,
    ...p,
  });
}

function emitUnmap(at: DmaBufAttachment, sgt: SgTable, dir: number): void {
  const m = at.machine;
  if (m.bus.wants['dmabuf-unmap']) {
    const { dmaAddrs, dmaLengths } = tablePieces(sgt);
    m.bus.emit({
      dmaAddrs,
      dmaLengths,
      type: 'dmabuf-unmap',
      buf: at.state.buf,
      attachment: at.id,
      device: at.dev.name,
      dir,
    });
  }
}

function emitPin(at: DmaBufAttachment, pin: boolean, ret: number): void {
  const m = at.machine;
  if (m.bus.wants['dmabuf-pin'])
    m.bus.emit({ type: 'dmabuf-pin', buf: at.state.buf, attachment: at.id, pin, ret });
}

/** A DMA direction, or a DmalabError naming the call. */
export function checkDir(dir: number, call: string): void {
  if (dir !== 0 && dir !== 1 && dir !== 2) {
    throw new DmalabError(
      `${call}: direction must be DMA_BIDIRECTIONAL, DMA_TO_DEVICE or DMA_FROM_DEVICE, got ${dir}`,
      {
        field: 'direction',
      },
    );
  }
}

/**
 * `__map_dma_buf()`: the exporter's map, with NULL turned into -ENOMEM; a
 * static importer then waits for the kernel-usage fences (a move or clear
 * in flight), since it cannot be told to wait itself.
 */
function exporterMap(at: DmaBufAttachment, dir: number): SgTable | number {
  const r = at.dmabuf.ops.mapDmaBuf(at, dir);
  if (r === null) return -ENOMEM;
  if (typeof r === 'number') {
    if (!Number.isInteger(r) || r >= 0) {
      throw new DmalabError(`the exporter's mapDmaBuf must return a table or a negative errno, got ${r}`);
    }
    return r;
  }
  if (!dmaBufAttachmentIsDynamic(at)) {
    const w = waitForKernelFences(at.dmabuf);
    if (w < 0) {
      at.dmabuf.ops.unmapDmaBuf(at, r, dir);
      return w;
    }
  }
  return r;
}

function callPin(at: DmaBufAttachment): number {
  const pin = at.dmabuf.ops.pin;
  const r = pin === undefined ? 0 : pin(at);
  emitPin(at, true, r);
  return r;
}

function callUnpin(at: DmaBufAttachment): void {
  const unpin = at.dmabuf.ops.unpin;
  if (unpin !== undefined) unpin(at);
  emitPin(at, false, 0);
}

/** Derived function-only tables for importer ops, by the importer's table. */
const attachOpsTables = new WeakMap<DmaBufAttachOps, DmaBufAttachOps>();

function importerOpsId(ops: DmaBufAttachOps): number {
  let t = attachOpsTables.get(ops);
  if (t === undefined) {
    if (typeof ops !== 'object' || ops === null) {
      throw new DmalabError('importerOps must be an object of callbacks', { field: 'importerOps' });
    }
    for (const k of Object.keys(ops)) {
      if (k !== 'allowPeer2peer' && !DMA_BUF_ATTACH_OPS_MEMBERS.includes(k)) {
        throw new DmalabError(`importerOps.${k} is not a member dmalab models (moveNotify, allowPeer2peer)`, {
          field: `importerOps.${k}`,
        });
      }
    }
    t = ops.moveNotify === undefined ? ({} as DmaBufAttachOps) : { moveNotify: ops.moveNotify };
    attachOpsTables.set(ops, t);
  }
  return tableId(t, 'importerOps', DMA_BUF_ATTACH_OPS_MEMBERS);
}

/**
 * `dma_buf_dynamic_attach()`: attaches `dev` to the buffer. With
 * `importerOps` (which must have `moveNotify`) the importer is dynamic: it
 * is told when the exporter moves the buffer and re-maps. Returns the
 * attachment, or a negative errno (the exporter's `attach` may refuse the
 * device). Nothing is mapped or pinned here.
 */
export function dmaBufDynamicAttach(
  dmabuf: DmaBuf,
  dev: Device,
  importerOps: (DmaBufAttachOps & { allowPeer2peer?: boolean }) | null,
  importerPriv: unknown = undefined,
): DmaBufAttachment | number {
  const m = dmabuf.machine;
  return apiCall(m, importerOps === null ? 'dma_buf_attach' : 'dma_buf_dynamic_attach', () => {
    if (dev === null || dev === undefined || dev.machine !== m) {
      warn(m, 'dma_buf_dynamic_attach: no device, or a device of another machine');
      return -EINVAL;
    }
    let opsId = -1;
    if (importerOps !== null) {
      opsId = importerOpsId(importerOps);
      if (typeof importerOps.moveNotify !== 'function') {
        warn(m, 'dma_buf_dynamic_attach: importer_ops without move_notify', dev.name);
        return -EINVAL;
      }
    }
    assertPlainData(importerPriv, 'importerPriv');
    const st = dmabufState(m);
    const b = dmabuf.state;
    const id = st.nextId++;
    const a: AttachmentState = {
      id,
      buf: b.id,
      dev: dev.id,
      priv: undefined,
      importerOps: opsId,
      importerPriv,
      peer2peer: importerOps?.allowPeer2peer === true,
    };
    st.atts.set(id, a);
    const at = attachmentHandle(m, id);
    const fail = (ret: number): number => {
      st.atts.delete(id);
      if (m.bus.wants['dmabuf-attach']) {
        m.bus.emit({
          type: 'dmabuf-attach',
          buf: b.id,
          attachment: -1,
          device: dev.name,
          dynamic: opsId >= 0,
          ret,
        });
      }
      return ret;
    };
    const attachOp = dmabuf.ops.attach;
    if (attachOp !== undefined) {
      const r = attachOp(dmabuf, at);
      if (r !== 0) return fail(r < 0 ? r : -EINVAL);
    }
    // The list is walked under the reservation lock (move_notify), so it changes only under it.
    withResvLock(dmabuf, () => {
      b.attachments.push(id);
    });
    if (m.bus.wants['dmabuf-attach']) {
      m.bus.emit({
        type: 'dmabuf-attach',
        buf: b.id,
        attachment: id,
        device: dev.name,
        dynamic: opsId >= 0,
        ret: 0,
      });
    }
    return at;
  });
}

/** `dma_buf_attach()`: a static importer (`dmaBufDynamicAttach` without importer ops). */
export function dmaBufAttach(dmabuf: DmaBuf, dev: Device): DmaBufAttachment | number {
  return dmaBufDynamicAttach(dmabuf, dev, null);
}

function detachInner(dmabuf: DmaBuf, at: DmaBufAttachment, b: DmaBufState): void {
  const m = dmabuf.machine;
  withResvLock(dmabuf, () => {
    const i = b.attachments.indexOf(at.id);
    if (i >= 0) b.attachments.splice(i, 1);
  });
  const detachOp = dmabuf.ops.detach;
  if (detachOp !== undefined) detachOp(dmabuf, at);
  if (m.bus.wants['dmabuf-detach']) {
    m.bus.emit({ type: 'dmabuf-detach', buf: b.id, attachment: at.id, device: at.dev.name });
  }
  dmabufState(m).atts.delete(at.id);
}

/**
 * `dma_buf_detach()`: takes the attachment off the list (under the
 * reservation lock), calls the exporter's `detach`, and frees it. A
 * mismatched pair is a WARN.
 */
export function dmaBufDetach(dmabuf: DmaBuf, attach: DmaBufAttachment): void {
  const m = dmabuf.machine;
  apiCall(m, 'dma_buf_detach', () => {
    const a = dmabufState(m).atts.get(attach?.id ?? -1);
    if (a === undefined || a.buf !== dmabuf.id || attach.machine !== m) {
      warn(m, 'dma_buf_detach: the attachment is not one of this buffer');
      return;
    }
    detachInner(dmabuf, attach, dmabuf.state);
  });
}

function liveAttachment(attach: DmaBufAttachment, call: string): AttachmentState | null {
  const a = dmabufState(attach.machine).atts.get(attach.id);
  if (a === undefined) {
    warn(attach.machine, `${call}: the attachment was detached`);
    return null;
  }
  return a;
}

/**
 * `dma_buf_pin()`: a dynamic importer keeps the buffer where it is (e.g.
 * for scanout) until `dmaBufUnpin`. WARN for a static importer; the
 * reservation lock must be held. Returns 0 or the exporter's error.
 */
export function dmaBufPin(attach: DmaBufAttachment): number {
  const m = attach.machine;
  return apiCall(m, 'dma_buf_pin', () => {
    if (liveAttachment(attach, 'dma_buf_pin') === null) return -EINVAL;
    if (!dmaBufAttachmentIsDynamic(attach))
      warn(m, 'dma_buf_pin: the importer is not dynamic', attach.dev.name);
    lockHeld(attach.dmabuf, 'dma_buf_pin');
    return callPin(attach);
  });
}

/** `dma_buf_unpin()`: the exporter may move the buffer again (and tell importers). */
export function dmaBufUnpin(attach: DmaBufAttachment): void {
  const m = attach.machine;
  apiCall(m, 'dma_buf_unpin', () => {
    if (liveAttachment(attach, 'dma_buf_unpin') === null) return;
    if (!dmaBufAttachmentIsDynamic(attach))
      warn(m, 'dma_buf_unpin: the importer is not dynamic', attach.dev.name);
    lockHeld(attach.dmabuf, 'dma_buf_unpin');
    callUnpin(attach);
  });
}

function mapInner(attach: DmaBufAttachment, dir: number, call: string): SgTable | number {
  checkDir(dir, call);
  const a = liveAttachment(attach, call);
  if (a === null) return -EINVAL;
  lockHeld(attach.dmabuf, call);
  // A static importer cannot follow a move: the buffer stays put while it is mapped.
  const pinned = dmaBufPinOnMap(attach);
  if (pinned) {
    const p = callPin(attach);
    if (p !== 0) return p;
  }
  const r = exporterMap(attach, dir);
  emitMap(attach, dir, r);
  if (typeof r === 'number' && pinned) callUnpin(attach);
  return r;
}

/**
 * `dma_buf_pin_on_map()`: whether mapping pins. The exporter can move the
 * buffer (it has `pin`) and the importer cannot be told (it is static);
 * dmalab models CONFIG_DMABUF_MOVE_NOTIFY=y.
 */
function dmaBufPinOnMap(attach: DmaBufAttachment): boolean {
  return attach.dmabuf.ops.pin !== undefined && !dmaBufAttachmentIsDynamic(attach);
}

/**
 * `dma_buf_map_attachment()`: the buffer's table mapped for the
 * attachment's device in direction `dir` (DMA addresses only: importers must
 * not touch its pages), or a negative errno. The reservation lock must be
 * held; a static importer's map of a buffer the exporter can move pins it
 * first (and unpins if the exporter fails).
 */
export function dmaBufMapAttachment(attach: DmaBufAttachment, dir: number): SgTable | number {
  return apiCall(attach.machine, 'dma_buf_map_attachment', () =>
    mapInner(attach, dir, 'dma_buf_map_attachment'),
  );
}

function unmapInner(attach: DmaBufAttachment, sgt: SgTable, dir: number, call: string): void {
  const m = attach.machine;
  checkDir(dir, call);
  const a = liveAttachment(attach, call);
  if (a === null) return;
  if (sgt === null || sgt === undefined) {
    warn(m, `${call}: no table`, attach.dev.name);
    return;
  }
  lockHeld(attach.dmabuf, call);
  emitUnmap(attach, sgt, dir);
  attach.dmabuf.ops.unmapDmaBuf(attach, sgt, dir);
  if (dmaBufPinOnMap(attach)) callUnpin(attach);
}

/**
 * `dma_buf_unmap_attachment()`: gives a mapping back to the exporter, under
 * the reservation lock, then drops the pin a static importer's map took.
 */
export function dmaBufUnmapAttachment(attach: DmaBufAttachment, sgt: SgTable, dir: number): void {
  apiCall(attach.machine, 'dma_buf_unmap_attachment', () =>
    unmapInner(attach, sgt, dir, 'dma_buf_unmap_attachment'),
  );
}

/** `dma_buf_map_attachment_unlocked()`: `dmaBufMapAttachment` with the reservation lock taken around it. */
export function dmaBufMapAttachmentUnlocked(attach: DmaBufAttachment, dir: number): SgTable | number {
  const m = attach.machine;
  return apiCall(m, 'dma_buf_map_attachment_unlocked', () =>
    withResvLock(attach.dmabuf, () => mapInner(attach, dir, 'dma_buf_map_attachment_unlocked')),
  );
}

/** `dma_buf_unmap_attachment_unlocked()`. */
export function dmaBufUnmapAttachmentUnlocked(attach: DmaBufAttachment, sgt: SgTable, dir: number): void {
  const m = attach.machine;
  apiCall(m, 'dma_buf_unmap_attachment_unlocked', () =>
    withResvLock(attach.dmabuf, () => unmapInner(attach, sgt, dir, 'dma_buf_unmap_attachment_unlocked')),
  );
}

/**
 * `dma_buf_move_notify()`: the exporter is moving the buffer; every
 * dynamic importer's `moveNotify` runs and must tear down its mappings and
 * map again before its device next uses the buffer. The reservation lock
 * must be held.
 */
export function dmaBufMoveNotify(dmabuf: DmaBuf): void {
  const m = dmabuf.machine;
  apiCall(m, 'dma_buf_move_notify', () => {
    lockHeld(dmabuf, 'dma_buf_move_notify');
    const told: number[] = [];
    for (const at of dmabuf.attachments) if (dmaBufAttachmentIsDynamic(at)) told.push(at.id);
    if (m.bus.wants['dmabuf-move-notify']) {
      m.bus.emit({ type: 'dmabuf-move-notify', buf: dmabuf.id, attachments: told });
    }
    for (const id of told) {
      const at = attachmentHandle(m, id);
      at.importerOps!.moveNotify(at);
    }
  });
}
