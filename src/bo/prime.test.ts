import { describe, expect, it } from 'vitest';
import { gpuRig, mapBo, newBo, pattern } from '../../test/bo-kit.js';
import {
  addDevice,
  DMA_RESV_USAGE_KERNEL,
  DMA_TO_DEVICE,
  type DmaBuf,
  type DmaBufAttachment,
  DRM_CLOEXEC,
  DRM_IOCTL_GEM_CLOSE,
  DRM_IOCTL_MODE_CREATE_DUMB,
  DRM_IOCTL_MODE_MAP_DUMB,
  DRM_IOCTL_PRIME_HANDLE_TO_FD,
  DRM_RDWR,
  deviceDmaRead,
  dmaBufAttach,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
  dmaResvWaitTimeout,
  drmGemObjectLookup,
  drmGemPrimeExport,
  EINVAL,
  ENOTTY,
  fget,
  forEachSgtableDmaSg,
  fputFile,
  GPU_GEM_DOMAIN_GTT,
  GPU_GEM_DOMAIN_VRAM,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  MAX_SCHEDULE_TIMEOUT,
  machineFindings,
  O_RDWR,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  pteLookup,
  type SgTable,
  sgDmaAddress,
  sgDmaLen,
  sysIoctl,
  sysMmap,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
  ttmBoEvictFirst,
  ttmOperationCtx,
  userRead,
  userWrite,
} from '../index.js';

const P = PAGE_SIZE;

function deviceReadAll(dev: Parameters<typeof deviceDmaRead>[0], sgt: SgTable, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let off = 0;
  for (const sg of forEachSgtableDmaSg(sgt)) {
    out.set(deviceDmaRead(dev, sgDmaAddress(sg), sgDmaLen(sg)), off);
    off += sgDmaLen(sg);
  }
  return out;
}

function exported(rig: ReturnType<typeof gpuRig>, bo: Parameters<typeof drmGemPrimeExport>[0]): DmaBuf {
  const file = fget(rig.app, rig.fd)!;
  const db = drmGemPrimeExport(bo, O_RDWR, file);
  fputFile(file);
  if (typeof db === 'number') throw new Error(String(db));
  return db;
}

