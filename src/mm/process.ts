/**
 * Processes: spawn and exit. Exit follows `do_exit`: the address space goes
 * first (`exit_mmap`: every PTE zapped, then every VMA closed and its file
 * reference dropped), then the file table (`exit_files`), so a driver's
 * `release` runs when the last of its references goes.
 */

import { apiCall, DmalabError, type Machine } from '../machine/index.js';
import { type Process, procHandle } from './handles.js';
import { fput } from './internal/files.js';
import { pteClearRange } from './internal/pagetable.js';
import { mmState, type ProcState } from './internal/state.js';
import { removeVma } from './vma.js';

/** Creates a process with an empty address space and no open files (dmalab: fork + exec in one). */
export function spawnProcess(m: Machine, name: string): Process {
  return apiCall(m, 'spawnProcess', () => {
    if (typeof name !== 'string' || name === '') {
      throw new DmalabError('spawnProcess: name must be a non-empty string', { field: 'name' });
    }
    const st = mmState(m);
    const pid = st.nextPid++;
    st.spaces.set(pid, { id: pid, pid, pt: new Map(), ptes: 0 });
    st.procs.set(pid, { pid, name, space: pid, vmas: [], fds: new Map(), status: 'running', signal: null });
    if (m.bus.wants.process) m.bus.emit({ type: 'process', pid, name, action: 'spawn', reason: '' });
    return procHandle(m, pid);
  });
}

/** `do_exit()` without step accounting; `signal` names the signal that killed it, or null for a plain exit. */
export function doExit(m: Machine, p: ProcState, signal: string | null): void {
  if (p.status !== 'running') return;
  const st = mmState(m);
  const sp = st.spaces.get(p.space)!;
  // exit_mmap: unmap every VMA's PTEs, then remove the VMAs (close, fput).
  const vmas = p.vmas.map((id) => st.vmas.get(id)!);
  for (const v of vmas) pteClearRange(m, sp, p.name, v.start, v.end, 'exit');
  for (const v of vmas) removeVma(m, p, v, 'exit');
  // exit_files.
  const fds = [...p.fds.entries()].sort((a, b) => a[0] - b[0]);
  p.fds.clear();
  for (const [, fileId] of fds) fput(m, fileId);
  p.status = signal === null ? 'exited' : 'killed';
  p.signal = signal;
  st.spaces.delete(p.space);
  if (m.bus.wants.process) {
    m.bus.emit({ type: 'process', pid: p.pid, name: p.name, action: 'exit', reason: signal ?? 'exit' });
  }
}

/** `do_exit()`: tears the process down (its VMAs closed, its files released). Exiting twice does nothing. */
export function exitProcess(proc: Process): void {
  const m = proc.machine;
  apiCall(m, 'do_exit', () => doExit(m, proc.state, null));
}
