/**
 * The wording of every finding the checker raises, apart from the checks
 * that decide to raise them. dma-debug's messages are the kernel's
 * templates (reference/dma-api-semantics.md §6b); where the kernel prints a
 * hashed pointer (`%p`) dmalab prints the address itself. dmalab's own
 * checks use the same shape: a sentence, then the facts in brackets.
 */

import { dmaDirName } from '../dma/index.js';
import { formatHex, formatHex16 } from '../machine/index.js';

const hex = formatHex16;
const dir = dmaDirName;

interface At {
  dmaAddr: number;
  size: number;
}

/** dma-debug's messages, by code. */
export const dmaDebugText = {
  DMA_FREE_INVALID_ADDR: () => 'device driver tries to free an invalid DMA memory address',
  DMA_FREE_NOT_ALLOCATED: (f: At) =>
    `device driver tries to free DMA memory it has not allocated [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes]`,
  DMA_FREE_WRONG_SIZE: (f: { dmaAddr: number; mapSize: number; unmapSize: number }) =>
    `device driver frees DMA memory with different size [device address=${hex(f.dmaAddr)}] [map size=${f.mapSize} bytes] [unmap size=${f.unmapSize} bytes]`,
  DMA_FREE_WRONG_FUNCTION: (f: At & { mappedAs: string; unmappedAs: string }) =>
    `device driver frees DMA memory with wrong function [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [mapped as ${f.mappedAs}] [unmapped as ${f.unmappedAs}]`,
  DMA_FREE_WRONG_CPU_ADDR: (f: At & { allocPhys: number; freePhys: number }) =>
    `device driver frees DMA memory with different CPU address [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [cpu alloc address=${hex(f.allocPhys)}] [cpu free address=${hex(f.freePhys)}]`,
  DMA_FREE_SG_NENTS: (f: { mapCount: number; unmapCount: number }) =>
    `device driver frees DMA sg list with different entry count [map count=${f.mapCount}] [unmap count=${f.unmapCount}]`,
  DMA_FREE_WRONG_DIR: (f: At & { mappedDir: number; unmappedDir: number }) =>
    `device driver frees DMA memory with different direction [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [mapped with ${dir(f.mappedDir)}] [unmapped with ${dir(f.unmappedDir)}]`,
  // The kernel's template has no space before the first bracket.
  DMA_MAP_ERROR_UNCHECKED: (f: At & { mappedAs: string }) =>
    `device driver failed to check map error[device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [mapped as ${f.mappedAs}]`,
  DMA_FREE_WRONG_ATTRS: (f: At & { mappedAttrs: number; unmappedAttrs: number }) =>
    `device driver frees DMA memory with different attributes [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [mapped with ${formatHex(f.mappedAttrs)}] [unmapped with ${formatHex(f.unmappedAttrs)}]`,
  DMA_SYNC_NOT_ALLOCATED: (f: At) =>
    `device driver tries to sync DMA memory it has not allocated [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes]`,
  DMA_SYNC_OUT_OF_RANGE: (f: { dmaAddr: number; allocSize: number; syncSize: number }) =>
    `device driver syncs DMA memory outside allocated range [device address=${hex(f.dmaAddr)}] [allocation size=${f.allocSize} bytes] [sync offset+size=${f.syncSize}]`,
  DMA_SYNC_WRONG_DIR: (f: At & { mappedDir: number; syncDir: number }) =>
    `device driver syncs DMA memory with different direction [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [mapped with ${dir(f.mappedDir)}] [synced with ${dir(f.syncDir)}]`,
  DMA_SYNC_DEVICE_READ_ONLY: (f: At & { mappedDir: number; syncDir: number }) =>
    `device driver syncs device read-only DMA memory for cpu [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [mapped with ${dir(f.mappedDir)}] [synced with ${dir(f.syncDir)}]`,
  DMA_SYNC_DEVICE_WRITE_ONLY: (f: At & { mappedDir: number; syncDir: number }) =>
    `device driver syncs device write-only DMA memory to device [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [mapped with ${dir(f.mappedDir)}] [synced with ${dir(f.syncDir)}]`,
  DMA_SYNC_SG_NENTS: (f: { mapCount: number; syncCount: number }) =>
    `device driver syncs DMA sg list with different entry count [map count=${f.mapCount}] [sync count=${f.syncCount}]`,
  DMA_MAP_STACK: (f: { addr: number; probable: boolean }) =>
    `device driver maps memory from stack [${f.probable ? 'probable ' : ''}addr=${hex(f.addr)}]`,
  DMA_MAP_KERNEL_TEXT: (f: { addr: number; len: number }) =>
    `device driver maps memory from kernel text or rodata [addr=${hex(f.addr)}] [len=${f.len}]`,
  DMA_MAP_INVALID_AREA: (f: { addr: number; len: number }) =>
    `device driver maps memory from invalid area [addr=${hex(f.addr)}] [len=${f.len}]`,
  DMA_MAP_RESOURCE_RAM: (f: { phys: number }) => `dma_map_resource called for RAM address ${hex(f.phys)}`,
  DMA_SG_SEGMENT_TOO_LONG: (f: { len: number; max: number }) =>
    `mapping sg segment longer than device claims to support [len=${f.len}] [max=${f.max}]`,
  DMA_SG_SEGMENT_BOUNDARY: (f: { start: number; end: number; boundary: number }) =>
    `mapping sg segment across boundary [start=${hex(f.start)}] [end=${hex(f.end)}] [boundary=${hex(f.boundary)}]`,
  DMA_CACHELINE_OVERLAP: () => "cacheline tracking EEXIST, overlapping mappings aren't supported",
  DMA_LEAK_AT_UNBIND: (f: At & { count: number; mappedDir: number; mappedAs: string }) =>
    `device driver has pending DMA allocations while released from device [count=${f.count}]\nOne of leaked entries details: [device address=${hex(f.dmaAddr)}] [size=${f.size} bytes] [mapped with ${dir(f.mappedDir)}] [mapped as ${f.mappedAs}]`,
  DMA_CACHELINE_OVERLAP_LIMIT: (f: { cln: number }) =>
    `exceeded 7 overlapping mappings of cacheline ${hex(f.cln)}`,
} as const;