describe('a buffer object exported as a dma-buf', () => {
  for (const profile of ['x86_64', 'arm64-noncoherent', 'parisc']) {
    it(`${profile}: a dynamic importer hears move_notify before each move and maps again to reach the new pages`, () => {
      const rig = gpuRig(profile);
      const disp = addDevice(rig.m, { name: 'disp0', dmaMaskBits: 32 });
      const a = newBo(rig, 4, GPU_GEM_DOMAIN_VRAM | GPU_GEM_DOMAIN_GTT);
      const va = mapBo(rig, a);
      userWrite(rig.app, va, pattern(2, 4));
      const db = exported(rig, a);
      const notified: number[] = [];
      const ops = { moveNotify: (at: DmaBufAttachment) => void notified.push(at.id) };
      const at = dmaBufDynamicAttach(db, disp, ops);
      if (typeof at === 'number') throw new Error(String(at));
      let sgt = dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE) as SgTable;
      expect(a.memType).toBe(TTM_PL_TT); // VRAM is not handed out: the object moved to GTT
      expect(notified).toEqual([at.id]);
      // The copy out of VRAM is pipelined: the importer waits for the KERNEL fences before its DMA.
      const resv = db.resv;
      expect(dmaResvWaitTimeout(resv, DMA_RESV_USAGE_KERNEL, true, MAX_SCHEDULE_TIMEOUT)).toBeGreaterThan(0);
      expect(deviceReadAll(disp, sgt, 4 * P)).toEqual(pattern(2, 4));
      expect(ttmBoEvictFirst(rig.gpu, TTM_PL_TT, ttmOperationCtx())).toBe(0);
      expect(a.memType).toBe(TTM_PL_SYSTEM);
      expect(notified).toEqual([at.id, at.id]);
      dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_TO_DEVICE);
      userWrite(rig.app, va, new Uint8Array([0x77]));
      sgt = dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE) as SgTable;
      expect(a.memType).toBe(TTM_PL_TT);
      const want = pattern(2, 4);
      want[0] = 0x77;
      expect(deviceReadAll(disp, sgt, 4 * P)).toEqual(want);
      dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_TO_DEVICE);
      dmaBufDetach(db, at);
      expect(machineFindings(rig.m)).toEqual([]);
    });
  }

  it('a static importer gets the object pinned in GTT per map, not at attach', () => {
    const rig = gpuRig();
    const disp = addDevice(rig.m, { name: 'disp0' });
    const a = newBo(rig, 2, GPU_GEM_DOMAIN_VRAM | GPU_GEM_DOMAIN_GTT);
    const db = exported(rig, a);
    const before = a.memType;
    const at = dmaBufAttach(db, disp);
    if (typeof at === 'number') throw new Error(String(at));
    // Attaching neither moves nor pins (mainline 6.15 on).
    expect([a.memType, a.pinCount]).toEqual([before, 0]);
    const sgt = dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE);
    if (typeof sgt === 'number') throw new Error(String(sgt));
    expect([a.memType, a.pinCount]).toEqual([TTM_PL_TT, 1]);
    expect(ttmBoEvictFirst(rig.gpu, TTM_PL_TT, ttmOperationCtx())).toBe(-2); // -ENOENT: nothing evictable
    dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_TO_DEVICE);
    expect(a.pinCount).toBe(0);
    expect(ttmBoEvictFirst(rig.gpu, TTM_PL_TT, ttmOperationCtx())).toBe(0);
    dmaBufDetach(db, at);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('user space alone: a dumb buffer created, mapped and exported by ioctls; the dma-buf mmap is shot down with the object', () => {
    const rig = gpuRig('arm64-noncoherent');
    const { app, fd } = rig;
    const args = sysMmap(app, 0, P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const le = (words: number[]) => new Uint8Array(new Uint32Array(words).buffer);
    // struct drm_mode_create_dumb { height, width, bpp, flags, handle, pitch, size (u64) }
    userWrite(app, args, le([4, 1024, 32, 0, 0, 0, 0, 0]));
    expect(sysIoctl(app, fd, DRM_IOCTL_MODE_CREATE_DUMB, args)).toBe(0);
    const created = new DataView(userRead(app, args, 32)!.buffer);
    const handle = created.getUint32(16, true);
    expect([handle, created.getUint32(20, true), Number(created.getBigUint64(24, true))]).toEqual([
      1,
      4096,
      4 * P,
    ]);
    // struct drm_mode_map_dumb { handle, pad, offset (u64) }
    userWrite(app, args, le([handle, 0, 0, 0]));
    expect(sysIoctl(app, fd, DRM_IOCTL_MODE_MAP_DUMB, args)).toBe(0);
    expect(Number(new DataView(userRead(app, args, 16)!.buffer).getBigUint64(8, true))).toBe(2 ** 32);
    // struct drm_prime_handle { handle, flags, fd }
    userWrite(app, args, le([handle, DRM_CLOEXEC | DRM_RDWR, 0]));
    expect(sysIoctl(app, fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, args)).toBe(0);
    const dbfd = new DataView(userRead(app, args, 12)!.buffer).getInt32(8, true);
    expect(dbfd).toBeGreaterThan(fd);
    userWrite(app, args, le([handle, 0x10, 0]));
    expect(sysIoctl(app, fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, args)).toBe(-EINVAL);
    expect(sysIoctl(app, fd, 0x1234, args)).toBe(-ENOTTY);
    const va = sysMmap(app, 0, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED, dbfd, 0);
    expect(va).toBeGreaterThan(0);
    userWrite(app, va, pattern(6, 4));
    const bo = drmGemObjectLookup(fget(app, fd)!, handle)!;
    expect(bo.memType).toBe(TTM_PL_VRAM);
    expect(pteLookup(app, va)!.pfn).toBe(bo.pfns[0]);
    expect(ttmBoEvictFirst(rig.gpu, TTM_PL_VRAM, ttmOperationCtx())).toBe(0);
    expect(pteLookup(app, va)).toBeNull();
    expect(userRead(app, va, 4 * P)).toEqual(pattern(6, 4));
    expect(pteLookup(app, va)!.pfn).toBe(bo.pfns[0]);
    // Closing the handle leaves the object alive: the dma-buf (and the mapping) still hold it.
    userWrite(app, args, le([handle, 0]));
    expect(sysIoctl(app, fd, DRM_IOCTL_GEM_CLOSE, args)).toBe(0);
    expect(sysIoctl(app, fd, DRM_IOCTL_GEM_CLOSE, args)).toBe(-EINVAL);
    expect(bo.alive).toBe(true);
    expect(userRead(app, va, 4)).toEqual(pattern(6, 4).subarray(0, 4));
    expect(machineFindings(rig.m)).toEqual([]);
  });
});
