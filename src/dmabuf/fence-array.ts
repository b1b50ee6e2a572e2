/**
 * Container fences: `dma_fence_array` (drivers/dma-buf/dma-fence-array.c),
 * which signals when all (or any) of its components have, and the unwrap
 * helpers of dma-fence-unwrap.c that flatten containers and merge fences.
 */

import { apiCall, DmalabError, type Machine } from '../machine/index.js';
import {
  addFenceCallback,
  type DmaFenceOps,
  dmaFenceContextAlloc,
  fenceIsSignaled,
  fenceSignaledBit,
  newFence,
  registerDmaFenceFunc,
  STUB_OPS,
  seqnoLater,
  signalFence,
} from './fence.js';
import { assertFence, type DmaFence, type FenceRec, fenceHandle, fenceState } from './fence-state.js';

const ARRAY_OPS: DmaFenceOps = {
  getDriverName: () => 'dma_fence_array',
  getTimelineName: () => 'unbound',
};

/** A component signalled: count it down, keep the first error, signal the array when due. */
function componentSignalled(component: DmaFence, data: unknown): void {
  const m = component.machine;
  const a = fenceState(m).fences.get((data as { array: number }).array);
  if (a === undefined) return;
  componentDone(m, a, component.state);
}

function componentDone(m: Machine, a: FenceRec, c: FenceRec): void {
  if (c.error !== 0 && a.error === 0) a.error = c.error;
  a.pending--;
  if ((a.pending <= 0 || a.signalOnAny) && !fenceSignaledBit(a)) signalFence(m, a, m.clock.time);
}

registerDmaFenceFunc('dma_fence_array:component', componentSignalled);

/**
 * `dma_fence_array_create()`: a fence that signals once every one of
 * `fences` has (or the first one, with `signalOnAny`), carrying the first
 * component error. The array takes over the caller's references to the
 * components. (The kernel returns NULL when its allocation fails; the
 * model's never does.)
 */
export function dmaFenceArrayCreate(
  numFences: number,
  fences: readonly DmaFence[],
  context: number,
  seqno: number,
  signalOnAny: boolean,
): DmaFence {
  if (!Array.isArray(fences)) throw new DmalabError('fences must be an array of DmaFence');
  if (numFences !== fences.length) {
    throw new DmalabError(`numFences (${numFences}) must equal fences.length (${fences.length})`);
  }
  for (const [i, f] of fences.entries()) assertFence(f, `fences[${i}]`);
  const m = fences[0]?.machine;
  if (m === undefined) throw new DmalabError('dma_fence_array_create needs at least one fence');
  return apiCall(m, 'dma_fence_array_create', () => {
    const ids = fences.map((f) => f.state.id);
    const h = newFence(m, ARRAY_OPS, context, seqno, 0, ids);
    const a = h.state;
    a.signalOnAny = signalOnAny;
    for (const f of fences) {
      const c = f.state;
      if (addFenceCallback(m, c, 'dma_fence_array:component', { array: a.id }) < 0) componentDone(m, a, c);
    }
    return h;
  });
}

/** `dma_fence_is_container()` (arrays are the model's only containers). */
export function dmaFenceIsContainer(fence: DmaFence): boolean {
  assertFence(fence);
  return fence.state.components !== null;
}

/** The leaf fences under a fence record, depth first. */
export function unwrapIds(m: Machine, f: FenceRec, out: number[] = []): number[] {
  if (f.components === null) out.push(f.id);
  else for (const c of f.components) unwrapIds(m, fenceState(m).fences.get(c)!, out);
  return out;
}

/**
 * `dma_fence_unwrap_for_each()`: the fences inside `head` with containers
 * flattened, in order (no references taken), as the list the kernel's
 * iterator walks.
 */
export function dmaFenceUnwrapForEach(head: DmaFence): DmaFence[] {
  assertFence(head, 'head');
  const m = head.machine;
  return unwrapIds(m, head.state).map((id) => fenceHandle(m, id));
}

/**
 * `dma_fence_unwrap_merge()`: one fence standing for all of `fences`:
 * containers flattened, signalled fences dropped, one fence per context
 * (the latest); a fresh signalled stub when none is left, the fence itself
 * when one is, else a new array on a new context. A reference is returned.
 */
export function dmaFenceUnwrapMerge(...fences: DmaFence[]): DmaFence {
  for (const [i, f] of fences.entries()) assertFence(f, `fences[${i}]`);
  const m = fences[0]?.machine;
  if (m === undefined) throw new DmalabError('dma_fence_unwrap_merge needs at least one fence');
  return apiCall(m, 'dma_fence_unwrap_merge', () => {
    const s = fenceState(m);
    const latest = new Map<number, FenceRec>();
    let timestamp = 0;
    for (const head of fences) {
      for (const id of unwrapIds(m, head.state)) {
        const f = s.fences.get(id)!;
        if (fenceIsSignaled(m, f)) {
          timestamp = Math.max(timestamp, f.timestamp);
          continue;
        }
        const prev = latest.get(f.context);
        if (prev === undefined || seqnoLater(f, f.seqno, prev.seqno)) latest.set(f.context, f);
      }
    }
    const kept = [...latest.values()].sort((a, b) => a.context - b.context);
    if (kept.length === 0) {
      // dma_fence_allocate_private_stub(): a new signalled fence with the latest timestamp seen.
      const stub = newFence(m, STUB_OPS, 0, 0, 0, null);
      signalFence(m, stub.state, timestamp);
      return stub;
    }
    for (const f of kept) f.refs++;
    if (kept.length === 1) return fenceHandle(m, kept[0]!.id);
    const handles = kept.map((f) => fenceHandle(m, f.id));
    return dmaFenceArrayCreate(handles.length, handles, dmaFenceContextAlloc(m, 1), 1, false);
  });
}