export type DmaDebugCode = keyof typeof dmaDebugText;

/** `DMA-API: <driver> <device>: ` as dma-debug's err_printk prints it (the driver only when bound). */
export function dmaApiPrefix(device: string | null, driver: string | null): string {
  if (device === null) return 'DMA-API: ';
  return driver === null ? `DMA-API: ${device}: ` : `DMA-API: ${driver} ${device}: `;
}

/** The same shape for dmalab's own checks. */
export function dmalabPrefix(device: string | null, driver: string | null): string {
  if (device === null) return 'dmalab: ';
  return driver === null ? `dmalab: ${device}: ` : `dmalab: ${driver} ${device}: `;
}

/** A short hex excerpt of bytes: `5a 5a 5a 5a …` (at most `max` bytes). */
export function hexExcerpt(bytes: ArrayLike<number>, max = 16): string {
  const n = Math.min(bytes.length, max);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(bytes[i]! < 0 ? '??' : bytes[i]!.toString(16).padStart(2, '0'));
  return parts.join(' ') + (bytes.length > max ? ' …' : '');
}

/** The calls that move a buffer's ownership, by how it was mapped. */
export function ownershipCalls(
  type: string,
  call: string,
): { forCpu: string; forDevice: string; release: string } {
  if (type === 'scatter-gather') {
    return { forCpu: 'dma_sync_sg_for_cpu', forDevice: 'dma_sync_sg_for_device', release: 'dma_unmap_sg' };
  }
  if (type === 'noncoherent') {
    return {
      forCpu: 'dma_sync_single_for_cpu',
      forDevice: 'dma_sync_single_for_device',
      release: call.startsWith('dma_alloc_noncoherent') ? 'dma_free_noncoherent' : 'dma_free_pages',
    };
  }
  const release = call.startsWith('dma_map_')
    ? `dma_unmap_${call.slice('dma_map_'.length).replace(/_attrs$/, '')}`
    : 'dma_unmap_single';
  return { forCpu: 'dma_sync_single_for_cpu', forDevice: 'dma_sync_single_for_device', release };
}
