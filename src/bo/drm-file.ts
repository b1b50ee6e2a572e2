/**
 * The DRM device file (`drm_driver.fops` of a GEM/TTM driver): open, mmap
 * at fake offsets, the buffer ioctls, and release dropping the file's
 * handles.
 */

import type { File, FileOperations, Inode, Process, Vma } from '../mm/index.js';
import { boState } from './internal/state.js';
import { drmIoctl } from './uapi.js';
import { type DrmFileData, deleteHandle, drmGemMmap } from './vm.js';

/**
 * The DRM file's operations: `open` notes the device's shared address
 * space, `mmap` is `drm_gem_mmap`, `unlocked_ioctl` is `drm_ioctl`; `release`
 * (`drm_release` → `drm_gem_release`) drops every handle of the file.
 */
export const drmFops: FileOperations = {
  // drm_open: every file of the device shares one address space (`bdev->dev_mapping`).
  open: (_inode: Inode, file: File) => {
    const bdev = boState(file.machine).bdevs.find((b) => b.path === file.path);
    if (bdev !== undefined) bdev.mappingId = file.fMapping.id;
    return 0;
  },
  mmap: (file: File, vma: Vma) => drmGemMmap(file, vma),
  unlockedIoctl: (file: File, cmd: number, arg: number, current: Process) =>
    drmIoctl(file, cmd, arg, current),
  release: (_inode: Inode, file: File) => {
    const d = file.privateData as DrmFileData | undefined;
    if (d !== undefined) {
      while (d.handles.length > 0) deleteHandle(file.machine, file, d, d.handles.length - 1);
      file.privateData = d;
    }
    return 0;
  },
};
