/**
 * File references: `get_file`/`fput`. A file is released (its driver's
 * `release` runs) when the last reference goes — the last fd closed and the
 * last VMA mapping it removed, in whatever order.
 */

import type { Machine } from '../../machine/index.js';
import { type FileOperations, fileHandle, inodeHandle } from '../handles.js';
import { tableById } from './registry.js';
import { mmState } from './state.js';

/** `get_file()`. */
export function getFile(m: Machine, fileId: number): void {
  mmState(m).files.get(fileId)!.refs++;
}

/** `fput()`: drops a reference, releasing the file when it was the last. */
export function fput(m: Machine, fileId: number): void {
  const st = mmState(m);
  const f = st.files.get(fileId)!;
  if (--f.refs > 0) return;
  const inode = st.inodes.get(f.inode)!;
  const fops = tableById<FileOperations>(inode.fops);
  fops.release?.(inodeHandle(m, inode.id), fileHandle(m, fileId));
  st.files.delete(fileId);
}
