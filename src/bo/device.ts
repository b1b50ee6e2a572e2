/**
 * The GPU a TTM device sits on (dmalab's device model):
 *
 * - **VRAM**: device-local memory behind a BAR, with no `struct page`;
 *   the CPU maps it write-combined, PFN by PFN;
 * - **a GART aperture**: a range of GPU addresses whose entries point at
 *   system pages' DMA addresses (through the IOMMU where there is one), so
 *   GTT-placed objects are visible to the GPU;
 * - **a copy engine** (gpu.ts) moving bytes between placements.
 *
 * ```
 *   user VA ──PTE (fault-time)──► VRAM pfn          (TTM_PL_VRAM, WC)
 *                          └────► tt page pfn       (TTM_PL_TT / SYSTEM)
 *   copy engine: VRAM (local) ◄──copy──► tt page (DMA address)
 * ```
 */

import { addDevice, type Coherence, DmalabError, type Machine, PAGE_SIZE } from '../machine/index.js';
import { registerChrdev } from '../mm/index.js';
import {
  DRM_FILE_PAGE_OFFSET_SIZE,
  DRM_FILE_PAGE_OFFSET_START,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
} from './consts.js';
import { drmFops } from './drm-file.js';
import { bdevHandle, type TtmDevice } from './handles.js';
import { drmMmInit } from './internal/drm-mm.js';
import { newManager } from './internal/resource.js';
import { boState } from './internal/state.js';
import { copyEngineContext } from './internal/sync.js';

/** Deliberate driver bugs a test can switch on. */
export type GpuBug = 'no-unmap-on-move';

/** `addGpu`'s options. */
export interface AddGpuOptions {
  name: string;
  /** VRAM size in bytes (a multiple of 4096; default 1 MiB). */
  vramBytes?: number;
  /** GART aperture size in bytes (default 1 MiB). */
  gttBytes?: number;
  /** System pages tts may hold before objects are swapped out (default 16384: 64 MiB). */
  ttPagesLimit?: number;
  /** Model time the copy engine takes per page (default 1000 ns: about 4 GB/s). */
  copyNsPerPage?: number;
  /** Passed to `addDevice`. */
  coherence?: Coherence;
  iommu?: boolean;
  /** Deliberate bugs (tests of the checker). */
  bugs?: GpuBug[];
}

const KNOWN = [
  'name',
  'vramBytes',
  'gttBytes',
  'ttPagesLimit',
  'copyNsPerPage',
  'coherence',
  'iommu',
  'bugs',
];

function pagesOf(bytes: number, what: string): number {
  if (!Number.isInteger(bytes) || bytes <= 0 || bytes % PAGE_SIZE !== 0) {
    throw new DmalabError(`addGpu: ${what} must be a positive multiple of 4096, got ${bytes}`, {
      field: what,
    });
  }
  return bytes / PAGE_SIZE;
}

/**
 * Adds a GPU to the machine and initialises its TTM device (dmalab's device
 * model; kernel: the driver's probe calling `ttm_device_init()` and
 * `ttm_range_man_init()` for VRAM and GTT). Its DRM file is
 * `/dev/dri/cardN`.
 */
export function addGpu(m: Machine, options: AddGpuOptions): TtmDevice {
  if (typeof options !== 'object' || options === null)
    throw new DmalabError('addGpu: options must be an object');
  for (const k of Object.keys(options)) {
    if (!KNOWN.includes(k))
      throw new DmalabError(`addGpu: unknown option '${k}' (known: ${KNOWN.join(', ')})`);
  }
  const vramPages = pagesOf(options.vramBytes ?? 1 << 20, 'vramBytes');
  const gttPages = pagesOf(options.gttBytes ?? 1 << 20, 'gttBytes');
  const ttPagesLimit = options.ttPagesLimit ?? 16384;
  const copyNsPerPage = options.copyNsPerPage ?? 1000;
  if (!Number.isInteger(ttPagesLimit) || ttPagesLimit <= 0) {
    throw new DmalabError(`addGpu: ttPagesLimit must be a positive integer, got ${ttPagesLimit}`);
  }
  if (!Number.isFinite(copyNsPerPage) || copyNsPerPage < 0) {
    throw new DmalabError(`addGpu: copyNsPerPage must be a non-negative number, got ${copyNsPerPage}`);
  }
  if (m.profile.arch === 'x86' && options.coherence === 'none') {
    // The kernel would make the pages' PAT type WC (set_pages_array_wc); dmalab's PFN maps of RAM stay
    // write-back on x86, so such a GPU would miss the CPU's dirty lines. Refused rather than modelled wrong.
    throw new DmalabError(
      "addGpu: a GPU that does not snoop on x86 needs set_pages_array_wc, which dmalab does not model (use coherence 'snoop')",
      { field: 'coherence' },
    );
  }
  const bugs = options.bugs ?? [];
  for (const b of bugs) if (b !== 'no-unmap-on-move') throw new DmalabError(`addGpu: unknown bug '${b}'`);
  const dev = addDevice(m, {
    name: options.name,
    dmaMaskBits: 44,
    coherentDmaMaskBits: 44,
    deviceMemoryBytes: vramPages * PAGE_SIZE,
    ...(options.coherence === undefined ? {} : { coherence: options.coherence }),
    ...(options.iommu === undefined ? {} : { iommu: options.iommu }),
  });
  const vram = dev.deviceMemory!;
  const st = boState(m);
  const id = st.bdevs.length;
  const path = `/dev/dri/card${id}`;
  if (registerChrdev(m, path, drmFops) !== 0) throw new DmalabError(`addGpu: ${path} is taken`);
  const man = [
    newManager(TTM_PL_SYSTEM, -1, true),
    newManager(TTM_PL_TT, gttPages, true),
    newManager(TTM_PL_VRAM, vramPages, false),
  ];
  st.bdevs.push({
    id,
    device: dev.id,
    name: options.name,
    path,
    vramPhys: vram.phys,
    vramPages,
    mappingId: -1,
    gart: new Array<number>(gttPages).fill(-1),
    man,
    unevictable: [],
    vmaMm: drmMmInit(DRM_FILE_PAGE_OFFSET_START, DRM_FILE_PAGE_OFFSET_SIZE),
    ttPages: 0,
    ttPagesLimit,
    copyNsPerPage,
    bugs: [...bugs],
    zombies: [],
    fenceContext: copyEngineContext(m),
    fenceSeqno: 0,
  });
  return bdevHandle(m, id);
}
