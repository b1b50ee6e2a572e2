/**
 * Move fences and reservation objects as TTM uses them: a pipelined move
 * adds a fence to the BO's reservation object with KERNEL usage; a fault
 * and an eviction wait for those fences only. This is the narrow interface
 * the bo layer needs; it is kept apart so the layer's users see one shape
 * whatever implements it.
 */

import { type Machine, runUntil } from '../../machine/index.js';
import { boState, type MoveFence } from './state.js';

function fences(m: Machine) {
  return boState(m).sync;
}

/** A new unsignalled move fence, to be signalled by a job due at `due`. */
export function moveFenceCreate(m: Machine, due: number): number {
  const s = fences(m);
  const id = s.nextFence++;
  s.fences.set(id, { id, signaled: false, due });
  return id;
}

function fence(m: Machine, id: number): MoveFence | undefined {
  return fences(m).fences.get(id);
}

export function moveFenceSignal(m: Machine, id: number): void {
  const f = fence(m, id);
  if (f !== undefined) f.signaled = true;
}

/** Signalled, or long forgotten (fences are dropped once signalled and unreferenced). */
export function moveFenceSignaled(m: Machine, id: number): boolean {
  return fence(m, id)?.signaled ?? true;
}

/** `dma_fence_wait()`: model time runs (device jobs complete) until the fence signals. */
export function moveFenceWait(m: Machine, id: number): void {
  const f = fence(m, id);
  if (f === undefined || f.signaled) return;
  runUntil(m, f.due);
}

/** `dma_resv_init()`: a reservation object id. */
export function resvCreate(m: Machine): number {
  const s = fences(m);
  const id = s.nextResv++;
  s.resvs.set(id, { locked: false, kernel: [] });
  return id;
}

export function resvFini(m: Machine, resv: number): void {
  fences(m).resvs.delete(resv);
}

function resvOf(m: Machine, resv: number) {
  const r = fences(m).resvs.get(resv);
  if (r === undefined) throw new Error(`reservation object ${resv} is gone`);
  return r;
}

export function resvLock(m: Machine, resv: number): void {
  resvOf(m, resv).locked = true;
}

export function resvUnlock(m: Machine, resv: number): void {
  resvOf(m, resv).locked = false;
}

export function resvHeld(m: Machine, resv: number): boolean {
  return resvOf(m, resv).locked;
}

/** `dma_resv_add_fence(resv, fence, DMA_RESV_USAGE_KERNEL)`. */
export function resvAddKernelFence(m: Machine, resv: number, fenceId: number): void {
  const r = resvOf(m, resv);
  if (!r.kernel.includes(fenceId)) r.kernel.push(fenceId);
}

/** The unsignalled KERNEL fences (signalled ones are pruned, as the kernel's lists are). */
export function resvKernelPending(m: Machine, resv: number): number[] {
  const r = resvOf(m, resv);
  r.kernel = r.kernel.filter((f) => !moveFenceSignaled(m, f));
  return r.kernel;
}

/** `dma_resv_test_signaled(resv, DMA_RESV_USAGE_KERNEL)`. */
export function resvKernelIdle(m: Machine, resv: number): boolean {
  return resvKernelPending(m, resv).length === 0;
}

/** `dma_resv_wait_timeout(resv, DMA_RESV_USAGE_KERNEL, …)` without a timeout. */
export function resvWaitKernel(m: Machine, resv: number): void {
  for (const f of resvKernelPending(m, resv).slice()) moveFenceWait(m, f);
  resvKernelPending(m, resv);
}

/** Drops signalled fences nobody refers to any more. */
export function pruneFences(m: Machine): void {
  const s = fences(m);
  const live = new Set<number>();
  for (const r of s.resvs.values()) for (const f of r.kernel) live.add(f);
  for (const b of boState(m).bdevs) for (const man of b.man) live.add(man.move);
  for (const [id, f] of s.fences) if (f.signaled && !live.has(id)) s.fences.delete(id);
}
