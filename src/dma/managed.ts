/**
 * Managed DMA allocations (kernel/dma/mapping.c `dmam_*`): released by the
 * driver core when the driver unbinds, before dma-debug's leak check runs.
 */

import { type Device, type DmaAddr, type Gfp, type KernelVa, reportFinding, WARN } from '../machine/index.js';
import { devresAdd, devresRemove, registerDevresRelease } from '../mm/index.js';
import { dmaAllocAttrs, dmaFreeAttrs, dmaFreeCoherent } from './alloc.js';

/** `struct dma_devres`. */
interface DmaDevres {
  size: number;
  vaddr: number;
  dmaHandle: number;
  attrs: number;
}

registerDevresRelease<DmaDevres>('dmam_alloc', (dev, d) =>
  dmaFreeAttrs(dev, d.size, d.vaddr, d.dmaHandle, d.attrs),
);

/** `dmam_alloc_attrs()`: like `dmaAllocAttrs`, freed automatically at driver unbind. */
export function dmamAllocAttrs(
  dev: Device,
  size: number,
  gfp: Gfp,
  attrs: number,
): { cpuAddr: KernelVa; dmaHandle: DmaAddr } | null {
  const r = dmaAllocAttrs(dev, size, gfp, attrs);
  if (r === null) return null;
  devresAdd(dev, 'dmam_alloc', { size, vaddr: r.cpuAddr, dmaHandle: r.dmaHandle, attrs } satisfies DmaDevres);
  return r;
}

/** `dmam_alloc_coherent()`. */
export function dmamAllocCoherent(
  dev: Device,
  size: number,
  gfp: Gfp,
): { cpuAddr: KernelVa; dmaHandle: DmaAddr } | null {
  return dmamAllocAttrs(dev, size, gfp, 0);
}

/**
 * `dmam_free_coherent()`: drops the devres record (WARN when there is none, or
 * when size or handle differ from the allocation's) and frees.
 */
export function dmamFreeCoherent(
  dev: Device,
  size: number,
  vaddr: KernelVa | number,
  dmaHandle: DmaAddr | number,
): void {
  const found = devresRemove<DmaDevres>(dev, 'dmam_alloc', (d) => d.vaddr === vaddr);
  if (found === null) {
    reportFinding(
      dev.machine,
      WARN.code,
      `WARNING: dmam_free_coherent: no managed allocation at 0x${vaddr.toString(16)}`,
      {
        device: dev.name,
        details: { vaddr, size },
      },
    );
  } else if (found.size !== size || found.dmaHandle !== dmaHandle) {
    reportFinding(
      dev.machine,
      WARN.code,
      'WARNING: dmam_match: size or DMA handle differ from the managed allocation',
      {
        device: dev.name,
        details: { vaddr, size, allocSize: found.size, dmaHandle, allocHandle: found.dmaHandle },
      },
    );
  }
  dmaFreeCoherent(dev, size, vaddr, dmaHandle);
}
